"""Refiner quality against its baseline on a manifest split (`musicgen eval refiner`).

For each held-out clip (its opening `seconds` at 44.1 kHz, loudness-normalised as in
training) the refiner's codec encodes it once; the first k codebooks are decoded
and resampled to 44.1 kHz with soxr (the baseline) and refined with each number of
sampler steps asked for (the same codes, the same seed). Both are measured against the
original: DAC's multi-scale mel distance, and the log-spectral distance above 8 kHz,
the band a low-rate codec cannot carry. The report gives each distance's mean over the
clips with its standard error, and the paired difference to the baseline.

All numbers are in-domain (the embedded dataset unless another manifest is given) and
are not comparable to figures on other test sets.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from diffusion.refiner.api import Refiner
from mgcore.config import ConfigError
from mgcore.data.config import AudioDataConfig
from mgcore.data.manifest import ManifestError, ManifestIndex
from mgcore.data.pipeline import held_out_clips

HIGH_BAND_HZ = 8000.0


@dataclasses.dataclass
class RefinerReport:
    """What `evaluate_refiner` measured: per row ("baseline", "4 steps", ...) and metric
    ("mel", "lsd_high"), the mean over clips, its standard error, and (refined rows) the
    mean paired difference to the baseline with its standard error."""

    checkpoint: str
    manifest: str
    split: str
    clips: int
    seconds: float
    codebooks: int
    codec_rate: int
    rows: dict[str, dict[str, float]]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def beats_baseline(self) -> list[str]:
        """Refined rows lower than the baseline on both distances."""
        base = self.rows["baseline"]
        return [
            name for name, m in self.rows.items()
            if name != "baseline" and m["mel"] < base["mel"] and m["lsd_high"] < base["lsd_high"]
        ]  # fmt: skip

    def markdown(self) -> str:
        """A results table, one row for the baseline and one per step count."""
        lines = [
            f"Refiner `{self.checkpoint}` on `{self.manifest}` ({self.split} split, "
            f"{self.clips} clips, first {self.seconds:g} s each, k = {self.codebooks} "
            f"codebooks of the {self.codec_rate} Hz codec; in-domain numbers, mean ± "
            "standard error over clips; Δ: paired difference to the baseline).",
            "",
            "| audio | mel distance ↓ | Δ mel | LSD > 8 kHz (dB) ↓ | Δ LSD |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, m in self.rows.items():
            lines.append(
                f"| {name} | {m['mel']:.3f} ± {m['mel_se']:.3f} | {_delta(m, 'mel')} "
                f"| {m['lsd_high']:.2f} ± {m['lsd_high_se']:.2f} | {_delta(m, 'lsd_high')} |"
            )
        wins = self.beats_baseline()
        lines += ["", "Beats the baseline on both distances: " + (", ".join(wins) or "none") + "."]
        return "\n".join(lines) + "\n"


def _delta(row: dict[str, float], metric: str) -> str:
    if metric + "_delta" not in row:
        return "–"
    return f"{row[metric + '_delta']:+.3f} ± {row[metric + '_delta_se']:.3f}"


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    se = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(np.mean(x)), se


def evaluate_refiner(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    split: str = "test",
    steps: tuple[int, ...] = (4, 8, 16, 32, 50),
    max_clips: int | None = None,
    seconds: float = 5.0,
    batch_size: int = 8,
    seed: int = 0,
    loudness_lufs: float | None = -16.0,
    progress: bool = True,
) -> RefinerReport:
    """Measures a refiner against its baseline on a manifest split (module docstring).

    Args:
      checkpoint: anything `Refiner.from_pretrained` loads.
      manifest: the manifest (JSONL) of 44.1 kHz audio.
      split: which split.
      steps: sampler step counts to refine with.
      max_clips: at most this many clips (default all of the split).
      seconds: the opening this many seconds of each clip.
      batch_size: clips refined together.
      seed: the sampler's noise.
      loudness_lufs: normalise each clip to this loudness first (None: as it is).
      progress: show a progress bar.
    """
    if not steps or any(int(s) < 1 for s in steps):
        raise ConfigError(f"steps must be positive step counts, got {steps}")
    refiner = Refiner.from_pretrained(checkpoint)
    available = len(ManifestIndex(manifest, split))
    if available == 0:
        raise ManifestError(f"{manifest} has no clips in split {split!r}; name another --split")
    n = available if max_clips is None else min(max_clips, available)
    data = AudioDataConfig(manifest=str(manifest), eval_split=split, eval_clips=n,
                           eval_seconds=seconds, loudness_lufs=loudness_lufs)  # fmt: skip
    clips = held_out_clips(data, refiner.sample_rate, refiner.channels)
    scores: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="eval refiner"):
        batch = clips[start : start + batch_size]
        result = refiner.compare(batch, refiner.sample_rate, steps=steps, seed=seed)
        for key, value in result.scores(HIGH_BAND_HZ).items():
            scores.setdefault(key, []).append(value)
    flat = {k: np.concatenate(v) for k, v in scores.items()}
    rows = {}
    for name in ["baseline", *(f"refined_{int(s)}" for s in steps)]:
        row = {}
        for metric in ("mel", "lsd_high"):
            x = flat[f"{metric}_{name}"]
            row[metric], row[metric + "_se"] = _mean_se(x)
            if name != "baseline":
                d = x - flat[f"{metric}_baseline"]
                row[metric + "_delta"], row[metric + "_delta_se"] = _mean_se(d)
        rows["baseline" if name == "baseline" else f"{name.split('_')[1]} steps"] = row
    return RefinerReport(
        checkpoint=str(checkpoint),
        manifest=str(manifest),
        split=split,
        clips=n,
        seconds=seconds,
        codebooks=refiner.config.coarse.codebooks,
        codec_rate=refiner.codec.sample_rate,
        rows=rows,
    )


def write_report(report: RefinerReport, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Writes `refiner_eval.json` and `refiner_eval.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "refiner_eval.json").write_text(report.to_json())
    (out / "refiner_eval.md").write_text(report.markdown())
    return out / "refiner_eval.json", out / "refiner_eval.md"
