"""The trainer on a tiny regression family: it learns, resumes exactly, skips NaN updates."""

import os
import signal

import flax.nnx as nnx
import jax.numpy as jnp
import numpy as np
import pytest

from mgcore.metrics import read_metrics
from mgcore.optim import OptimizerConfig
from mgcore.trainer import ArrayIterator, NonFiniteError, TrainConfig, train


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 32, rngs=rngs)
        self.out = nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.gelu(self.hidden(x)))


class _Family:
    """y = sum(sin(x)) from 4 inputs; batches numbered in `poison` hold NaN inputs."""

    def __init__(self, signal_at: int | None = None, poison: tuple[int, ...] = ()):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((512, 4)).astype(np.float32)
        self.arrays = {"x": x, "y": np.sin(x).sum(1, keepdims=True).astype(np.float32)}
        self.signal_at, self.poison = signal_at, poison

    def create_model(self, rngs):
        return _MLP(rngs)

    def loss(self, model, batch, rng):
        err = model(batch["x"]) - batch["y"]
        loss = jnp.mean(err**2)
        return loss, {"mse": loss}

    def data(self):
        family = self

        class _It(ArrayIterator):
            served = 0

            def __next__(self):
                batch = super().__next__()
                _It.served += 1
                if family.signal_at is not None and _It.served == family.signal_at:
                    os.kill(os.getpid(), signal.SIGTERM)  # preemption, mid-run
                if _It.served in family.poison:  # a corrupt batch: NaN inputs, NaN gradients
                    batch = {**batch, "x": np.full_like(batch["x"], np.nan)}
                return batch

        return _It(self.arrays, batch_size=32, seed=1)


OPT = OptimizerConfig(
    learning_rate=3e-3, schedule="cosine", warmup_steps=5, max_consecutive_nonfinite=3
)
TRAIN = TrainConfig(steps=40, log_every=1, save_every=10, wandb="disabled")


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(workdir)}


def test_it_learns_and_writes_metrics_and_checkpoints(tmp_path):
    last = train(_Family(), OPT, TRAIN, tmp_path, progress=False)
    losses = _losses(tmp_path)
    assert sorted(losses) == list(range(1, 41))
    assert last["step"] == 40 and losses[40] < 0.5 * losses[1]
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit())[-1] == 40


def test_sigterm_then_restart_reproduces_the_uninterrupted_losses(tmp_path):
    reference = train(_Family(), OPT, TRAIN, tmp_path / "ref", progress=False)
    assert reference["step"] == 40
    stopped = train(_Family(signal_at=17), OPT, TRAIN, tmp_path / "run", progress=False)
    assert stopped["step"] == 17
    train(_Family(), OPT, TRAIN, tmp_path / "run", progress=False)
    want, got = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    assert sorted(got) == list(range(1, 41))
    for step in range(1, 41):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


def test_nan_updates_are_skipped_counted_and_stop_the_run(tmp_path):
    last = train(_Family(poison=(5, 6)), OPT, TRAIN, tmp_path / "a", progress=False)
    assert last["nonfinite_total"] == 2 and last["nonfinite_consecutive"] == 0
    with pytest.raises(NonFiniteError, match="3 updates in a row had NaN/inf"):
        train(_Family(poison=(5, 6, 7, 8)), OPT, TRAIN, tmp_path / "b", progress=False)
