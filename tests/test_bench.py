"""Every benchmark still runs and ends with its ratio (tiny sizes; speed is not judged here)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"
CASES = {
    "attention.py": ["--quick"],
    "codec.py": ["--quick"],
    "dsp_vs_librosa.py": ["--batch", "1", "--seconds", "1", "--repeats", "1"],
    "end_to_end.py": ["--seconds", "1", "--repeats", "1", "--refine-steps", "2"],
    "finetune.py": ["--shape", "tiny", "--seconds", "0.2", "--batch", "1", "--steps", "1"],
    "lm_sampling.py": ["--quick"],
    "lm_step_profile.py": [
        "--shape",
        "tiny",
        "--frames",
        "8",
        "--weights",
        "int8",
        "--repeats",
        "1",
    ],
    "lm_train.py": ["--quick"],
    "pipeline_throughput.py": ["--clips", "8"],
    "refiner.py": ["--quick"],
    "render_speed.py": ["--hours", "0.005", "--workers", "1"],
}
# Smoke runs of 12-110 s each (PyTorch peers included): with `-m slow` only. (The
# attention implementations themselves are checked in tests/musicgen/lm/test_attention.py,
# the reference pipeline's generation by notebook 01 and tests/musicgen/test_pipeline.py.)
SLOW = {"attention.py", "codec.py", "end_to_end.py", "finetune.py", "lm_sampling.py",
        "lm_step_profile.py", "lm_train.py", "refiner.py"}  # fmt: skip


def test_every_benchmark_has_a_smoke_case():
    scripts = [p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")]  # _: helpers
    assert sorted(scripts) == sorted(CASES)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CASES)]
)
def test_benchmark_prints_a_ratio_last(name):
    out = subprocess.run(
        [sys.executable, str(BENCH / name), *CASES[name]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    ratio = re.search(r"([0-9.]+)x?$", last)
    assert ratio and float(ratio.group(1)) > 0, last
