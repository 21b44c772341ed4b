"""The dataset manifest: one JSON object a line, one line a clip.

Fields: `path` (relative to the manifest's folder, or absolute), `duration`
(seconds), `sample_rate`, `channels`, `caption`, `attributes` (an object with at
least `genre`, `bpm`, `key`, `mode`, `instruments`; values may be null for a
user's own audio) and `split` (`train`, `valid` or `test`).

`ManifestIndex` keeps only the byte offset and duration of each selected line
(12 bytes a clip) and reads a line when asked, so the data pipeline's memory does not grow
with the size of the dataset.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

SPLITS = ("train", "valid", "test")
REQUIRED_FIELDS = ("path", "duration", "sample_rate", "channels", "caption", "attributes", "split")
REQUIRED_ATTRIBUTES = ("genre", "bpm", "key", "mode", "instruments")


class ManifestError(ValueError):
    """A manifest that cannot be read or written: one line naming the file, the line and
    what is wrong."""


def json_type(value) -> str:
    """The JSON name of a parsed value's type, for messages: "array", "string", ..."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_entry(entry: dict, where: str = "entry") -> dict:
    """Checks one manifest entry's fields and types; returns it unchanged."""
    missing = [f for f in REQUIRED_FIELDS if f not in entry]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(entry["path"], str) or not entry["path"] or "\0" in entry["path"]:
        raise ManifestError(f"{where}: path must be a non-empty string, got {entry['path']!r:.80}")
    if not _is_number(entry["duration"]) or entry["duration"] < 0:
        raise ManifestError(
            f"{where}: duration must be seconds >= 0, got {entry['duration']!r:.80}"
        )
    for field in ("sample_rate", "channels"):
        if not _is_number(entry[field]) or entry[field] <= 0:
            raise ManifestError(f"{where}: {field} must be a number > 0, got {entry[field]!r:.80}")
    if entry["split"] not in SPLITS:
        raise ManifestError(f"{where}: split must be one of {SPLITS}, got {entry['split']!r:.80}")
    if not isinstance(entry["attributes"], dict):
        raise ManifestError(f"{where}: attributes must be an object")
    absent = [a for a in REQUIRED_ATTRIBUTES if a not in entry["attributes"]]
    if absent:
        raise ManifestError(f"{where}: attributes lack {', '.join(absent)} (null is allowed)")
    if not isinstance(entry["caption"], str):
        raise ManifestError(f"{where}: caption must be a string")
    return entry


def check_writable(path: str | os.PathLike) -> None:
    """Says up front, before any work, whether a manifest can be written at `path`: its folder
    is made if missing and a temporary file is created in it and removed.

    Raises:
        ManifestError: `path` is a directory or not a regular file, or its folder cannot be
            made or written.
    """
    path = Path(path)
    if path.is_dir():
        raise ManifestError(
            f"{path}: is a directory; name the manifest file, e.g. {path}/manifest.jsonl"
        )
    if path.exists() and not path.is_file():
        raise ManifestError(f"{path}: not a regular file; name a .jsonl file to write")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ManifestError(f"{path}: cannot write the manifest here ({blocker} is a file)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ManifestError(f"{path}: cannot write the manifest here ({_os_reason(err)})") from None


def _os_reason(err: OSError) -> str:
    """An OSError's reason, without the file name it carries (a temporary file the user
    never named): "permission denied", "no space left on device"."""
    if isinstance(err, PermissionError):
        return "permission denied"
    return (err.strerror or type(err).__name__).lower()


def write_manifest(path: str | os.PathLike, entries: Iterable[dict]) -> int:
    """Writes entries as JSONL atomically (a temp file renamed into place).

    Returns:
        The number of lines written.

    Raises:
        ManifestError: an entry fails `validate_entry`, or the file cannot be written.
    """
    path = Path(path)
    check_writable(path)
    count = 0
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ManifestError(f"{path}: cannot write the manifest ({_os_reason(err)})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for i, entry in enumerate(entries):
                validate_entry(entry, f"entry {i}")
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    except OSError as err:
        raise ManifestError(f"{path}: cannot write the manifest ({_os_reason(err)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def _open(path: Path) -> BinaryIO:
    """Opens a manifest for reading, or says in one line why it cannot be."""
    try:
        if not path.exists():
            raise ManifestError(f"{path}: manifest not found")
        if path.is_dir():
            raise ManifestError(f"{path}: is a directory, not a manifest file")
        if not stat.S_ISREG(path.stat().st_mode):
            raise ManifestError(f"{path}: not a regular file (a pipe, socket or device)")
        return path.open("rb")
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({_os_reason(err)})") from None


def iter_manifest(path: str | os.PathLike) -> Iterator[dict]:
    """Yields every entry of a manifest, validated, with `path` made absolute."""
    path = Path(path)
    root = path.parent
    with _open(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield _parse(line, root, f"{path}:{number}")


def _parse(line: bytes, root: Path, where: str) -> dict:
    try:
        entry = json.loads(line.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise ManifestError(f"{where}: not UTF-8 text (byte 0x{byte:02x})") from None
    except ValueError as err:  # bad JSON, or an integer of more digits than Python converts
        raise ManifestError(f"{where}: not valid JSON ({getattr(err, 'msg', err)})") from None
    except RecursionError:
        raise ManifestError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {json_type(entry)}")
    validate_entry(entry, where)
    entry["path"] = str(root / entry["path"])  # absolute paths stay absolute
    return entry


class ManifestIndex:
    """Random access to one split of a manifest without holding its entries.

    Args:
        path: the manifest.
        split: keep only this split (None keeps all).
    """

    def __init__(self, path: str | os.PathLike, split: str | None = None):
        self.path = Path(path)
        if split is not None and split not in SPLITS:
            raise ManifestError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        offsets, durations = [], []
        with _open(self.path) as f:
            offset = 0
            for number, line in enumerate(f, start=1):
                if line.strip():
                    entry = _parse(line, self.path.parent, f"{self.path}:{number}")
                    if split is None or entry["split"] == split:
                        offsets.append(offset)
                        durations.append(entry["duration"])
                offset += len(line)
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self.durations = np.asarray(durations, dtype=np.float32)  # seconds, per clip

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, index: int) -> dict:
        with self.path.open("rb") as f:
            f.seek(int(self._offsets[index]))
            return _parse(f.readline(), self.path.parent, f"{self.path}@{index}")
