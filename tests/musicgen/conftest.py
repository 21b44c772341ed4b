"""Shared by the musicgen tests: the embedded dataset's smallest slice, rendered once."""

import pytest


@pytest.fixture(scope="session")
def embedded_manifest(tmp_path_factory) -> str:
    """0.02 h of the embedded dataset (6 clips, 2 per split), rendered once a session."""
    from musicgen.synth.build import synth_dataset

    out = tmp_path_factory.mktemp("embedded_debug")
    synth_dataset(out, 0.02, seed=0, workers=1, progress=False)  # no process start-up
    return str(out / "manifest.jsonl")


@pytest.fixture(scope="session")
def lm_debug(tmp_path_factory, embedded_manifest):
    """`experiments/lm_tiny.py:debug` trained once a session: (workdir, token cache, argv).
    Tests that train it further must only add steps."""
    from musicgen import cli

    root = tmp_path_factory.mktemp("lm_debug")
    work, tokens = root / "w", root / "tokens"
    args = ["train", "--config", "experiments/lm_tiny.py:debug", "--workdir", str(work),
            "--no-progress", "--set", f"data.manifest={embedded_manifest}",
            "--set", f"data.tokens={tokens}"]  # fmt: skip
    assert cli.main(args) == 0
    return work, tokens, args


@pytest.fixture(scope="session")
def judge_debug(tmp_path_factory, embedded_manifest):
    """`experiments/judge_tiny.py:debug` trained once a session: (workdir, argv)."""
    from musicgen import cli

    work = tmp_path_factory.mktemp("judge_debug") / "w"
    args = ["train", "--config", "experiments/judge_tiny.py:debug", "--workdir", str(work),
            "--no-progress", "--set", f"data.manifest={embedded_manifest}",
            "--set", "train.wandb=disabled"]  # fmt: skip
    assert cli.main(args) == 0
    return work, args
