"""Shared test set-up: NNX tree mode, the `gpu` marker's skip, and a seeded RNG."""

import os
import zlib

import jax
import numpy as np
import pytest

try:  # stay ready for Flax's tree mode where the installed Flax has the switch
    import flax

    flax.config.update("nnx_graph_mode", False)
except (ImportError, AttributeError, KeyError):
    pass


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One persistent XLA cache for the whole run (subprocesses too, through the
    environment): a model compiled once is not compiled again by a later test, a resumed
    run or a launcher in a subprocess. A fresh folder each run, so no test depends on
    what an earlier run left behind."""
    folder = str(tmp_path_factory.mktemp("xla_cache"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder


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
