"""Batches of fixed-length token windows from a `TokenCache`, for the token LM.

`TokenLoader` iterates on grain with the audio pipeline's conventions
(mgcore/data/pipeline.py): reshuffling each epoch, per-process sharding, crops and
caption dropout that are pure functions of (seed, global index), and
`get_state`/`set_state` for exact resumption.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Sequence
from typing import Literal

import grain
import jax
import numpy as np

from musicgen.controls import FIELDS as CONTROL_FIELDS
from musicgen.controls import Controls
from musicgen.controls.features import NOT_ASKED, frame_features, global_arrays
from musicgen.lm.token_cache import TokenCache, TokenCacheError
from musicgen.synth.captions import write_caption


@dataclasses.dataclass(frozen=True)
class TokenPipelineConfig:
    """How cached clips become token-LM examples.

    Attributes:
      frames: sequence length in codec frames; shorter clips (and the last window of
        a clip, for sequential crops) are padded with 0 and `length` says how much
        is real.
      batch_size: rows per batch on this process.
      seed: makes shuffling, crops and caption dropout reproducible.
      shuffle: shuffle clips (windows, for sequential crops) each epoch.
      crop: "random" (a random window of each clip per visit), "start" (each clip's
        first window) or "sequential" (every consecutive window of every clip once
        an epoch, so held-out cross-entropy sees each token once).
      caption_variants: > 0: each example's caption is one of this many rewrites of its
        clip's attributes by the embedded dataset's caption writer (train templates,
        other synonyms, orders and omissions), or the clip's own caption, drawn per
        example. One caption per clip lets a small model memorise caption -> clip;
        paraphrases push it to the words that describe the music. Clips whose
        attributes cannot be written keep their caption.
      caption_dropout: probability of replacing the caption by "" (for
        classifier-free guidance).
      caption_field: the index field that gives the caption ("caption_held_out" for
        held-out templates on valid/test; clips without it use "caption").
      controls: also give each example its clip's controls (`musicgen.controls`, from the
        index line's attributes: the truth for the embedded dataset), as the arrays of
        `musicgen/lm/controls.py` (`control_*`), the grid cut at the window's start.
      controls_off: probability that an example has no controls at all (text alone; the
        caption is dropped as usual), so the model keeps reading the words.
      control_dropout: otherwise, the probability of dropping each control on its own
        (tempo, metre, key, instruments, chords), so any subset works.
      num_epochs: stop after this many epochs (None: never); the last batch is
        padded with rows of length 0.
      read_threads, prefetch: threads cutting examples, and batches buffered ahead.
      shard_index, shard_count: this process's data shard (None: JAX's process
        index and count).
    """

    frames: int
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    crop: Literal["random", "start", "sequential"] = "random"
    caption_dropout: float = 0.0
    caption_field: str = "caption"
    caption_variants: int = 0
    controls: bool = False
    controls_off: float = 0.3
    control_dropout: float = 0.3
    num_epochs: int | None = None
    read_threads: int = 2
    prefetch: int = 4
    shard_index: int | None = None
    shard_count: int | None = None

    def __post_init__(self):
        if self.frames < 1 or self.batch_size < 1:
            raise ValueError(f"frames and batch_size must be >= 1, got {self}")
        if self.crop not in ("random", "start", "sequential"):
            raise ValueError(f"crop must be random, start or sequential, got {self.crop!r}")
        for name in ("caption_dropout", "controls_off", "control_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


class _Crop:
    """One example from (global index, (clip, window)): a pure function of both and
    the seed, so a restored or resharded loader cuts the same crops."""

    def __init__(self, cache: TokenCache, split: str, config: TokenPipelineConfig):
        self.cache, self.split, self.config = cache, split, config

    def __call__(self, index: int, element: np.ndarray) -> dict:
        cfg, clip, window = self.config, int(element[0]), int(element[1])
        rng = np.random.default_rng((cfg.seed, index))
        codes_KxN = self.cache.codes(self.split, clip)
        n = codes_KxN.shape[1]
        if cfg.crop == "random":
            start = int(rng.integers(0, max(n - cfg.frames, 0) + 1))
        else:
            start = window * cfg.frames
        length = min(cfg.frames, n - start)
        codes_KxF = np.zeros((codes_KxN.shape[0], cfg.frames), np.int32)
        codes_KxF[:, :length] = codes_KxN[:, start : start + length]
        line = self.cache.clip(self.split, clip)
        caption = line.get(cfg.caption_field, line["caption"])
        if cfg.caption_variants:
            caption = caption_variant(line, int(rng.integers(cfg.caption_variants + 1)), caption)
        if cfg.caption_dropout and rng.random() < cfg.caption_dropout:
            caption = ""
        example = {"codes": codes_KxF, "length": length, "caption": caption}
        if cfg.controls:
            truth = Controls.from_attributes(line.get("attributes") or {})
            example["controls"] = self._controls(truth, start, rng)
        return example

    def _controls(self, truth: Controls, start: int, rng: np.random.Generator) -> dict:
        """The example's control arrays: the truth, less what dropout drops."""
        cfg = self.config
        if rng.random() < cfg.controls_off:
            dropped = set(CONTROL_FIELDS)
        else:
            dropped = {f for f in CONTROL_FIELDS if rng.random() < cfg.control_dropout}
        rate = self.cache.frame_rate
        frames = frame_features(
            truth,
            start / rate,
            cfg.frames,
            rate,
            beat="bpm" not in dropped,
            bar=not dropped & {"bpm", "time_signature"},
            chords="chords" not in dropped,
        )
        asked = global_arrays([truth.without(*dropped)])
        return {**{k: v[0] for k, v in asked.items()}, "frames": frames}


