"""The data sections every family's experiment shares, and their `:debug` shrink.

`DataConfig` is where a run's clips come from (a manifest, rendered from the embedded
dataset on first use when `embedded_hours` > 0); `AudioDataConfig` adds how audio is cut
into training crops and which held-out clips the evaluation hook looks at. The codec,
refiner and judge families extend `AudioDataConfig`; the token LM, which reads a token
cache instead of audio, extends `DataConfig`.
"""

from __future__ import annotations

import dataclasses

# The embedded dataset's smallest slice: what every `:debug` recipe trains on.
DEBUG_MANIFEST = "data/embedded_debug/manifest.jsonl"
DEBUG_HOURS = 0.02


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a run's clips come from.

    Attributes:
      manifest: a manifest from `musicgen data synth` or `musicgen data prepare`.
      embedded_hours: when > 0 and `manifest` does not exist, `musicgen train` first
        renders this many hours of the embedded dataset into the manifest's folder.
      split, eval_split: manifest splits for training and for the evaluation hook.
      batch_size: global batch (all processes together).
      seed: shuffling, crops and caption choice.
    """

    manifest: str = "data/embedded/manifest.jsonl"
    embedded_hours: float = 0.0
    split: str = "train"
    eval_split: str = "valid"
    batch_size: int = 16
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class AudioDataConfig(DataConfig):
    """Audio cut into training crops (`mgcore.data.pipeline.training_loader`).

    Attributes:
      crop_seconds: length of each training example.
      loudness_lufs: normalise each crop to this loudness (None: leave it).
      workers: grain worker processes.
      eval_clips, eval_seconds: the fixed held-out clips the evaluation hook looks at
        (`held_out_clips`): the opening `eval_seconds` of the first `eval_clips`.
    """

    crop_seconds: float = 1.0
    loudness_lufs: float | None = -16.0
    workers: int = 0
    eval_clips: int = 4
    eval_seconds: float = 4.0


def debug_data(data: DataConfig, **changes) -> DataConfig:
    """`data` on the embedded dataset's smallest slice (rendered on first use) in batches
    of 2, loaded in-process, with two half-second held-out clips; `changes` go on top."""
    common = {"manifest": DEBUG_MANIFEST, "embedded_hours": DEBUG_HOURS, "batch_size": 2}
    if isinstance(data, AudioDataConfig):
        common.update(workers=0, eval_clips=2, eval_seconds=0.5)
    return dataclasses.replace(data, **{**common, **changes})
