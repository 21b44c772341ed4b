"""`musicgen train`: one launcher for every family, resolved config in the workdir, resume.

The family here is the runtime's regression fixture (tests/fixtures/regression.py),
named by module path the way a research fork names its own; the codec, LM and refiner
run their `debug` experiments through the same launcher in their own tests.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgcore.config import load_saved_config
from mgcore.lock import WorkdirLock
from mgcore.metrics import read_metrics
from mgcore.trainer import EXIT_PREEMPTED
from musicgen import cli, train

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "tests/fixtures/experiments/regression.py"


def _steps(workdir) -> list[int]:
    return [r["step"] for r in read_metrics(workdir)]


def _checkpoints(workdir) -> list[int]:
    return sorted(
        int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit()
    )


def test_debug_experiment_trains_writes_config_metrics_checkpoints_then_resumes(tmp_path, capsys):
    work = tmp_path / "w"
    args = ["train", "--config", f"{EXPERIMENT}:debug", "--workdir", str(work), "--no-progress"]
    assert cli.main(args) == 0
    assert "step 12: loss" in capsys.readouterr().out
    config = load_saved_config(work / "config.json")
    assert config.train.steps == 12 and config.family == "tests.fixtures.regression"
    assert _steps(work) == list(range(1, 13)) and _checkpoints(work) == [4, 8, 12]
    first = read_metrics(work)

    # Same command with more steps: resumes at 12 instead of starting over.
    assert cli.main([*args, "--set", "train.steps=20"]) == 0
    assert _steps(work) == list(range(1, 21))
    assert read_metrics(work)[:12] == first
    assert load_saved_config(work / "config.json").train.steps == 20
    assert "resumed from step 12 of 20" in capsys.readouterr().out
    # No --config: the saved one is used; nothing left to do at step 20, and it says so.
    assert cli.main(["train", "--workdir", str(work), "--no-progress"]) == 0
    assert _steps(work) == list(range(1, 21)) and _checkpoints(work)[-1] == 20
    assert "has finished its 20 steps; nothing to train" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.stepz=3"], "train.stepz"),
        (["--set", "train.steps=1.5"], "train.steps"),
        (["--set", "train.steps=0"], "TrainConfig.steps must be in [1, 2**31), got 0"),
        (["--set", "train.steps=-5"], "TrainConfig.steps must be in [1, 2**31), got -5"),
        # 1e20 steps would run until killed (the step counter is int32): refused at once
        (["--set", "train.steps=99999999999999999999"], "TrainConfig.steps must be in [1, 2**31)"),
        (
            ["--set", "optimizer.learning_rate=-1e-3"],
            "OptimizerConfig.learning_rate must be in (0, 1000], got -0.001",
        ),
        (
            ["--set", "optimizer.learning_rate=nan"],
            "'optimizer.learning_rate' wants a finite number",
        ),
        (["--set", "mesh.data=1000"], "needs 1000 devices, but there are"),
        (["--config", "experiments/nope.py"], "nope.py"),
        (["--config", f"{EXPERIMENT}:bogus"], "bogus"),
    ],
)
def test_bad_config_is_one_line_exit_1(tmp_path, capsys, extra, message):
    args = ["train", "--workdir", str(tmp_path / "w"), "--no-progress"]
    if "--config" not in extra:
        args += ["--config", EXPERIMENT]
    assert cli.main(args + extra) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("musicgen: error:") and message in err


def test_a_second_trainer_on_the_workdir_is_refused_in_one_line(tmp_path, capsys):
    work = tmp_path / "w"
    args = ["train", "--config", f"{EXPERIMENT}:debug", "--workdir", str(work), "--no-progress"]
    with WorkdirLock(work):  # another trainer holds it
        assert cli.main(args) == 1
        err = capsys.readouterr().err
        assert (
            err.count("\n") == 1
            and f"in use by another musicgen train (process {os.getpid()}" in err
        )
        assert not (work / "metrics.jsonl").exists()
    assert cli.main(args) == 0  # released: the next run takes it


def test_a_workdir_that_cannot_be_written_is_one_line_exit_1(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = cli.main(["train", "--config", EXPERIMENT, "--workdir", str(blocker / "w"),
                     "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert f"can't write {blocker / 'w'}" in err and "make the folder writable" in err


def test_a_full_disk_stops_the_run_in_one_line_exit_1(tmp_path, capsys, monkeypatch):
    from orbax.checkpoint._src.path import atomicity

    create = atomicity._create_tmp_directory

    async def full_disk(*args, **kwargs):  # from the second checkpoint on
        if "/checkpoints/10." not in str(args[1]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return await create(*args, **kwargs)

    monkeypatch.setattr(atomicity, "_create_tmp_directory", full_disk)
    code = cli.main(["train", "--config", EXPERIMENT, "--workdir", str(tmp_path / "w"),
                     "--no-progress", "--set", "train.save_every=10"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "No space left on device (step 10 is the newest intact one)" in err
    assert _checkpoints(tmp_path / "w") == [10]


def test_workdir_refuses_another_model_and_needs_a_config(tmp_path, capsys):
    work = tmp_path / "w"
    assert cli.main(["train", "--workdir", str(work), "--no-progress"]) == 1
    assert "holds no config.json" in capsys.readouterr().err
    base = ["train", "--config", f"{EXPERIMENT}:debug", "--workdir", str(work), "--no-progress"]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main([*base, "--set", "model.hidden=16"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.hidden: 32 -> 16" in err


def test_unknown_family_is_a_config_error(tmp_path):
    config = train.resolve_config(EXPERIMENT, tmp_path, ["family=no.such.module"])
    with pytest.raises(train.ConfigError, match="neither registered"):
        train.make_family(config)


def _launch(work, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "musicgen.cli", "train", "--config", EXPERIMENT,
           "--workdir", str(work), "--no-progress", "--set", "train.steps=400", *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def test_sigterm_through_the_cli_saves_and_a_rerun_continues_the_same_losses(tmp_path):
    # The uninterrupted run, in this process (the same program: no interpreter to start).
    reference = ["train", "--config", EXPERIMENT, "--workdir", str(tmp_path / "ref"),
                 "--no-progress", "--set", "train.steps=400"]  # fmt: skip
    assert cli.main(reference) == 0
    run = _launch(tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 30):
        assert run.poll() is None and time.time() < deadline, run.stderr.read()[-3000:]
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    # Preempted and resumable: its own exit status, and one line that says so.
    assert run.wait(timeout=120) == EXIT_PREEMPTED == 75, run.stderr.read()[-3000:]
    assert "stopped by SIGTERM at step" in run.stderr.read().splitlines()[-1]
    stopped = _checkpoints(tmp_path / "run")[-1]
    assert 30 <= stopped < 400  # a checkpoint at the step where it stopped
    rerun = _launch(tmp_path / "run")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()[-3000:]
    want = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "ref")}
    got = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "run")}
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 401))
    assert all(got[s] == pytest.approx(want[s], rel=1e-6) for s in want)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["train"]["steps"] == 400
