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
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

SPLITS = ("train", "valid", "test")
REQUIRED_FIELDS = ("path", "duration", "sample_rate", "channels", "caption", "attributes", "split")
REQUIRED_ATTRIBUTES = ("genre", "bpm", "key", "mode", "instruments")


class ManifestError(ValueError):
    """A manifest that cannot be read: names the file, the line and what is wrong."""


def validate_entry(entry: dict, where: str = "entry") -> dict:
    """Checks one manifest entry's fields and types; returns it unchanged."""
    missing = [f for f in REQUIRED_FIELDS if f not in entry]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}")
    if entry["split"] not in SPLITS:
        raise ManifestError(f"{where}: split must be one of {SPLITS}, got {entry['split']!r}")
    if not isinstance(entry["attributes"], dict):
        raise ManifestError(f"{where}: attributes must be an object")
    absent = [a for a in REQUIRED_ATTRIBUTES if a not in entry["attributes"]]
    if absent:
        raise ManifestError(f"{where}: attributes lack {', '.join(absent)} (null is allowed)")
    if not isinstance(entry["caption"], str):
        raise ManifestError(f"{where}: caption must be a string")
    return entry


def write_manifest(path: str | os.PathLike, entries: Iterable[dict]) -> int:
    """Writes entries as JSONL atomically (a temp file renamed into place).

    Returns:
        The number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for i, entry in enumerate(entries):
                validate_entry(entry, f"entry {i}")
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def iter_manifest(path: str | os.PathLike) -> Iterator[dict]:
    """Yields every entry of a manifest, validated, with `path` made absolute."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    root = path.parent
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield _parse(line, root, f"{path}:{number}")


def _parse(line: bytes, root: Path, where: str) -> dict:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a JSON object")
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
        if not self.path.is_file():
            raise ManifestError(f"{self.path}: manifest not found")
        if split is not None and split not in SPLITS:
            raise ManifestError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        offsets, durations = [], []
        with self.path.open("rb") as f:
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
