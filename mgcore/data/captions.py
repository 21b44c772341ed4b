"""The captions file of `musicgen data prepare`: which audio files, and what each one is.

CSV with a header naming a path column (`path`, `file`, `filename` or `audio`) and
optionally a caption column (`caption`, `description` or `text`), or JSONL with an object
a line holding the same keys; an audiocraft manifest (`path`, `duration`, `sample_rate`)
is JSONL without captions. Everything wrong with the file is a `CaptionsError` in one line
that names the file, the line and what is wrong, found before any audio is scanned.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

from mgcore.data.manifest import ManifestError, json_type

PATH_KEYS = ("path", "file", "filename", "audio")
CAPTION_KEYS = ("caption", "description", "text")


class CaptionsError(ManifestError):
    """A captions file that cannot be used: `path:line: what is wrong`, one line."""


def first_of(row: dict, keys: tuple[str, ...]):
    """The value of the first of `keys` that `row` holds and is neither null nor ""."""
    for k in keys:
        if row.get(k) not in (None, ""):
            return row[k]
    return None


def read_captions(path: str | os.PathLike) -> dict[str, str | None]:
    """Reads a CSV (`.csv`) or JSONL (any other name) captions file.

    Returns:
        {audio path as written: caption, or None where the file gives none}, in file order.

    Raises:
        CaptionsError: the file is missing, a directory, unreadable, empty, not UTF-8, not
            CSV/JSONL, lacks a path column or value, has a caption that is not a string, or
            lists one audio file twice.
    """
    path = Path(path)
    text = _read_text(path)
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    captions: dict[str, str | None] = {}
    first_line: dict[str, int] = {}
    for number, row in rows:
        audio = first_of(row, PATH_KEYS)
        if audio is None:
            raise CaptionsError(f"{path}:{number}: no audio path (a key {_or(PATH_KEYS)})")
        if not isinstance(audio, str) or "\0" in audio:
            raise CaptionsError(f"{path}:{number}: the path must be a string, got {audio!r:.80}")
        caption = first_of(row, CAPTION_KEYS)
        if caption is not None and not isinstance(caption, str):
            raise CaptionsError(
                f"{path}:{number}: the caption must be a string, got {json_type(caption)} "
                f"{caption!r:.60}"
            )
        key = os.path.normpath(audio)
        if key in first_line:
            raise CaptionsError(
                f"{path}:{number}: {audio!r:.80} is listed twice (first on line "
                f"{first_line[key]}); give each file one caption"
            )
        first_line[key] = number
        captions[audio] = caption
    if not captions:
        raise CaptionsError(f"{path}: no entries (every line is blank)")
    return captions


def _read_text(path: Path) -> str:
    try:
        if not path.exists():
            raise CaptionsError(f"{path}: captions file not found")
        if path.is_dir():
            raise CaptionsError(f"{path}: is a directory; --captions takes a CSV or JSONL file")
        if not stat.S_ISREG(path.stat().st_mode):
            raise CaptionsError(f"{path}: not a regular file (a pipe, socket or device)")
        data = path.read_bytes()
    except PermissionError:
        raise CaptionsError(f"{path}: permission denied (cannot read the captions file)") from None
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise CaptionsError(f"{path}: cannot read the captions file ({reason})") from None
    if not data.strip():
        raise CaptionsError(f"{path}: the captions file is empty")
    try:
        return data.decode("utf-8-sig")  # a spreadsheet's CSV may start with a BOM
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CaptionsError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, header, start = [], None, 1
    try:
        for fields in reader:
            number, start = start, reader.line_num + 1  # a quoted field may span lines
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                if not any(k in header for k in PATH_KEYS):
                    found = ", ".join(repr(f) for f in fields[:12])
                    more = f" and {len(fields) - 12} more" if len(fields) > 12 else ""
                    raise CaptionsError(
                        f"{path}: no path column: the header names {found}{more}; a "
                        f"captions CSV needs a path column ({_or(PATH_KEYS)}) and may "
                        f"have a caption column ({_or(CAPTION_KEYS)})"
                    )
                continue
            if len(fields) > len(header):
                raise CaptionsError(
                    f"{path}:{number}: {len(fields)} fields but the header names "
                    f"{len(header)} columns; quote a caption that holds a comma"
                )
            rows.append((number, dict(zip(header, fields, strict=False))))
    except csv.Error as err:
        raise CaptionsError(f"{path}:{reader.line_num}: not valid CSV ({err})") from None
    if header is not None and not rows:
        raise CaptionsError(f"{path}: a header and no rows")
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:  # bad JSON, or an integer of more digits than Python converts
            hint = ""
            if number == 1 and "," in line and not line.lstrip().startswith("{"):
                hint = "; a CSV captions file must be named .csv"
            raise CaptionsError(
                f"{path}:{number}: not valid JSON ({getattr(err, 'msg', err)}){hint}"
            ) from None
        except RecursionError:
            raise CaptionsError(f"{path}:{number}: not valid JSON (nested too deeply)") from None
        if not isinstance(row, dict):
            raise CaptionsError(
                f"{path}:{number}: expected a JSON object with a path, got {json_type(row)}"
            )
        rows.append((number, row))
    return rows


def _or(keys: tuple[str, ...]) -> str:
    return f"{', '.join(keys[:-1])} or {keys[-1]}"
