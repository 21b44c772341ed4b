"""The token LM's data: a dataset encoded once into codec tokens, and its reader.

The LM trains on codec tokens, not audio (MusicGen, Copet et al. 2023, trains on
EnCodec tokens the same way); running the codec in the input pipeline would
encode every crop again at every epoch. `encode_dataset` encodes each clip of a
manifest once, whole (the codec windows long clips itself), at the codec's rate
and channels, loudness-normalised as the codec's training crops were
(`mgcore.data.pipeline.load_crop`), and writes:

    out/cache.json          format, codec (source, rates, codebooks, fingerprint),
                            manifest fingerprint, loudness, per split: clips,
                            frames, shards, skipped files by reason, progress
    out/{split}-00000.npy   int16 codes (int32 past 2**15 codewords) [K, frames]:
                            the split's clips concatenated along frames
    out/{split}.jsonl       one line a clip: shard, offset, frames, caption,
                            caption_held_out (valid/test), attributes, path

It resumes: a shard and the index are each written atomically (a temp file, then
a rename) and cache.json, written after them, records how far each split got, so
a killed run continues after its last finished shard and a rerun of a finished
cache does no work. A file that cannot be used is skipped with a warning and
counted by reason; it never stops the run.

`encode_dataset` (`token_encode.py`) writes a cache; `TokenCache` reads one (shards
memory-mapped); `token_loader.TokenLoader` iterates its batches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from mgcore.data.manifest import SPLITS

log = logging.getLogger("musicgen.data")

FORMAT = "musicgen-jax-token-cache"
VERSION = 1
META_FILE = "cache.json"
# 262 k frames a shard: 87 min at 50 Hz, 2 MB at K=4 int16; a killed encode loses at most that.
DEFAULT_SHARD_FRAMES = 1 << 18
DEFAULT_LUFS = -16.0  # codec.family.CodecDataConfig's default, what codec recipes train on


class TokenCacheError(ValueError):
    """A cache folder that cannot be read or resumed; the message says which and why."""


def shard_name(split: str, number: int) -> str:
    return f"{split}-{number:05d}.npy"


def codes_dtype(codebook_size: int) -> np.dtype:
    """int16 when every code fits (codes lie in [0, codebook_size)), else int32."""
    return np.dtype(np.int16 if codebook_size <= np.iinfo(np.int16).max + 1 else np.int32)


def _read_meta(directory: Path) -> dict | None:
    path = directory / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TokenCacheError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise TokenCacheError(f"{path} is not a {FORMAT} v{VERSION} file")
    return meta


@dataclasses.dataclass(frozen=True)
class _SplitIndex:
    shard: np.ndarray  # [N] int32
    offset: np.ndarray  # [N] int64, first frame in the shard
    frames: np.ndarray  # [N] int64
    line_offset: np.ndarray  # [N] int64, byte offset of the clip's index line


class TokenCache:
    """A folder written by `encode_dataset`, read lazily: shards are memory-mapped and
    index lines are read when asked, so memory does not grow with the dataset.

    Args:
      directory: the cache folder (kept as `root`).
    """

    def __init__(self, directory: str | os.PathLike):
        self.root = Path(directory)
        meta = _read_meta(self.root)
        if meta is None:
            raise TokenCacheError(
                f"{self.root} holds no {META_FILE}; encode a dataset into it with "
                "`musicgen data encode`"
            )
        self.meta = meta
        self._indexes: dict[str, _SplitIndex] = {}
        self._shards: dict[tuple[str, int], np.ndarray] = {}
        self._opening = threading.Lock()

    def __getstate__(self) -> dict:  # memory maps (and the lock) are not pickled
        return {k: v for k, v in self.__dict__.items() if k not in ("_shards", "_opening")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _shards={}, _opening=threading.Lock())

    @property
    def sample_rate(self) -> int:
        return self.meta["codec"]["sample_rate"]

    @property
    def frame_rate(self) -> float:
        return self.meta["codec"]["frame_rate"]

    @property
    def num_codebooks(self) -> int:
        return self.meta["codec"]["num_codebooks"]

    @property
    def codebook_size(self) -> int:
        return self.meta["codec"]["codebook_size"]

    @property
    def codec_source(self) -> str | None:
        """The codec folder the tokens came from (None if encoded from an object)."""
        return self.meta["codec"]["source"]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits whose encoding finished."""
        return tuple(s for s in SPLITS if self.meta["splits"].get(s, {}).get("complete"))

    def _index(self, split: str) -> _SplitIndex:
        if split not in self._indexes:
            if split not in self.splits:
                state = "unfinished; rerun `musicgen data encode` to finish it"
                if split not in self.meta["splits"]:
                    state = f"not encoded (finished: {', '.join(self.splits) or 'none'})"
                raise TokenCacheError(f"{self.root}: split {split!r} is {state}")
            rows, offset = [], 0
            path = self.root / f"{split}.jsonl"
            with path.open("rb") as f:
                for line in f:
                    clip = json.loads(line)
                    rows.append((clip["shard"], clip["offset"], clip["frames"], offset))
                    offset += len(line)
            table = np.asarray(rows, np.int64).reshape(-1, 4)
            self._indexes[split] = _SplitIndex(
                table[:, 0].astype(np.int32), table[:, 1], table[:, 2], table[:, 3]
            )
        return self._indexes[split]

    def num_clips(self, split: str) -> int:
        return len(self._index(split).frames)

    def frames(self, split: str) -> np.ndarray:
        """Frames of each clip of the split, int64 `[N]`."""
        return self._index(split).frames

    def clip(self, split: str, i: int) -> dict:
        """Clip i's index line: shard, offset, frames, caption(s), attributes, path."""
        with (self.root / f"{split}.jsonl").open("rb") as f:
            f.seek(int(self._index(split).line_offset[i]))
            return json.loads(f.readline())

    def clips(self, split: str) -> list[dict]:
        """Every clip's index line, in order."""
        self._index(split)
        with (self.root / f"{split}.jsonl").open(encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def shard(self, split: str, number: int) -> np.ndarray:
        """Shard `number` of the split, memory-mapped: `[K, frames]`."""
        key = (split, number)
        # One opening at a time: the loader's threads open shards together, and numpy
        # parses a .npy header with ast.literal_eval, which CPython 3.11 does not make
        # thread-safe ("AST constructor recursion depth mismatch", seen in CI here).
        with self._opening:
            if key not in self._shards:
                path = self.root / shard_name(split, number)
                self._shards[key] = np.load(path, mmap_mode="r")
        return self._shards[key]

    def codes(self, split: str, i: int) -> np.ndarray:
        """Clip i's codes, a read-only view: `[K, frames]` (int16 or int32)."""
        index = self._index(split)
        start = int(index.offset[i])
        return self.shard(split, int(index.shard[i]))[:, start : start + int(index.frames[i])]


# ---------------------------------------------------------------------- loading
