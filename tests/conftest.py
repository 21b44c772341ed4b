"""Shared test set-up: NNX tree mode, the `gpu` marker's skip, and a seeded RNG."""

import zlib

import jax
import numpy as np
import pytest

try:  # stay ready for Flax's tree mode where the installed Flax has the switch
    import flax

    flax.config.update("nnx_graph_mode", False)
except (ImportError, AttributeError, KeyError):
    pass


def _has_accelerator() -> bool:
    return any(d.platform in ("gpu", "tpu") for d in jax.devices())


def pytest_collection_modifyitems(config, items):
    if _has_accelerator():
        return
    skip = pytest.mark.skip(reason="needs a GPU or TPU; JAX sees only the CPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: fresh inputs per test, reproducible runs."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
