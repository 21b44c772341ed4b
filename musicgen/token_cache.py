"""The token LM's data: a dataset encoded once into codec tokens, and its loader.

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

`TokenCache` reads a cache (shards memory-mapped). `TokenLoader` iterates batches
of fixed-length token windows on grain with the audio pipeline's conventions
(mgcore/data/pipeline.py): reshuffling each epoch, per-process sharding, crops
and caption dropout that are pure functions of (seed, global index), and
`get_state`/`set_state` for exact resumption.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import grain
import numpy as np

from codec.api import Codec
from mgcore import loudness
from mgcore.audio import AudioFileError, load_audio
from mgcore.data.check import SILENCE_PEAK
from mgcore.data.manifest import SPLITS, ManifestError, ManifestIndex

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


def load_clip(
    path: str | os.PathLike, sample_rate: int, channels: int, loudness_lufs: float | None
) -> np.ndarray:
    """A whole clip as the cache encodes it: float32 `[C, T]` at the codec's rate and
    channels, normalised to `loudness_lufs` (and scaled down if that clips), as
    `load_crop` normalises the codec's training crops.

    Raises:
      AudioFileError: unusable file, a channel layout that can't be converted, silence.
    """
    try:
        x, _ = load_audio(path, sample_rate=sample_rate, channels=channels)
    except AudioFileError:
        raise
    except ValueError as err:  # convert_channels: an ambiguous channel layout
        raise AudioFileError(path, str(err), "channels") from None
    if float(np.abs(x).max()) < SILENCE_PEAK:
        raise AudioFileError(path, "clip is silent (peak below -80 dBFS)", "silent")
    if loudness_lufs is not None and x.shape[-1] >= loudness.BLOCK_SECONDS * sample_rate:
        x = loudness.normalize_loudness(x, sample_rate, loudness_lufs)
        peak = float(np.abs(x).max())
        if peak > 1.0:
            x = x / peak
    return x


# ---------------------------------------------------------------------- files
def _file_mode() -> int:
    """What a plain `open` would give (mkstemp's files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, value: dict) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(value, indent=2) + "\n"))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(codec: Codec) -> str:
    """A hash of the codec's config and weights: a cache resumes only with the same codec."""
    import jax

    from mgcore.config import to_dict

    h = hashlib.sha256(json.dumps(to_dict(codec.config), sort_keys=True).encode())
    for leaf in jax.tree.leaves(codec.state):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def _training_loudness(source: Path | None) -> float | None:
    """What the codec's training crops were normalised to: its workdir's config says;
    otherwise the codec recipes' default."""
    if source is None or not (source / "checkpoints").is_dir():
        return DEFAULT_LUFS
    from mgcore.config import load_saved_config

    data = getattr(load_saved_config(source / "config.json"), "data", None)
    return getattr(data, "loudness_lufs", DEFAULT_LUFS)


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


# ---------------------------------------------------------------------- writing
class _SplitWriter:
    """Collects one split's codes into shards; commits shard, index, then cache.json."""

    def __init__(self, out: Path, split: str, meta: dict, shard_frames: int):
        self.out, self.split, self.meta, self.shard_frames = out, split, meta, shard_frames
        self.dtype = np.dtype(meta["dtype"])
        new = dict(clips=0, frames=0, shards=0, next_entry=0, skipped={}, complete=False)
        self.state = meta["splits"].setdefault(split, new)  # updated in place, saved in meta
        self.index_path = out / f"{split}.jsonl"
        self.codes: list[np.ndarray] = []
        self.lines: list[dict] = []
        self.frames = 0
        self.skipped: collections.Counter = collections.Counter()
        self._forget_uncommitted()

    def _forget_uncommitted(self) -> None:
        """Drops what a killed run wrote after its last commit: temp files, index lines."""
        for tmp in self.out.glob(f".{self.split}*.tmp"):
            tmp.unlink()
        if not self.index_path.exists():
            return
        lines = self.index_path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = [ln for ln in lines if json.loads(ln)["shard"] < self.state["shards"]]
        if len(keep) != len(lines):
            _write_atomic(self.index_path, lambda f: f.writelines(keep))

    def add(self, position: int, entry: dict, codes_KxF: np.ndarray) -> None:
        line = {
            "shard": self.state["shards"],
            "offset": self.frames,
            "frames": int(codes_KxF.shape[1]),
            "caption": entry["caption"],
        }
        if "caption_held_out" in entry:
            line["caption_held_out"] = entry["caption_held_out"]
        line["attributes"] = entry["attributes"]
        line["path"] = entry["path"]
        self.codes.append(codes_KxF.astype(self.dtype))
        self.lines.append(line)
        self.frames += line["frames"]
        if self.frames >= self.shard_frames:
            self.commit(position + 1)

    def skip(self, kind: str) -> None:
        self.skipped[kind] += 1

    def commit(self, next_entry: int, *, complete: bool = False) -> None:
        state = self.state
        if self.codes:
            shard = np.concatenate(self.codes, axis=1)
            path = self.out / shard_name(self.split, state["shards"])
            _write_atomic(path, lambda f: np.save(f, shard), "wb")

            def write_index(f):
                if self.index_path.exists():
                    with self.index_path.open(encoding="utf-8") as old:
                        shutil.copyfileobj(old, f)
                f.writelines(json.dumps(ln, ensure_ascii=False) + "\n" for ln in self.lines)

            _write_atomic(self.index_path, write_index)
            state["shards"] += 1
            state["clips"] += len(self.lines)
            state["frames"] += self.frames
        if complete and not self.index_path.exists():  # no usable clip: an empty index
            _write_atomic(self.index_path, lambda f: None)
        skipped = collections.Counter(state["skipped"]) + self.skipped
        state["skipped"] = dict(sorted(skipped.items()))
        state["next_entry"], state["complete"] = next_entry, complete
        _write_json(self.out / META_FILE, self.meta)  # the commit point
        self.codes, self.lines, self.frames = [], [], 0
        self.skipped = collections.Counter()


def _chunks(index: ManifestIndex, start: int, seconds: float) -> list[list[int]]:
    """Consecutive clip positions, at most `seconds` of audio a chunk (at least one clip)."""
    chunks, chunk, total = [], [], 0.0
    for position in range(start, len(index)):
        duration = float(index.durations[position])
        if chunk and total + duration > seconds:
            chunks.append(chunk)
            chunk, total = [], 0.0
        chunk.append(position)
        total += duration
    return [*chunks, chunk] if chunk else chunks


# Clips shorter than the codec's window are encoded padded with silence to a multiple of
# this: a handful of compiled programs for a dataset of clips of every length (`Codec`).
BUCKET_SECONDS = 5.0


def _encode_chunk(codec: Codec, clips: list) -> list[np.ndarray | None]:
    """Codes of each loaded clip (None for a skipped one). Clips of equal length share
    one `codec.encode` call, which pads and windows them exactly as it would alone."""
    by_length = collections.defaultdict(list)
    for i, (_, _, x) in enumerate(clips):
        if isinstance(x, np.ndarray):
            by_length[x.shape[-1]].append(i)
    codes: list[np.ndarray | None] = [None] * len(clips)
    for members in by_length.values():
        codes_BxKxF = codec.encode(np.stack([clips[i][2] for i in members]))
        for b, i in enumerate(members):
            codes[i] = codes_BxKxF[b]
    return codes


def encode_dataset(
    codec: Codec | str | os.PathLike,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    splits: Sequence[str] = SPLITS,
    batch_seconds: float = 60.0,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    loudness_lufs: float | Literal["codec"] | None = "codec",
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Encodes a manifest's clips into codec tokens in `out` (resumes a killed run).

    Args:
      codec: a `Codec`, or a folder `Codec.from_pretrained` loads (recorded in cache.json).
      manifest: the dataset's manifest (JSONL).
      out: the cache folder (created).
      splits: the splits to encode.
      batch_seconds: audio loaded ahead and encoded per step; clips of equal length
        within it are encoded in one batch.
      shard_frames: a shard is closed once it holds this many frames.
      loudness_lufs: normalise each clip to this loudness; "codec": what the codec's
        training pipeline used (a workdir's `data.loudness_lufs`, else -16 LUFS).
      workers: threads that decode and resample audio while the codec runs.
      progress: show a progress bar (seconds of audio).

    Returns:
      A summary: `encoded` clips and `encoded_seconds` of audio this run, `skipped`
      this run by reason, per split totals (`clips`, `frames`, `shards`, `skipped`),
      `seconds` taken and the `out` folder.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ManifestError(f"splits must be some of {', '.join(SPLITS)}, got {list(splits)}")
    indexes = {s: ManifestIndex(manifest, s) for s in splits}
    source = None
    if not isinstance(codec, Codec):
        source = Path(codec).resolve()
        codec = Codec.from_pretrained(codec)
    codec = copy.copy(codec)  # clips of any length: a few compiled shapes, not one each
    codec.bucket_seconds = BUCKET_SECONDS
    if loudness_lufs == "codec":
        loudness_lufs = _training_loudness(source)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = _open_meta(out, codec, source, Path(manifest), loudness_lufs)

    todo = {
        s: meta["splits"].get(s, {}).get("next_entry", 0)
        for s in splits
        if not meta["splits"].get(s, {}).get("complete")
    }
    total = sum(indexes[s].durations[start:].astype(np.float64).sum() for s, start in todo.items())
    encoded, encoded_seconds, skipped = 0, 0.0, collections.Counter()
    bar = tqdm(
        total=total,
        desc="encode",
        disable=not progress or total == 0,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]",
    )

    def load(index: ManifestIndex, position: int):
        entry = index[position]
        try:
            x = load_clip(entry["path"], codec.sample_rate, codec.channels, loudness_lufs)
        except AudioFileError as err:
            x = err
        return position, entry, x

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool, bar:
        for split, start in todo.items():
            index, writer = indexes[split], _SplitWriter(out, split, meta, shard_frames)
            chunks = _chunks(index, start, batch_seconds)
            ahead = [pool.submit(load, index, p) for p in (chunks[0] if chunks else [])]
            for k in range(len(chunks)):
                clips = [f.result() for f in ahead]
                if k + 1 < len(chunks):  # decode the next chunk while this one encodes
                    ahead = [pool.submit(load, index, p) for p in chunks[k + 1]]
                for (position, entry, x), codes in zip(
                    clips, _encode_chunk(codec, clips), strict=True
                ):
                    if codes is None:
                        log.warning("skipping %s", x)
                        writer.skip(x.kind)
                        skipped[x.kind] += 1
                    else:
                        writer.add(position, entry, codes)
                        encoded += 1
                        encoded_seconds += x.shape[-1] / codec.sample_rate
                    bar.update(float(index.durations[position]))
            writer.commit(len(index), complete=True)

    return {
        "out": str(out),
        "encoded": encoded,
        "encoded_seconds": round(encoded_seconds, 3),
        "skipped": dict(sorted(skipped.items())),
        "splits": {
            s: {k: meta["splits"][s][k] for k in ("clips", "frames", "shards", "skipped")}
            for s in splits
        },
        "seconds": round(time.perf_counter() - started, 3),
    }


def _open_meta(
    out: Path, codec: Codec, source: Path | None, manifest: Path, lufs: float | None
) -> dict:
    """The folder's cache.json, or a new one; refuses a cache of another codec or dataset."""
    from mgcore.config import to_dict

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "codec": {
            "source": None if source is None else str(source),
            "sample_rate": codec.sample_rate,
            "channels": codec.channels,
            "frame_rate": codec.frame_rate,
            "num_codebooks": codec.num_codebooks,
            "codebook_size": codec.codebook_size,
            "fingerprint": _fingerprint(codec),
            "config": to_dict(codec.config),
        },
        "manifest": {"path": str(manifest.resolve()), "sha256": _sha256_file(manifest)},
        "loudness_lufs": lufs,
        "dtype": codes_dtype(codec.codebook_size).name,
        "splits": {},
    }
    old = _read_meta(out)
    if old is None:
        return meta
    if meta["codec"]["fingerprint"] != old["codec"]["fingerprint"]:
        changed = "codec (its weights or config differ)"
    elif meta["manifest"]["sha256"] != old["manifest"]["sha256"]:
        changed = f"manifest (the contents of {old['manifest']['path']} differ)"
    elif lufs != old["loudness_lufs"]:
        changed = f"loudness target ({old['loudness_lufs']} LUFS, not {lufs})"
    else:
        return old
    raise TokenCacheError(
        f"{out} holds tokens made with another {changed}; encode into a new --out folder, "
        "or delete this one"
    )


# ---------------------------------------------------------------------- reading
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

    def __getstate__(self) -> dict:  # memory maps would be pickled as copies
        return {**self.__dict__, "_shards": {}}

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
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout must lie in [0, 1], got {self.caption_dropout}")


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
        return {"codes": codes_KxF, "length": length, "caption": caption}


def caption_variant(line: dict, variant: int, caption: str) -> str:
    """Rewrite number `variant` (0: `caption` itself) of a clip's caption, always the same
    for the same clip and number."""
    if variant == 0:
        return caption
    from musicgen.synth.captions import write_caption

    seed = zlib.crc32(f"{line.get('path', '')}:{variant}".encode())
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
        return {
            "codes": np.stack(codes),
            "length": np.asarray([e["length"] for e in examples] + [0] * pad, np.int32),
            "caption": np.asarray([e["caption"] for e in examples] + [""] * pad, object),
        }


class TokenLoader:
    """Iterates batches of token windows from one split of a `TokenCache`.

    Yields dicts: `codes` int32 `[B, K, frames]` (0 past `length`), `length` int32
    `[B]` (real frames; 0 for the padding rows of a finite run's last batch) and
    `caption` object `[B]` of str ("" when dropped).

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
            import jax  # only the process topology; no computation

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
