"""One trainer per workdir: an exclusive lock that a second process is refused by.

`WorkdirLock` holds `workdir/.lock` with an exclusive `flock` for the life of a run. The
kernel releases it when the holding process exits, however it exits (SIGKILL too), so
the lock of a dead process is never stale: the next run takes it over. The file's text
(process id, host, start time) only names the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".lock"


class WorkdirError(RuntimeError):
    """A workdir that cannot be trained in: busy, unwritable or full (one line)."""


class WorkdirBusyError(WorkdirError):
    """Another process trains in this workdir; the message names it."""


def unwritable(path: str | os.PathLike, err: OSError) -> WorkdirError:
    """The one-line error for a write into the workdir that failed."""
    return WorkdirError(
        f"can't write {path}: {err.strerror or err}; free disk space or make the folder "
        "writable, then run again"
    )


class WorkdirLock:
    """`with WorkdirLock(workdir): ...` trains alone in `workdir` (created if missing).

    Raises:
      WorkdirBusyError: another process holds the lock.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise unwritable(self.path, err) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise WorkdirBusyError(
                f"{self.path.parent} is in use by another musicgen train ({holder}); wait for "
                "it to finish or stop it, or train in another --workdir"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock; the file stays, naming the last holder
            self._fd = None


def _describe(text: bytes) -> str:
    try:
        holder = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
        return f"process {holder['pid']} on {holder['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"
