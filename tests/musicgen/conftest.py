"""Shared by the musicgen tests: the embedded dataset's smallest slice, rendered once."""

import pytest


@pytest.fixture(scope="session")
def embedded_manifest(tmp_path_factory) -> str:
    """0.02 h of the embedded dataset (6 clips, 2 per split), rendered once a session."""
    from musicgen.synth.build import synth_dataset

    out = tmp_path_factory.mktemp("embedded_debug")
    synth_dataset(out, 0.02, seed=0, workers=1, progress=False)  # no process start-up
    return str(out / "manifest.jsonl")
