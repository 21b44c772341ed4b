"""A manifest from a folder of the user's own audio.

Captions come, in order of precedence, from a captions file (`--captions`, read by
`mgcore.data.captions`): CSV with a path column (`path`, `file`, `filename` or `audio`)
and a caption column (`caption`, `description` or `text`), or JSONL with the same keys;
from a sidecar `.txt` next to the audio; or from an audiocraft-style sidecar `.json`
(`description` plus optional `genre`, `bpm`, `key`, `moods`, `instrument`...). An
audiocraft JSONL manifest (`path`, `duration`, `sample_rate` a line) passed as the
captions file works too: its paths select the files and their sidecars give the
captions. Attributes unknown for a user's audio are null. A sidecar that exists but
cannot be read (not UTF-8, bad JSON, a description that is not text) makes its clip
unusable, counted under its reason like a broken audio file, rather than silently
losing the caption.

Splits are assigned by a hash of the file's relative path, so they are stable
when files are added and never depend on the order of a directory listing.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from mgcore.audio import UNSUPPORTED_AUDIO_EXTENSIONS
from mgcore.data.captions import CAPTION_KEYS, CaptionsError, first_of, read_captions
from mgcore.data.check import DEFAULT_MIN_SECONDS, CheckReport, FileCheck, check_files
from mgcore.data.manifest import (
    REQUIRED_ATTRIBUTES,
    ManifestError,
    check_writable,
    json_type,
    write_manifest,
)

__all__ = ["PrepareError", "prepare_manifest", "read_captions", "split_of"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus", ".w64", ".rf64")


class PrepareError(ManifestError):
    """An audio folder that `data prepare` cannot list, or an output that would replace the
    captions file or an audio file, in one line."""


class _SidecarError(Exception):
    """A sidecar that exists and cannot be used: the clip is counted unusable with `reason`."""


def _sidecar(audio: Path) -> tuple[str | None, dict]:
    """Caption and attributes from `<name>.txt` or an audiocraft `<name>.json`."""
    txt, meta = audio.with_suffix(".txt"), audio.with_suffix(".json")
    attributes: dict = {}
    caption = None
    if meta.is_file():
        try:
            info = json.loads(_read_sidecar(meta))
        except (ValueError, RecursionError):
            raise _SidecarError(f"{meta.name} is not valid JSON") from None
        if not isinstance(info, dict):
            raise _SidecarError(f"{meta.name} holds {json_type(info)}, not a JSON object")
        caption = first_of(info, CAPTION_KEYS)
        if caption is not None and not isinstance(caption, str):
            raise _SidecarError(f"{meta.name}: the description must be a string")
        attributes = {
            "genre": info.get("genre"),
            "bpm": info.get("bpm"),
            "key": info.get("key"),
            "mode": info.get("mode"),
            "instruments": info.get("instrument") or info.get("instruments"),
            "mood": info.get("moods") or info.get("mood"),
        }
    if caption is None and txt.is_file():
        caption = _read_sidecar(txt).strip() or None
    return caption, attributes


def _read_sidecar(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _SidecarError(f"{path.name} is not UTF-8 text") from None
    except PermissionError:
        raise _SidecarError(f"{path.name}: permission denied") from None
    except OSError as err:
        raise _SidecarError(f"{path.name} cannot be read ({err.strerror})") from None


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
        The check report over all audio files found (usable and not), and over sub-folders
        that could not be listed.

    Raises:
        FileNotFoundError, NotADirectoryError: `audio_dir` is missing or not a folder.
        CaptionsError: the captions file cannot be used (see `read_captions`).
        ManifestError: `out` cannot be written (a directory, an unwritable folder).
        These are all raised before any audio file is opened.
    """
    root, out = Path(audio_dir).resolve(), Path(out).resolve()
    try:
        if not root.exists():
            raise FileNotFoundError(f"{root}: not a folder: it does not exist")
        if not root.is_dir():
            raise NotADirectoryError(f"{root}: not a folder: it is a file; --audio-dir takes one")
    except PermissionError:
        raise PrepareError(f"{root}: cannot reach the audio folder (permission denied)") from None
    if out.suffix.lower() in AUDIO_EXTENSIONS + UNSUPPORTED_AUDIO_EXTENSIONS:
        raise PrepareError(f"{out}: --out names an audio file; name the manifest .jsonl")
    report = CheckReport()
    if captions:  # every problem with the inputs and the output is found before the scan
        if Path(captions).resolve() == out:
            raise PrepareError(
                f"{out}: --out names the captions file; the manifest would replace it"
            )
        given = read_captions(captions)
        files = [(root / p if not Path(p).is_absolute() else Path(p)) for p in given]
        by_file: dict[Path, str | None] = {}
        for file, written in zip(files, given, strict=True):
            if file.resolve() in by_file:
                raise CaptionsError(
                    f"{captions}: {written!r} names the same file as an earlier line; "
                    "give each file one caption"
                )
            by_file[file.resolve()] = given[written]
    check_writable(out)
    if not captions:
        files, skipped = _scan(root)
        by_file = {}
        for folder in skipped:
            report.add(folder)
    entries = []
    verdicts = check_files(files, min_seconds=min_seconds, workers=workers, progress=progress,
                           desc=f"scanning {root.name}")  # fmt: skip
    for path, verdict in zip(files, verdicts, strict=True):
        if verdict.ok:
            try:
                caption, attributes = _sidecar(path)
            except _SidecarError as err:
                verdict = FileCheck(str(path), "sidecar", str(err))
        report.add(verdict)
        if not verdict.ok:
            continue
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


def _scan(root: Path) -> tuple[list[Path], list[FileCheck]]:
    """The audio files under `root`, sorted (links to folders are not followed, as
    `Path.rglob` does not), and a verdict for each sub-folder that could not be listed.

    Raises:
        PrepareError: `root` itself cannot be listed.
    """
    suffixes = AUDIO_EXTENSIONS + UNSUPPORTED_AUDIO_EXTENSIONS
    files, skipped = [], []

    def unlisted(err: OSError) -> None:
        if Path(err.filename) == root:
            raise PrepareError(f"{root}: cannot list the audio folder ({_reason(err)})")
        kind = "permission" if isinstance(err, PermissionError) else "unreadable"
        reason = f"folder not listed ({_reason(err)}); the files in it were not scanned"
        skipped.append(FileCheck(str(err.filename), kind, reason))

    for folder, dirs, names in os.walk(root, onerror=unlisted):
        for name in names + dirs:  # a folder named x.wav is reported, as rglob listed it
            if os.path.splitext(name)[1].lower() in suffixes:
                files.append(Path(folder, name))
    return sorted(files), skipped


def _reason(err: OSError) -> str:
    return "permission denied" if isinstance(err, PermissionError) else str(err.strerror)
