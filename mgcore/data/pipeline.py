"""The audio training pipeline: manifest -> crops -> batches, on grain.

One grain pipeline serves every epoch: `MapDataset.source(manifest index)
.seed(seed).shuffle().repeat(epochs)` (grain reseeds the shuffle and the crops
each epoch), tagged with each element's global index (hence its epoch), sliced
to this process's shard (multi-host: every process shuffles identically and
takes every n-th element, so shards are disjoint), then `random_map` loads one
crop per element (only the crop's frames are decoded), resamples it with soxr,
converts channels, normalises loudness (NumPy: workers never start JAX) and
drops the caption with some probability. With `workers > 0` that runs in grain's
worker processes (`mp_prefetch`).

A file that cannot be used comes back as a `Skipped` marker instead of raising;
the loader, in the main process, warns once per file and epoch, counts it, and
logs a summary at the end of each epoch. So bad data never stops training and
is never lost silently, however many workers there are.

`get_state()`/`set_state()` capture (grain's iterator state, epoch, counts); a
loader restored from a state yields exactly the batches that would have come
next, because every crop is a pure function of (seed, global index). Worker
processes start once, not once per epoch.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Literal

import grain
import numpy as np

from mgcore import loudness
from mgcore.audio import AudioFileError, audio_info, load_audio
from mgcore.data.check import DEFAULT_MIN_SECONDS, SILENCE_PEAK
from mgcore.data.manifest import ManifestIndex

log = logging.getLogger("mgcore.data")


@dataclasses.dataclass(frozen=True)
class AudioPipelineConfig:
    """How clips become training examples.

    Attributes:
        sample_rate: the model's rate; clips are resampled to it with soxr.
        channels: 1 (mono) or 2 (stereo); see `audio.convert_channels`.
        crop_seconds: length of every example; shorter clips are zero-padded and
            `length` says how much is real.
        crop: "random" (a random window per visit), "sequential" (every
            consecutive window of every clip, for evaluation) or "start".
        loudness_lufs: normalise each crop to this loudness (None: leave it).
        caption_dropout: probability of replacing the caption by "" (for
            classifier-free guidance).
        batch_size: examples per batch on this process.
        seed: makes shuffling, crops and dropout reproducible.
        shuffle: shuffle clips each epoch.
        num_epochs: stop after this many epochs (None: never stop).
        workers: grain worker processes (0: load in this process's threads).
        read_threads: threads loading examples, in each worker (or this process).
        prefetch: examples buffered ahead, in each worker (or this process); it
            bounds memory (grain's default of 500 held 1.5 GB a worker here).
        min_seconds: clips shorter than this are skipped as too short.
        shard_index, shard_count: this process's data shard (None: JAX's
            process index and count).
    """

    sample_rate: int = 32000
    channels: int = 1
    crop_seconds: float = 10.0
    crop: Literal["random", "sequential", "start"] = "random"
    loudness_lufs: float | None = -14.0
    caption_dropout: float = 0.0
    batch_size: int = 8
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None
    workers: int = 0
    read_threads: int = 2
    prefetch: int = 16
    min_seconds: float = DEFAULT_MIN_SECONDS
    shard_index: int | None = None
    shard_count: int | None = None


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An element that could not be loaded: which file, and why."""

    path: str
    kind: str
    reason: str
    epoch: int = 0


class _Tag:
    """Pairs each element with its global index in the repeated stream."""

    def __call__(self, index: int, element):
        return index, element


class _Source:
    """Random access to (manifest entry, window) pairs, for grain."""

    def __init__(self, index: ManifestIndex, windows: np.ndarray | None):
        self.index = index
        self.windows = windows  # [N, 2] (entry, window) for sequential crops

    def __len__(self) -> int:
        return len(self.index) if self.windows is None else len(self.windows)

    def __getitem__(self, i: int) -> tuple[dict, int]:
        if self.windows is None:
            return self.index[i], 0
        entry, window = self.windows[i]
        return self.index[int(entry)], int(window)


def load_crop(
    entry: dict, config: AudioPipelineConfig, rng: np.random.Generator, window: int = 0
) -> dict | Skipped:
    """One training example from one manifest entry, or why it cannot be made.

    Args:
        entry: a manifest entry (absolute `path`).
        config: crop length and kind, rate, channels, loudness, caption dropout.
        rng: draws the random crop's offset and the caption dropout.
        window: which window, for sequential crops.
    """
    cfg = config
    path = entry["path"]
    try:
        duration = audio_info(path).duration
        if duration < cfg.min_seconds:
            reason = f"{duration:.2f} s is shorter than the minimum {cfg.min_seconds:g} s"
            return Skipped(path, "too_short", reason)
        if cfg.crop == "random":
            offset = float(rng.uniform(0.0, max(0.0, duration - cfg.crop_seconds)))
        else:
            offset = window * cfg.crop_seconds
        x, _ = load_audio(
            path,
            offset=offset,
            duration=cfg.crop_seconds,
            sample_rate=cfg.sample_rate,
            channels=cfg.channels,
        )
    except AudioFileError as err:
        return Skipped(path, err.kind, err.reason)
    if float(np.abs(x).max()) < SILENCE_PEAK:
        return Skipped(path, "silent", "crop is silent (peak below -80 dBFS)")
    n = round(cfg.crop_seconds * cfg.sample_rate)
    length = min(n, x.shape[-1])
    if cfg.loudness_lufs is not None and length >= loudness.BLOCK_SECONDS * cfg.sample_rate:
        x = loudness.normalize_loudness(x[:, :length], cfg.sample_rate, cfg.loudness_lufs)
        peak = float(np.abs(x).max())
        if peak > 1.0:  # loud targets on peaky audio: never hand the model clipping
            x = x / peak
    out = np.zeros((cfg.channels, n), np.float32)
    out[:, :length] = x[:, :length]
    caption = entry["caption"]
    if cfg.caption_dropout and rng.random() < cfg.caption_dropout:
        caption = ""
    return {
        "audio": out,
        "length": length,
        "caption": caption,
        "attributes": entry["attributes"],
        "path": path,
        "offset": offset,
    }


class _LoadCrop:
    """`load_crop` over grain's tagged elements, with the element's epoch attached.

    Args:
        config: the pipeline's config.
        epoch_length: elements per epoch, to tell an element's epoch from its index.
    """

    def __init__(self, config: AudioPipelineConfig, epoch_length: int):
        self.config = config
        self.epoch_length = epoch_length

    def __call__(self, tagged: tuple[int, tuple[dict, int]], rng: np.random.Generator):
        index, (entry, window) = tagged
        epoch = index // self.epoch_length
        example = load_crop(entry, self.config, rng, window)
        if isinstance(example, Skipped):
            return dataclasses.replace(example, epoch=epoch)
        example["epoch"] = epoch
        return example


def _absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app nobody parsed
    them, so take their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _collate(examples: list[dict]) -> dict:
    return {
        "audio": np.stack([e["audio"] for e in examples]),
        "length": np.asarray([e["length"] for e in examples], np.int32),
        "caption": [e["caption"] for e in examples],
        "attributes": [e["attributes"] for e in examples],
        "path": [e["path"] for e in examples],
        "offset": np.asarray([e["offset"] for e in examples], np.float32),
    }


class AudioLoader:
    """Iterates batches of audio crops from one split of a manifest.

    Yields dicts: `audio` float32 `[B, C, T]`, `length` int32 `[B]` (real samples,
    the rest is padding), `caption`, `attributes`, `path` (lists), `offset`.

    Args:
        manifest: path of the manifest (JSONL).
        split: "train", "valid", "test" or None for all.
        config: see `AudioPipelineConfig`.
    """

    def __init__(self, manifest: str | os.PathLike, split: str | None, config: AudioPipelineConfig):
        self.config = config
        self.index = ManifestIndex(manifest, split)
        if len(self.index) == 0:
            raise ValueError(f"{manifest}: no clips in split {split!r}")
        if config.shard_index is None or config.shard_count is None:
            import jax  # only the process topology; no computation

            self.shard_index, self.shard_count = jax.process_index(), jax.process_count()
        else:
            self.shard_index, self.shard_count = config.shard_index, config.shard_count
        self.windows = self._sequential_windows() if config.crop == "sequential" else None
        self.epoch = 0
        self.skipped = collections.Counter()  # this epoch, by reason
        self.skipped_total = collections.Counter()
        self.last_epoch_skipped = collections.Counter()
        self._warned: set[str] = set()
        self._it = self._iterator()

    def _sequential_windows(self) -> np.ndarray:
        counts = np.maximum(1, (self.index.durations // self.config.crop_seconds).astype(np.int64))
        entry = np.repeat(np.arange(len(counts)), counts)
        window = np.arange(entry.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.stack([entry, window], axis=1)

    def _iterator(self):
        cfg = self.config
        source = _Source(self.index, self.windows)
        ds = grain.MapDataset.source(source).seed(cfg.seed)
        if cfg.shuffle:
            ds = ds.shuffle()
        ds = ds.repeat(cfg.num_epochs).map_with_index(_Tag())
        ds = ds[self.shard_index :: self.shard_count]
        ds = ds.random_map(_LoadCrop(cfg, len(source)))
        it = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch)
        )
        if cfg.workers > 0:
            _absl_flags_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.workers))
        return iter(it)

    def __iter__(self):
        return self

    def _next_example(self) -> dict:
        while True:
            try:
                element = next(self._it)
            except StopIteration:
                self._end_epoch()
                raise
            epoch = element.epoch if isinstance(element, Skipped) else element.pop("epoch")
            while self.epoch < epoch:
                self._end_epoch()
            if isinstance(element, Skipped):
                self.skipped[element.kind] += 1
                self.skipped_total[element.kind] += 1
                if element.path not in self._warned:
                    self._warned.add(element.path)
                    log.warning("skipping %s: %s", element.path, element.reason)
                continue
            return element

    def __next__(self) -> dict:
        examples = []
        while len(examples) < self.config.batch_size:
            examples.append(self._next_example())  # StopIteration drops the remainder
        return _collate(examples)

    def _end_epoch(self) -> None:
        if self.skipped:
            parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            log.warning("epoch %d: skipped %d clips (%s)", self.epoch, self.skipped.total(), parts)
        self.last_epoch_skipped = collections.Counter(self.skipped)
        self.epoch += 1
        self.skipped.clear()
        self._warned.clear()

    def get_state(self) -> dict:
        """A JSON-serialisable state; `set_state` on a fresh loader resumes from it."""
        return {
            "epoch": self.epoch,
            "iterator": self._it.get_state(),
            "skipped": dict(self.skipped),
            "skipped_total": dict(self.skipped_total),
        }

    def set_state(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._it = self._iterator()
        self._it.set_state(state["iterator"])
        self.skipped = collections.Counter(state["skipped"])
        self.skipped_total = collections.Counter(state["skipped_total"])


def training_loader(data, sample_rate: int, channels: int, split: str, **changes) -> AudioLoader:
    """A family's audio loader: `data`'s crops of `split`, this process's share.

    `data` is a family's data config with `manifest`, `crop_seconds`, `loudness_lufs`,
    `batch_size` (global: divided over the processes), `seed` and `workers`; `changes`
    override any `AudioPipelineConfig` field.
    """
    import jax  # only the process topology; no computation

    processes = jax.process_count()
    if data.batch_size % processes:
        raise ValueError(
            f"data.batch_size {data.batch_size} does not split over {processes} processes"
        )
    pipeline = AudioPipelineConfig(
        sample_rate=sample_rate,
        channels=channels,
        crop_seconds=data.crop_seconds,
        loudness_lufs=data.loudness_lufs,
        batch_size=data.batch_size // processes,
        seed=data.seed,
        workers=data.workers,
    )
    return AudioLoader(data.manifest, split, dataclasses.replace(pipeline, **changes))


def held_out_clips(data, sample_rate: int, channels: int) -> np.ndarray:
    """The fixed evaluation clips `[B, C, T]`: the opening `data.eval_seconds` of the first
    `data.eval_clips` clips of `data.eval_split`, the same in every process."""
    loader = training_loader(
        data, sample_rate, channels, data.eval_split, crop="start",
        crop_seconds=data.eval_seconds, batch_size=data.eval_clips, shuffle=False, workers=0,
        shard_index=0, shard_count=1,
    )  # fmt: skip
    return np.asarray(next(loader)["audio"], np.float32)
