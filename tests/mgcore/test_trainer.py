"""The trainer on a tiny regression family: it learns, resumes exactly, skips NaN updates."""

import dataclasses
import errno
import os
import threading
import time

import numpy as np
import pytest

from mgcore.checkpoint import Checkpointer, CheckpointError
from mgcore.metrics import read_metrics
from mgcore.sharding import MeshConfig, make_mesh
from mgcore.trainer import NonFiniteError, Preempted, TrainConfig, init_state, train
from tests.fixtures.regression import OPTIMIZER, TRAIN, RegressionConfig, RegressionFamily


def _Family(**kwargs):
    return RegressionFamily(**kwargs)


OPT, TRAIN = OPTIMIZER, TRAIN


def _restore(workdir, family):
    """The last checkpoint's state, restored through the trainer's own plan."""
    plan = init_state(family, OPT, TRAIN, make_mesh(MeshConfig()))
    with Checkpointer(workdir / "checkpoints", save_every=1) as ckpt:
        return ckpt.restore(abstract_state=plan.abstract)[0]


def _expected_input_mean(family, steps, skip=()):
    """The running mean of the batches' inputs, computed in NumPy."""
    data, mean = family.data(), np.zeros(4, np.float32)
    for i in range(1, steps + 1):
        x = next(data)["x"]
        if i not in skip:
            mean = 0.9 * mean + 0.1 * x.mean(0)
    return mean


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(workdir)}


def test_it_learns_and_writes_metrics_and_checkpoints(tmp_path):
    last = train(_Family(), OPT, TRAIN, tmp_path, progress=False)
    losses = _losses(tmp_path)
    assert sorted(losses) == list(range(1, 41))
    assert last["step"] == 40 and losses[40] < 0.5 * losses[1]
    assert (
        sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1]
        == 40
    )


def test_sigterm_then_restart_reproduces_the_uninterrupted_losses(tmp_path):
    reference = train(_Family(), OPT, TRAIN, tmp_path / "ref", progress=False)
    assert reference["step"] == 40
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 17") as stopped:
        train(_Family(signal_at=17), OPT, TRAIN, tmp_path / "run", progress=False)
    assert stopped.value.step == 17 and stopped.value.signal_name == "SIGTERM"
    train(_Family(), OPT, TRAIN, tmp_path / "run", progress=False)
    want, got = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    # Each step once: the rows after the checkpoint a run resumes from are dropped.
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 41))
    for step in range(1, 41):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


def test_nan_updates_are_skipped_counted_and_stop_the_run(tmp_path):
    last = train(_Family(poison=(5, 6)), OPT, TRAIN, tmp_path / "a", progress=False)
    assert last["nonfinite_total"] == 2 and last["nonfinite_consecutive"] == 0
    # Skipped steps leave the non-Param state as it was: no NaN leaks into it.
    state = _restore(tmp_path / "a", _Family())
    np.testing.assert_allclose(
        state["rest"]["input_mean"][...],
        _expected_input_mean(_Family(), 40, skip=(5, 6)),
        rtol=1e-5,
    )
    with pytest.raises(NonFiniteError, match="3 updates in a row had NaN/inf"):
        train(_Family(poison=(5, 6, 7, 8)), OPT, TRAIN, tmp_path / "b", progress=False)


def test_host_memory_stays_flat_from_step_100_to_1000(tmp_path):
    # 2048-row batches (40 KB): keeping a reference to every batch, or to every step's
    # metrics, would grow the process by about 40 MB over these 900 steps. The one
    # checkpoint save comes after step 1000: orbax adds about 75 KB a save, measured apart.
    family = RegressionFamily(RegressionConfig(batch_size=2048, examples=8192))
    config = TrainConfig(steps=1100, log_every=100, save_every=5000, wandb="offline")
    train(family, OPT, config, tmp_path, progress=False)
    memory = {r["step"]: r["host_memory_mb"] for r in read_metrics(tmp_path)}
    assert sorted(memory) == list(range(100, 1101, 100))
    assert memory[1000] - memory[100] < 10.0, memory  # measured: 0.5–3.4 MB


def _truncate_arrays(checkpoint):
    """Halves every array data file of a checkpoint (a copy or a disk cut short)."""
    files = [f for f in checkpoint.rglob("*") if f.is_file() and f.parent.name == "d"]
    assert files
    for f in files:
        os.truncate(f, f.stat().st_size // 2)


def test_a_truncated_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    tmp_path, capsys
):
    run = tmp_path / "run"
    train(_Family(), OPT, dataclasses.replace(TRAIN, steps=20), run, progress=False)
    _truncate_arrays(run / "checkpoints" / "20")
    capsys.readouterr()
    train(_Family(), OPT, TRAIN, run, progress=False)
    out = capsys.readouterr().out
    assert "checkpoint step 20 does not restore (" in out
    assert "kept as 20.unreadable" in out and "resumed from step 10 of 40" in out
    assert (run / "checkpoints" / "20.unreadable" / "state").is_dir()
    # Steps 11-20 of the first run were logged again by the second: each is kept once.
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 41))


def test_no_checkpoint_that_restores_is_one_line_and_renames_nothing(tmp_path):
    train(_Family(), OPT, dataclasses.replace(TRAIN, steps=20), tmp_path, progress=False)
    for step in ("10", "20"):
        _truncate_arrays(tmp_path / "checkpoints" / step)
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* restores \(step 20: .*"
                       r"step 10: .*move the folder aside") as err:  # fmt: skip
        train(_Family(), OPT, TRAIN, tmp_path, progress=False)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_last_good_one(
    tmp_path, monkeypatch
):
    # A full disk from step 20 on, where orbax meets it: creating the checkpoint's folder
    # in its background thread.
    from orbax.checkpoint._src.path import atomicity

    create = atomicity._create_tmp_directory

    async def full_disk(*args, **kwargs):
        if "/20." in str(args[1] if len(args) > 1 else kwargs["tmp_dir"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return await create(*args, **kwargs)

    monkeypatch.setattr(atomicity, "_create_tmp_directory", full_disk)
    with pytest.raises(CheckpointError, match=r"could not write a checkpoint into .*No space "
                       r"left on device.*step 10 is the newest intact one") as err:  # fmt: skip
        train(_Family(), OPT, TRAIN, tmp_path, progress=False)
    assert "\n" not in str(err.value)
    # orbax's other threads of the failed save end, instead of keeping the process alive.
    time.sleep(0.5)
    waiting = [t for t in threading.enumerate() if type(t).__name__ == "_SignalingThread"]
    assert not [t for t in waiting if t.is_alive()]
    monkeypatch.undo()
    with Checkpointer(tmp_path / "checkpoints", save_every=1) as ckpt:
        assert ckpt.all_steps() == [10]
    assert int(_restore(tmp_path, _Family())["step"]) == 10
