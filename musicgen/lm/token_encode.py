"""Writing a token cache: `encode_dataset` encodes each clip of a manifest once, whole,
and resumes a killed run after its last finished shard (the format: `token_cache.py`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import numpy as np
from tqdm.auto import tqdm

from codec.api import Codec
from mgcore import loudness
from mgcore.audio import AudioFileError, load_audio
from mgcore.config import load_saved_config, to_dict
from mgcore.data.check import SILENCE_PEAK
from mgcore.data.manifest import SPLITS, ManifestError, ManifestIndex
from musicgen.lm.token_cache import (
    DEFAULT_LUFS,
    DEFAULT_SHARD_FRAMES,
    FORMAT,
    META_FILE,
    VERSION,
    TokenCacheError,
    _read_meta,
    codes_dtype,
    shard_name,
)

log = logging.getLogger("musicgen.data")


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
    h = hashlib.sha256(json.dumps(to_dict(codec.config), sort_keys=True).encode())
    for leaf in jax.tree.leaves(codec.state):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


def _training_loudness(source: Path | None) -> float | None:
    """What the codec's training crops were normalised to: its workdir's config says;
    otherwise the codec recipes' default."""
    if source is None or not (source / "checkpoints").is_dir():
        return DEFAULT_LUFS
    data = getattr(load_saved_config(source / "config.json"), "data", None)
    return getattr(data, "loudness_lufs", DEFAULT_LUFS)


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