def clip_key(path: str) -> str:
    """What seeds a clip's caption rewrites: its file name, not its absolute path, so that
    a dataset moved to another folder (or a test's temporary one) trains on the same
    captions."""
    return os.path.basename(str(path))


def caption_variant(line: dict, variant: int, caption: str) -> str:
    """Rewrite number `variant` (0: `caption` itself) of a clip's caption, always the same
    for the same clip and number."""
    if variant == 0:
        return caption
    seed = zlib.crc32(f"{clip_key(line.get('path', ''))}:{variant}".encode())
    try:
        return write_caption(line["attributes"], np.random.default_rng(seed)).text
    except (KeyError, TypeError, ValueError, IndexError):
        return caption


class _Collate:
    """Stacks examples into a batch; a short last batch gets rows of length 0."""

    def __init__(self, batch_size: int, codes_shape: tuple[int, int]):
        self.batch_size, self.codes_shape = batch_size, codes_shape

    def __call__(self, examples: Sequence[dict]) -> dict:
        pad = self.batch_size - len(examples)
        codes = [e["codes"] for e in examples] + [np.zeros(self.codes_shape, np.int32)] * pad
        batch = {
            "codes": np.stack(codes),
            "length": np.asarray([e["length"] for e in examples] + [0] * pad, np.int32),
            "caption": np.asarray([e["caption"] for e in examples] + [""] * pad, object),
        }
        if examples and "controls" in examples[0]:
            first = examples[0]["controls"]
            for name, value in first.items():
                rows = [e["controls"][name] for e in examples]
                rows += [np.full_like(value, NOT_ASKED[name])] * pad
                batch[f"control_{name}"] = np.stack(rows)
        return batch


class TokenLoader:
    """Iterates batches of token windows from one split of a `TokenCache`.

    Yields dicts: `codes` int32 `[B, K, frames]` (0 past `length`), `length` int32
    `[B]` (real frames; 0 for the padding rows of a finite run's last batch),
    `caption` object `[B]` of str ("" when dropped) and, with `config.controls`, the
    `control_*` arrays (`musicgen/lm/controls.py`).

    Args:
      cache: a `TokenCache` or its folder.
      split: "train", "valid" or "test".
      config: see `TokenPipelineConfig`.
    """

    def __init__(
        self, cache: TokenCache | str | os.PathLike, split: str, config: TokenPipelineConfig
    ):
        self.cache = cache if isinstance(cache, TokenCache) else TokenCache(cache)
        self.split, self.config = split, config
        frames = self.cache.frames(split)
        if frames.size == 0:
            raise TokenCacheError(f"{self.cache.root}: split {split!r} holds no clips")
        if config.shard_index is None or config.shard_count is None:
            self.shard_index, self.shard_count = jax.process_index(), jax.process_count()
        else:
            self.shard_index, self.shard_count = config.shard_index, config.shard_count
        if config.crop == "sequential":
            counts = -(-frames // config.frames)  # every window, the last one partial
            clip = np.repeat(np.arange(frames.size), counts)
            window = np.arange(clip.size) - np.repeat(np.cumsum(counts) - counts, counts)
        else:
            clip, window = np.arange(frames.size), np.zeros(frames.size, np.int64)
        self.elements = np.stack([clip, window], axis=1)  # [N, 2]: (clip, window)
        self._it = self._iterator()

    def _iterator(self):
        cfg = self.config
        ds = grain.MapDataset.source(self.elements).seed(cfg.seed)
        if cfg.shuffle:
            ds = ds.shuffle()
        ds = ds.repeat(cfg.num_epochs).map_with_index(_Crop(self.cache, self.split, cfg))
        ds = ds[self.shard_index :: self.shard_count]
        collate = _Collate(cfg.batch_size, (self.cache.num_codebooks, cfg.frames))
        ds = ds.batch(cfg.batch_size, drop_remainder=cfg.num_epochs is None, batch_fn=collate)
        it = ds.to_iter_dataset(
            grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch)
        )
        return iter(it)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def get_state(self) -> dict:
        """A JSON-serialisable state; `set_state` on a fresh loader resumes from it."""
        return {"iterator": self._it.get_state()}

    def set_state(self, state: dict) -> None:
        self._it = self._iterator()
        self._it.set_state(state["iterator"])
