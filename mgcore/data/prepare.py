"""A manifest from a folder of the user's own audio.

Captions come, in order of precedence, from a captions file (`--captions`):
CSV with a path column (`path`, `file` or `filename`) and a caption column
(`caption`, `description` or `text`), or JSONL with the same keys; from a sidecar
`.txt` next to the audio; or from an audiocraft-style sidecar `.json`
(`description` plus optional `genre`, `bpm`, `key`, `moods`, `instrument`...). An
audiocraft JSONL manifest (`path`, `duration`, `sample_rate` a line) passed as the
captions file works too: its paths select the files and their sidecars give
the captions. Attributes unknown for a user's audio are null.

Splits are assigned by a hash of the file's relative path, so they are stable
when files are added and never depend on the order of a directory listing.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from pathlib import Path

from mgcore.audio import UNSUPPORTED_AUDIO_EXTENSIONS
from mgcore.data.check import DEFAULT_MIN_SECONDS, CheckReport, check_files
from mgcore.data.manifest import REQUIRED_ATTRIBUTES, write_manifest

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus", ".w64", ".rf64")
_PATH_KEYS = ("path", "file", "filename", "audio")
_CAPTION_KEYS = ("caption", "description", "text")


def _first(row: dict, keys: tuple[str, ...]):
    for k in keys:
        if row.get(k) not in (None, ""):
            return row[k]
    return None


def read_captions(path: str | os.PathLike) -> dict[str, str | None]:
    """Reads a CSV or JSONL captions file: {audio path as written: caption or None}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: captions file not found")
    rows: list[dict] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
    captions = {}
    for number, row in enumerate(rows, start=1):
        audio = _first(row, _PATH_KEYS)
        if audio is None:
            raise ValueError(f"{path}: row {number} has no path column ({', '.join(_PATH_KEYS)})")
        captions[str(audio)] = _first(row, _CAPTION_KEYS)
    return captions


def _sidecar(audio: Path) -> tuple[str | None, dict]:
    """Caption and attributes from `<name>.txt` or an audiocraft `<name>.json`."""
    txt, meta = audio.with_suffix(".txt"), audio.with_suffix(".json")
    attributes: dict = {}
    caption = None
    if meta.is_file():
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            info = {}
        if isinstance(info, dict):
            caption = _first(info, _CAPTION_KEYS)
            attributes = {
                "genre": info.get("genre"),
                "bpm": info.get("bpm"),
                "key": info.get("key"),
                "mode": info.get("mode"),
                "instruments": info.get("instrument") or info.get("instruments"),
                "mood": info.get("moods") or info.get("mood"),
            }
    if caption is None and txt.is_file():
        caption = txt.read_text(encoding="utf-8").strip() or None
    return caption, attributes


def split_of(relative_path: str, valid_fraction: float, test_fraction: float) -> str:
    u = zlib.crc32(relative_path.encode()) / 2**32
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def prepare_manifest(
    audio_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    captions: str | os.PathLike | None = None,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    workers: int = 2,
    progress: bool = True,
) -> CheckReport:
    """Scans `audio_dir`, checks every audio file, and writes a manifest of the usable
    ones to `out`. Paths in the manifest are relative to `out`'s folder.

    Returns:
        The check report over all audio files found (usable and not).
    """
    root, out = Path(audio_dir).resolve(), Path(out).resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    given = read_captions(captions) if captions else None
    if given is not None:
        files = [(root / p if not Path(p).is_absolute() else Path(p)) for p in given]
        by_file = {f.resolve(): given[p] for f, p in zip(files, given, strict=True)}
    else:
        suffixes = AUDIO_EXTENSIONS + UNSUPPORTED_AUDIO_EXTENSIONS
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
        by_file = {}
    report, entries = CheckReport(), []
    verdicts = check_files(files, min_seconds=min_seconds, workers=workers, progress=progress,
                           desc=f"scanning {root.name}")  # fmt: skip
    for path, verdict in zip(files, verdicts, strict=True):
        report.add(verdict)
        if not verdict.ok:
            continue
        caption, attributes = _sidecar(path)
        caption = by_file.get(path.resolve()) or caption or ""
        for key in REQUIRED_ATTRIBUTES:
            attributes.setdefault(key, None)
        relative = os.path.relpath(path.resolve(), root)
        entries.append(
            {
                "path": os.path.relpath(path.resolve(), out.parent),
                "duration": round(verdict.duration, 4),
                "sample_rate": verdict.sample_rate,
                "channels": verdict.channels,
                "caption": caption,
                "attributes": attributes,
                "split": split_of(relative, valid_fraction, test_fraction),
            }
        )
    write_manifest(out, entries)
    return report
