"""Shared test set-up: NNX tree mode, the `gpu` marker's skip, and a seeded RNG."""

import os
import zlib

# The tests' models are tiny: their time goes to compiling, not running. LLVM's
# optimisation level 0 trained the debug codec experiment in 50 s instead of 73 s here (its
# losses the same to the printed digit; fresh caches). Set before JAX starts its CPU backend;
# subprocesses and notebook kernels inherit it.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property-based checks of input validation: few examples, derandomised, so a CI run is
# repeatable and stays within the suite's time; HYPOTHESIS_PROFILE=thorough searches more.
settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:  # stay ready for Flax's tree mode where the installed Flax has the switch
    import flax

    flax.config.update("nnx_graph_mode", False)
except (ImportError, AttributeError, KeyError):
    pass


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One persistent XLA cache for the whole run (subprocesses and notebook kernels too,
    through the environment, and every pytest-xdist worker): a model compiled once is not
    compiled again by a later test, a resumed run or a launcher in a subprocess. A fresh
    folder each run, so no test depends on what an earlier run left behind."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base folders share a parent
        root = root.parent
    folder = root / "xla_cache"
    folder.mkdir(exist_ok=True)
    folder = str(folder)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder


@pytest.fixture(scope="session")
def embedded_manifest(tmp_path_factory) -> str:
    """0.02 h of the embedded dataset (6 clips, 2 per split; what every `:debug` recipe
    trains on), rendered once a session for every package's tests."""
    from musicgen.synth.build import synth_dataset

    out = tmp_path_factory.mktemp("embedded_debug")
    synth_dataset(out, 0.02, seed=0, workers=1, progress=False)  # no process start-up
    return str(out / "manifest.jsonl")


def _has_accelerator() -> bool:
    return any(d.platform in ("gpu", "tpu") for d in jax.devices())


# Tests of tens of seconds each (a notebook in a kernel, a training run, a benchmark in a
# subprocess) are handed out first, so that the workers do not end on them one after
# the other (longest first; the order within a file is kept).
HEAVY_FIRST = (
    "tests/musicgen/test_app_browser.py",
    "tests/test_notebooks.py::test_notebook_runs",
    "tests/codec/test_family.py",
    "tests/musicgen/test_train.py",
    "tests/musicgen/lm/test_sharding.py",
    "tests/test_bench.py",
)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(HEAVY_FIRST))
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
