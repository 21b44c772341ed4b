"""The README's main job, for as much of the framework as exists so far.

Until the embedded dataset lands, the demo synthesises its own clip: a
four-chord progression (arpeggio, bass, kick and hi-hat) in stereo at 44.1 kHz.
It then exercises the shared audio core on it and prints what it measured:
the file round trip, loudness (peak, RMS, BS.1770 LUFS), STFT round-trip error,
log-mel statistics, and what a round trip through a 32 kHz codec rate costs in
the spectral distances codecs train with.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE = 44100
CODEC_RATE = 32000
# I - V - vi - IV in C major, as MIDI pitches of the triads.
_PROGRESSION = ((60, 64, 67), (55, 59, 62), (57, 60, 64), (53, 57, 60))


def _midi_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def _tone(freq: float, n: int, sr: int, decay: float, harmonics: int = 6) -> np.ndarray:
    t = np.arange(n) / sr
    partials = sum(np.sin(2 * np.pi * freq * k * t) / k**1.5 for k in range(1, harmonics + 1))
    return partials * np.exp(-t / decay)


def synthesize_clip(seconds: float, seed: int = 0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A short stereo piece at 120 bpm: float32 `[2, seconds * sr]` in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    out = np.zeros((2, n + sr), np.float64)
    beat = int(sr * 60 / 120)
    eighth = beat // 2
    transpose = int(rng.integers(-3, 4))
    for step, start in enumerate(range(0, n, eighth)):
        chord = _PROGRESSION[(step // 8) % len(_PROGRESSION)]
        pitch = chord[int(rng.integers(0, 3))] + 12 + transpose
        note = 0.18 * _tone(_midi_hz(pitch), beat, sr, decay=0.25)
        out[0, start : start + beat] += 0.7 * note  # arpeggio panned left
        out[1, start : start + beat] += 0.3 * note
        if step % 8 == 0:  # bass on each bar
            bass = 0.35 * _tone(_midi_hz(chord[0] - 12 + transpose), 4 * beat, sr, 0.8, 3)
            out[:, start : start + 4 * beat] += bass[None, : out.shape[1] - start]
        if step % 2 == 0:  # kick: a falling sine
            t = np.arange(eighth) / sr
            kick = 0.5 * np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)))) * np.exp(-t * 12)
            out[:, start : start + eighth] += kick[None, : out.shape[1] - start]
        hat = 0.05 * rng.standard_normal(eighth // 4) * np.exp(-np.arange(eighth // 4) / 200)
        out[1, start : start + hat.size] += hat  # hi-hat panned right
    out = out[:, :n]
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


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


def run(out_dir: str | os.PathLike = "runs/demo", seconds: float = 8.0, seed: int = 0) -> dict:
    """Runs the demo, prints its report and returns the measured numbers."""
    import jax

    from mgcore import audio, dsp, loudness
    from mgcore import spectral_losses as sl

    out = Path(out_dir)
    started = time.perf_counter()
    print(f"musicgen demo: JAX {jax.__version__} on {jax.devices()[0].platform}")
    print(f"[1/5] synthesising a {seconds:g} s stereo clip at {SAMPLE_RATE} Hz (seed {seed})")
    clip = synthesize_clip(seconds, seed)
    path = audio.save_audio(out / "clip.flac", clip, SAMPLE_RATE, subtype="PCM_24")
    x, sr = audio.load_audio(path)
    results = {"file_roundtrip_max_error": float(np.abs(x - clip).max())}
    print_file_report(path)
    _line("24-bit FLAC round trip, max abs error", f"{results['file_roundtrip_max_error']:.2e}")

    print("[2/5] loudness normalisation to -14 LUFS")
    normed = np.asarray(loudness.normalize_loudness(x, sr, -14.0))
    results["lufs_after_normalisation"] = float(loudness.integrated_loudness(normed, sr))
    audio.save_audio(out / "clip_-14lufs.wav", normed, sr)
    _line("measured after normalisation", f"{results['lufs_after_normalisation']:.3f} LUFS")

    print("[3/5] STFT (n_fft 2048, hop 512) and inverse STFT")
    recon = jax.jit(lambda s: dsp.istft(dsp.stft(s, 2048, 512), 512, length=s.shape[-1]))(x)
    err = np.asarray(recon) - x
    results["istft_relative_error"] = float(np.linalg.norm(err) / np.linalg.norm(x))
    _line("iSTFT(STFT(x)) relative error", f"{results['istft_relative_error']:.2e}")

    print("[4/5] log-mel spectrogram (128 Slaney mels, 80 dB range)")
    logmel = np.asarray(dsp.log_mel_spectrogram(x, sr, 2048, 512, 128))
    results["logmel_shape"] = list(logmel.shape)
    _line("shape [channels, mels, frames]", str(list(logmel.shape)))
    _line("mean / max level", f"{logmel.mean():.1f} / {logmel.max():.1f} dB")

    print(f"[5/5] round trip through the {CODEC_RATE} Hz codec rate (soxr)")
    down = audio.resample(x, sr, CODEC_RATE)
    back = audio.resample(down, CODEC_RATE, sr)[..., : x.shape[-1]]
    mel_cfg = sl.MultiScaleMelLoss.dac(sr)
    stft_cfg = sl.MultiResolutionSTFTLoss.dac()
    results["mel_distance_32k"] = float(sl.multi_scale_mel_loss(back, x, mel_cfg))
    results["stft_distance_32k"] = float(sl.multi_resolution_stft_loss(back, x, stft_cfg))
    _line("multi-scale mel distance (DAC's)", f"{results['mel_distance_32k']:.4f}")
    _line("multi-resolution STFT distance (DAC's)", f"{results['stft_distance_32k']:.4f}")
    _line("wrote", f"{out / 'clip.flac'}, {out / 'clip_-14lufs.wav'}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return results
