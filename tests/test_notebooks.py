"""Every notebook runs top to bottom, and is committed without outputs."""

import json
import os
import sys
import types
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    # IPython's display is the only notebook-only name the notebooks use; stand it
    # in so they run under plain Python.
    shown = []
    display_mod = types.ModuleType("IPython.display")
    display_mod.Audio = lambda data, rate: ("audio", getattr(data, "shape", None), rate)
    display_mod.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display_mod)
    monkeypatch.chdir(tmp_path)
    exec(compile(_code(path), str(path), "exec"), {"__name__": "__main__"})
    assert os.listdir(tmp_path), "the notebook should write its outputs under runs/"
