"""Which files of a dataset can be trained on, and why the others cannot.

`check_file` decodes a file in windows (so an hour-long file is never held in
memory whole) through `load_audio`, which raises the typed `AudioFileError` for
missing, empty, unreadable, corrupt, truncated, NaN/inf-holding and unsupported files
and for sample rates outside 4-384 kHz; on
top it flags silent and too-short files. `check_manifest` runs it over a
manifest with a progress bar and gathers a `CheckReport`: usable files, unusable
ones by reason, total hours, sample rates and channel counts.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mgcore.audio import AudioFileError, audio_info, load_audio
from mgcore.data.manifest import iter_manifest

# A file whose peak stays below -80 dBFS holds no usable signal.
SILENCE_PEAK = 10.0 ** (-80.0 / 20.0)
DEFAULT_MIN_SECONDS = 1.0
_WINDOW_SECONDS = 30.0

# What each reason code means, for reports.
REASONS = {
    "missing": "file not found",
    "directory": "a directory, not a file",
    "empty": "empty file (0 bytes)",
    "permission": "permission denied (cannot read)",
    "unreadable": "cannot be read (an I/O error)",
    "not_audio": "not a readable audio file (corrupt or not audio)",
    "unsupported": "audio format libsndfile cannot decode",
    "sample_rate": "sample rate outside 4-384 kHz (a corrupt header)",
    "truncated": "truncated (the header promises more than the file holds)",
    "no_samples": "zero length",
    "non_finite": "NaN or infinite samples",
    "out_of_range": "requested window outside the file",
    "silent": "silent (peak below -80 dBFS)",
    "too_short": "shorter than the minimum duration",
    "sidecar": "caption sidecar (.txt/.json) unreadable or malformed",
}


@dataclasses.dataclass(frozen=True)
class FileCheck:
    """The verdict on one file: `kind` is "ok" or a key of `REASONS`."""

    path: str
    kind: str
    reason: str = ""
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def check_file(path: str | os.PathLike, min_seconds: float = DEFAULT_MIN_SECONDS) -> FileCheck:
    """Decodes `path` fully, window by window, and says whether it is usable."""
    path = str(path)
    try:
        info = audio_info(path)
        peak, offset = 0.0, 0.0
        while offset < info.duration:
            x, _ = load_audio(path, offset=offset, duration=_WINDOW_SECONDS)
            peak = max(peak, float(np.abs(x).max()))
            offset += _WINDOW_SECONDS
    except AudioFileError as err:
        return FileCheck(path, err.kind, err.reason)
    found = dict(duration=info.duration, sample_rate=info.sample_rate, channels=info.channels)
    if info.duration < min_seconds:
        reason = f"{info.duration:.2f} s is shorter than the minimum {min_seconds:g} s"
        return FileCheck(path, "too_short", reason, **found)
    if peak < SILENCE_PEAK:
        return FileCheck(path, "silent", f"peak {peak:.1e} is below -80 dBFS", **found)
    return FileCheck(path, "ok", **found)


@dataclasses.dataclass
class CheckReport:
    """Counts over a set of checked files."""

    usable: int = 0
    unusable: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0
    sample_rates: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    channels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=dict)  # reason -> first file

    def add(self, check: FileCheck) -> None:
        if check.ok:
            self.usable += 1
            self.seconds += check.duration
            self.sample_rates[check.sample_rate] += 1
            self.channels[check.channels] += 1
        else:
            self.unusable[check.kind] += 1
            self.examples.setdefault(check.kind, f"{check.path}: {check.reason}")

    @property
    def total(self) -> int:
        return self.usable + sum(self.unusable.values())

    def to_json(self) -> dict:
        return {
            "files": self.total,
            "usable": self.usable,
            "unusable": dict(sorted(self.unusable.items())),
            "hours": round(self.seconds / 3600.0, 4),
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "channels": {str(k): v for k, v in sorted(self.channels.items())},
            "examples": dict(sorted(self.examples.items())),
        }

    def format_table(self) -> str:
        rows = [("files", str(self.total)), ("usable", str(self.usable))]
        for kind, n in sorted(self.unusable.items()):
            rows.append((f"unusable: {REASONS.get(kind, kind)}", str(n)))
        rows.append(("total hours (usable)", f"{self.seconds / 3600.0:.3f}"))
        rates = ", ".join(f"{k} Hz x{v}" for k, v in sorted(self.sample_rates.items()))
        chans = ", ".join(f"{k} ch x{v}" for k, v in sorted(self.channels.items()))
        rows += [("sample rates", rates or "-"), ("channels", chans or "-")]
        width = max(len(r[0]) for r in rows)
        lines = [f"{label:<{width}}  {value}" for label, value in rows]
        lines += [f"  e.g. {example}" for example in self.examples.values()]
        return "\n".join(lines)


def check_files(
    paths: Sequence[str | os.PathLike],
    *,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    workers: int = 2,
    progress: bool = True,
    desc: str = "checking",
) -> Iterator[FileCheck]:
    """`check_file` over many files, `workers` processes in parallel, in input order."""
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    with tqdm(total=len(paths), desc=desc, disable=not progress) as bar:
        if workers <= 1:
            for path in paths:
                yield check_file(path, min_seconds)
                bar.update()
            return
        # spawn, not fork: forking a process that runs JAX's threads can deadlock.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            for check in pool.map(check_file, paths, [min_seconds] * len(paths), chunksize=8):
                yield check
                bar.update()


def check_manifest(
    manifest: str | os.PathLike,
    *,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    workers: int = 2,
    progress: bool = True,
) -> CheckReport:
    """Checks every file a manifest names, `workers` processes in parallel."""
    paths = [e["path"] for e in iter_manifest(manifest)]
    report = CheckReport()
    desc = f"checking {Path(manifest).name}"
    for check in check_files(paths, min_seconds=min_seconds, workers=workers, progress=progress,
                             desc=desc):  # fmt: skip
        report.add(check)
    return report


def report_json(report: CheckReport) -> str:
    return json.dumps(report.to_json(), indent=2)
