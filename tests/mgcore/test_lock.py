"""One trainer per workdir: the lock refuses a second holder, names the first, and is
never stale: the kernel drops it with its process, SIGKILL included."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mgcore.lock import WorkdirBusyError, WorkdirLock

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_holder_is_refused_and_the_lock_is_released_after(tmp_path):
    with WorkdirLock(tmp_path / "w"):
        with pytest.raises(
            WorkdirBusyError, match=f"in use by another musicgen train \\(process {os.getpid()} on "
        ):
            WorkdirLock(tmp_path / "w").__enter__()
    with WorkdirLock(tmp_path / "w"):  # released on exit
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = (
        "import sys, time; from mgcore.lock import WorkdirLock\n"
        f"lock = WorkdirLock({str(tmp_path / 'w')!r}).__enter__()\n"
        "print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError, match=f"process {child.pid} on "):
            WorkdirLock(tmp_path / "w").__enter__()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with WorkdirLock(tmp_path / "w") as lock:  # the dead holder's lock is gone
        assert str(os.getpid()) in lock.path.read_text()
