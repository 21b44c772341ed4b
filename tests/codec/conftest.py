"""Shared by the codec tests: the debug slice of the embedded dataset."""

import pytest


@pytest.fixture(scope="session")
def manifest(embedded_manifest) -> str:
    """`experiments/codec_tiny.py:debug`'s data: the session's embedded debug slice."""
    return embedded_manifest
