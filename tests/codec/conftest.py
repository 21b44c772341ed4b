"""Shared by the codec tests: the debug slice of the embedded dataset, rendered once."""

import pytest

from mgcore.config import load_experiment


@pytest.fixture(scope="session")
def manifest(tmp_path_factory) -> str:
    """Renders `experiments/codec_tiny.py:debug`'s data through the launcher's helper."""
    from musicgen.train import ensure_embedded_data

    path = tmp_path_factory.mktemp("codec_data") / "manifest.jsonl"
    config = load_experiment("experiments/codec_tiny.py:debug", [f"data.manifest={path}"])
    ensure_embedded_data(config)
    return str(path)
