"""The README's main job, for as much of the framework as exists so far.

It renders a small slice of the embedded captioned dataset (`musicgen data
synth`), prints its statistics and `data check` report, draws one batch from
the training pipeline, and measures one rendered clip with the audio core:
loudness (BS.1770), STFT round trip, log-mel, and what a round trip through a
32 kHz codec rate costs in the spectral distances codecs train with.
"""

from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import numpy as np

CODEC_RATE = 32000


def _db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def _line(label: str, value: str) -> None:
    print(f"  {label:<44} {value}")


def print_file_report(path: str | os.PathLike) -> None:
    """Reads `path` as training would and prints format, level and loudness."""
    from mgcore import audio, loudness

    info = audio.audio_info(path)
    x, sr = audio.load_audio(path)
    print(f"{info.path}")
    _line("format", f"{info.format} {info.subtype}")
    _line("sample rate / channels", f"{sr} Hz / {info.channels}")
    _line("duration", f"{info.duration:.3f} s ({info.frames} frames)")
    _line("peak", f"{_db(float(np.abs(x).max())):.2f} dBFS")
    _line("RMS", f"{_db(float(loudness.rms(x))):.2f} dBFS")
    if info.duration >= loudness.BLOCK_SECONDS and info.channels <= 5:
        _line("integrated loudness", f"{float(loudness.integrated_loudness(x, sr)):.2f} LUFS")


def _dataset_report(entries: list[dict]) -> None:
    attrs = [e["attributes"] for e in entries]
    genres = collections.Counter(a["genre"] for a in attrs)
    instruments = collections.Counter(i for a in attrs for i in a["instruments"])
    bpms = [a["bpm"] for a in attrs]
    _line("clips / hours", f"{len(entries)} / {sum(e['duration'] for e in entries) / 3600:.3f}")
    _line("splits", str(dict(collections.Counter(e["split"] for e in entries))))
    _line("sources", str(dict(collections.Counter(a["source"] for a in attrs))))
    _line("genres", ", ".join(f"{g} x{n}" for g, n in genres.most_common()))
    _line("tempo range", f"{min(bpms)}-{max(bpms)} bpm")
    _line("most used instruments", ", ".join(i for i, _ in instruments.most_common(6)))
    for e in entries[:3]:
        print(f'    "{e["caption"]}"')


def run(out_dir: str | os.PathLike = "runs/demo", hours: float = 0.05, seed: int = 0) -> dict:
    """Runs the demo, prints its report and returns the measured numbers."""
    import jax

    from mgcore import audio, dsp, loudness
    from mgcore import spectral_losses as sl
    from mgcore.data.check import check_manifest
    from mgcore.data.manifest import iter_manifest
    from mgcore.data.pipeline import AudioLoader, AudioPipelineConfig
    from musicgen.synth.build import synth_dataset

    out = Path(out_dir)
    started = time.perf_counter()
    results: dict = {}
    print(f"musicgen demo: JAX {jax.__version__} on {jax.devices()[0].platform}")
    print(f"[1/5] rendering {hours:g} h of the embedded dataset (seed {seed}) into {out / 'data'}")
    summary = synth_dataset(out / "data", hours, seed, progress=False)
    results["synth"] = summary
    manifest = out / "data" / "manifest.jsonl"
    entries = list(iter_manifest(manifest))
    _line("rendering speed", f"{summary['realtime_factor']:.1f}x real time")
    _dataset_report(entries)

    print("[2/5] musicgen data check")
    report = check_manifest(manifest, progress=False)
    results["check"] = report.to_json()
    print("\n".join("  " + line for line in report.format_table().splitlines()))

    print("[3/5] one batch of the training pipeline (10 s crops, 32 kHz mono, -14 LUFS)")
    cfg = AudioPipelineConfig(
        sample_rate=CODEC_RATE,
        channels=1,
        crop_seconds=10.0,
        batch_size=4,
        seed=seed,
        shard_index=0,
        shard_count=1,
    )
    batch = next(AudioLoader(manifest, "train", cfg))
    results["batch_shape"] = list(batch["audio"].shape)
    _line("audio batch", f"{batch['audio'].shape} {batch['audio'].dtype}")
    _line("captions", json.dumps(batch["caption"][0])[:70] + " ...")

    print("[4/5] audio core on one rendered clip")
    x, sr = audio.load_audio(entries[0]["path"])
    print_file_report(entries[0]["path"])
    normed = np.asarray(loudness.normalize_loudness(x, sr, -14.0))
    results["lufs_after_normalisation"] = float(loudness.integrated_loudness(normed, sr))
    _line("after normalising to -14 LUFS", f"{results['lufs_after_normalisation']:.3f} LUFS")
    recon = jax.jit(lambda s: dsp.istft(dsp.stft(s, 2048, 512), 512, length=s.shape[-1]))(x)
    results["istft_relative_error"] = float(
        np.linalg.norm(np.asarray(recon) - x) / np.linalg.norm(x)
    )
    _line("iSTFT(STFT(x)) relative error", f"{results['istft_relative_error']:.2e}")
    logmel = np.asarray(dsp.log_mel_spectrogram(x, sr, 2048, 512, 128))
    _line("log-mel [channels, mels, frames]", f"{list(logmel.shape)}, max {logmel.max():.1f} dB")

    print(f"[5/5] what a round trip through the {CODEC_RATE} Hz codec rate costs")
    back = audio.resample(audio.resample(x, sr, CODEC_RATE), CODEC_RATE, sr)[..., : x.shape[-1]]
    results["mel_distance_32k"] = float(
        sl.multi_scale_mel_loss(back, x, sl.MultiScaleMelLoss.dac(sr))
    )
    results["stft_distance_32k"] = float(
        sl.multi_resolution_stft_loss(back, x, sl.MultiResolutionSTFTLoss.dac())
    )
    _line("multi-scale mel distance (DAC's)", f"{results['mel_distance_32k']:.4f}")
    _line("multi-resolution STFT distance (DAC's)", f"{results['stft_distance_32k']:.4f}")
    print(f"done in {time.perf_counter() - started:.1f} s; the dataset is in {out / 'data'}")
    return results
