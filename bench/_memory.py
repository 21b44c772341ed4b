"""Peak memory of a benchmark's workload, measured in a fresh child process.

Linux carries the parent's peak RSS over fork and exec into the child's `ru_maxrss`, so
`run_child` must be called while the parent is still small (before torch and JAX are
imported); the child also reports `VmHWM`, the peak of its own address space only.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:")."""
    line = next(
        s for s in Path("/proc/self/status").read_text().splitlines() if s.startswith(field)
    )
    return int(line.split()[1])


def peak() -> dict[str, float]:
    """This process's peak memory so far: `peak_mib` (ru_maxrss) and `hwm_mib` (VmHWM)."""
    return {
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "hwm_mib": status_kib("VmHWM:") / 1024,
    }


def run_child(script: str, *args: str) -> dict:
    """Runs `python script *args` and returns the JSON object its last line printed."""
    out = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
