"""Codec quality on a manifest split, per number of codebooks (`musicgen eval codec`).

For each clip (its first `seconds`, loudness-normalised as in training) the codec
encodes once and decodes from the first k codebooks for every k asked for. Measured
against the clip at the codec's rate: SI-SDR, DAC's multi-scale mel distance and
multi-resolution STFT distance (`mgcore.audio_metrics`). Measured against the
original at 44.1 kHz, after resampling the decoding with soxr: the log-spectral
distance above 8 kHz, the band a low-rate codec cannot carry (the refiner's job).
Codebook utilisation over the whole split: each codebook's perplexity and the share
of its entries used at least once. Speed: encoding, and decoding from the most
codebooks asked, in seconds of audio per second on this machine, the first clip
(compilation) left out.

What a listener notices (key, tempo, instruments, CLAP) is measured in the app layer:
`musicgen.evaluation.codec_music` passes `listen`, which receives every real clip and
every decoding at 44.1 kHz.

All numbers are in-domain (the embedded dataset unless another manifest is given) and
are not comparable to figures on other test sets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.stats

from codec.api import Codec
from mgcore import audio, audio_metrics, loudness
from mgcore.data.manifest import ManifestIndex

REFERENCE_RATE = 44100
HIGH_BAND_HZ = 8000.0


@dataclasses.dataclass
class CodecReport:
    """What `evaluate_codec` measured."""

    checkpoint: str
    manifest: str
    split: str
    clips: int
    seconds: float
    sample_rate: int
    frame_rate: float
    per_codebooks: dict[int, dict[str, float]]  # k -> metric -> mean over clips
    perplexity: list[float]  # per codebook, over the split
    used_fraction: list[float]  # per codebook: share of entries used at least once
    encode_x_realtime: float | None = None  # audio seconds encoded per second
    decode_x_realtime: float | None = None  # audio seconds decoded per second ...
    decode_codebooks: int | None = None  # ... from this many codebooks (the most asked)
    music: dict[str, dict] | None = None  # row name -> the listener's metrics (app layer)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def markdown(self) -> str:
        """A results table, one row per number of codebooks."""
        lines = [
            f"Codec `{self.checkpoint}` on `{self.manifest}` ({self.split} split, "
            f"{self.clips} clips, first {self.seconds:g} s each; in-domain numbers).",
            "",
            "| codebooks | kbps | SI-SDR (dB) ↑ | mel distance ↓ | STFT distance ↓ "
            "| LSD > 8 kHz at 44.1 kHz (dB) ↓ |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for k, m in sorted(self.per_codebooks.items()):
            lines.append(
                f"| {k} | {m['kbps']:.2f} | {m['si_sdr']:.2f} | {m['mel_distance']:.3f} "
                f"| {m['stft_distance']:.3f} | {m['lsd_above_8khz']:.2f} |"
            )
        lines += [
            "",
            "| codebook | perplexity | entries used |",
            "| --- | --- | --- |",
        ]
        for i, (p, u) in enumerate(zip(self.perplexity, self.used_fraction, strict=True)):
            lines.append(f"| {i} | {p:.1f} | {100 * u:.1f} % |")
        if self.encode_x_realtime is not None and self.decode_x_realtime is not None:
            lines += [
                "",
                f"Speed on this machine: encoding {self.encode_x_realtime:.0f}x real time, "
                f"decoding ({self.decode_codebooks} codebooks) "
                f"{self.decode_x_realtime:.0f}x real time.",
            ]
        return "\n".join(lines) + "\n"


def _codebook_counts(codes_KxF: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.bincount(c, minlength=size) for c in codes_KxF])


def evaluate_codec(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    split: str = "test",
    n_codebooks: tuple[int, ...] | None = None,
    max_clips: int | None = None,
    seconds: float = 10.0,
    loudness_lufs: float | None = -16.0,
    progress: bool = True,
    listen: Callable[[dict, int | None, np.ndarray], None] | None = None,
) -> CodecReport:
    """Measures a codec on a manifest split (module docstring).

    Args:
      checkpoint: anything `Codec.from_pretrained` loads.
      manifest: the manifest (JSONL).
      split: which split.
      n_codebooks: numbers of codebooks to decode from (default 1, 2, 4, ..., all).
      max_clips: at most this many clips (default all).
      seconds: the first this many seconds of each clip.
      loudness_lufs: normalise each clip to this loudness first (None: as it is).
      progress: show a progress bar.
      listen: called as `listen(entry, None, clip)` with each manifest entry and its
        (normalised) clip, then `listen(entry, k, decoded)` for each k, both `[C, T]` at
        44.1 kHz.
    """
    from tqdm.auto import tqdm

    codec = Codec.from_pretrained(checkpoint)
    k_all = codec.num_codebooks
    ks = n_codebooks or tuple(
        sorted({*(2**i for i in range(k_all.bit_length()) if 2**i < k_all), k_all})
    )
    if any(not 1 <= k <= k_all for k in ks):
        raise ValueError(f"n_codebooks must lie in [1, {k_all}], got {ks}")
    index = ManifestIndex(manifest, split)
    if len(index) == 0:
        raise ValueError(f"{manifest} has no clips in split {split!r}")
    n = len(index) if max_clips is None else min(max_clips, len(index))
    sums = {k: dict.fromkeys(("si_sdr", "mel_distance", "stft_distance", "lsd_above_8khz"), 0.0)
            for k in ks}  # fmt: skip
    counts = np.zeros((k_all, codec.codebook_size), np.int64)
    timed = dict.fromkeys(("audio", "encode", "decode"), 0.0)
    for i in tqdm(range(n), disable=not progress, desc="eval codec"):
        entry = index[i]
        path = entry["path"]
        original, _ = audio.load_audio(
            path, sample_rate=REFERENCE_RATE, channels=codec.channels, duration=seconds
        )
        if loudness_lufs is not None:
            original = loudness.normalize_loudness(original, REFERENCE_RATE, loudness_lufs)
            original = np.clip(original, -1.0, 1.0)
        if listen is not None:
            listen(entry, None, original)
        wav = audio.resample(original, REFERENCE_RATE, codec.sample_rate)
        start = time.perf_counter()
        codes = codec.encode(wav)
        if i > 0:  # the first clip compiles
            timed["audio"] += wav.shape[-1] / codec.sample_rate
            timed["encode"] += time.perf_counter() - start
        counts += _codebook_counts(codes, codec.codebook_size)
        for k in ks:
            start = time.perf_counter()
            decoded = codec.decode(codes[:k], num_samples=wav.shape[-1])
            if i > 0 and k == max(ks):
                timed["decode"] += time.perf_counter() - start
            m = sums[k]
            m["si_sdr"] += float(audio_metrics.si_sdr(decoded[None], wav[None])[0])
            m["mel_distance"] += float(
                audio_metrics.mel_distance(decoded[None], wav[None], codec.sample_rate)[0]
            )
            m["stft_distance"] += float(audio_metrics.stft_distance(decoded[None], wav[None])[0])
            up = audio.resample(decoded, codec.sample_rate, REFERENCE_RATE)
            if listen is not None:
                listen(entry, k, up)
            t = min(up.shape[-1], original.shape[-1])
            m["lsd_above_8khz"] += float(
                audio_metrics.log_spectral_distance(
                    up[None, :, :t], original[None, :, :t], REFERENCE_RATE, min_hz=HIGH_BAND_HZ
                )[0]
            )
    per_k = {k: {name: v / n for name, v in m.items()} for k, m in sums.items()}
    for k in ks:
        per_k[k]["kbps"] = codec.config.bitrate(k) / 1000
    entropy = scipy.stats.entropy(counts, axis=1)  # nats, over each codebook's histogram
    return CodecReport(
        checkpoint=str(checkpoint),
        manifest=str(manifest),
        split=split,
        clips=n,
        seconds=seconds,
        sample_rate=codec.sample_rate,
        frame_rate=codec.frame_rate,
        per_codebooks=per_k,
        perplexity=[float(x) for x in np.exp(entropy)],
        used_fraction=[float(x) for x in (counts > 0).mean(1)],
        encode_x_realtime=timed["audio"] / timed["encode"] if timed["encode"] else None,
        decode_x_realtime=timed["audio"] / timed["decode"] if timed["decode"] else None,
        decode_codebooks=max(ks) if timed["decode"] else None,
    )


def write_report(report: CodecReport, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Writes `codec_eval.json` and `codec_eval.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "codec_eval.json").write_text(report.to_json())
    (out / "codec_eval.md").write_text(report.markdown())
    return out / "codec_eval.json", out / "codec_eval.md"
