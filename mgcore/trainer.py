"""The one training loop for every model family (codec, token LM, refiner).

A family supplies four things (`Family`): the model, a pure loss over a batch,
a host data iterator with `get_state`/`set_state`, and optionally an evaluation
hook. The trainer owns everything else: the optimiser chain (`optim.py`), a
pure jitted `train_step(state, batch) -> (state, metrics)` over the
`nnx.split` state with the state donated, bfloat16 compute over float32 master
weights by option, weight EMA, skipping and counting non-finite updates,
checkpoints with the data iterator's state (`checkpoint.py`), saving and
stopping cleanly on SIGTERM/SIGINT, and metrics (`metrics.py`). The next step is
dispatched before the last step's metrics are read, so the host blocks on the
device only when it logs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgcore.optim import OptimizerConfig, ema_update, make_optimizer, make_schedule

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The loop itself.

    Attributes:
        steps: optimiser updates to run (micro-batches = steps * grad_accumulation).
        seed: model initialisation and per-step RNG.
        log_every: log scalars every this many steps (the only host-device sync).
        eval_every: call the family's evaluation hook every this many steps (0: never).
        save_every: checkpoint every this many steps.
        keep: checkpoints kept.
        compute_dtype: dtype the loss is computed in; weights stay float32.
        wandb: "offline" (default), "online" or "disabled".
    """

    steps: int = 1000
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 500
    keep: int = 3
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    wandb: Literal["offline", "online", "disabled"] = "offline"


class DataIterator(Protocol):
    def __next__(self) -> dict: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class Family(Protocol):
    """What a model family gives the trainer."""

    def create_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
        """Scalar loss and a dict of scalar metrics; pure and jit-able."""
        ...

    def data(self) -> DataIterator: ...


class NonFiniteError(RuntimeError):
    """Too many consecutive updates with NaN/inf gradients."""


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)  # fmt: skip


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    compute_dtype=jnp.float32,
    ema_decay: float | None = None,
    grad_accumulation: int = 1,
):
    """A pure `step(state, batch) -> (state, metrics)`, jitted, donating the state.

    `state` is a dict: params (nnx.State, float32), opt_state, ema (or None), step,
    rng (a key). Metrics are device scalars; reading them is what syncs the host.
    """

    def step_fn(state: dict, batch: dict):
        rng, step_rng = jax.random.split(state["rng"])

        def objective(params):
            model = nnx.merge(graphdef, _cast_floats(params, compute_dtype))
            loss, aux = loss_fn(model, batch, step_rng)
            return loss.astype(jnp.float32), aux

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        ema = state["ema"]
        if ema_decay is not None:
            ema = ema_update(ema, params, ema_decay)
        update_index = state["step"] // grad_accumulation
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(update_index),
            "nonfinite_consecutive": opt_state.notfinite_count,
            "nonfinite_total": opt_state.total_notfinite,
            **aux,
        }
        new_state = {"params": params, "opt_state": opt_state, "ema": ema,
                     "step": state["step"] + 1, "rng": rng}  # fmt: skip
        return new_state, metrics

    return jax.jit(step_fn, donate_argnums=0)


def init_state(family: Family, optimizer: OptimizerConfig, train: TrainConfig):
    """Builds the model and the initial training state; returns (graphdef, state, tx, schedule)."""
    model = family.create_model(nnx.Rngs(train.seed))
    graphdef, params = nnx.split(model)
    tx = make_optimizer(optimizer, train.steps)
    schedule = make_schedule(optimizer, train.steps)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "ema": jax.tree.map(jnp.copy, params) if optimizer.ema_decay is not None else None,
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.key(train.seed + 1)),
    }
    return graphdef, state, tx, schedule


def train(
    family: Family,
    optimizer: OptimizerConfig,
    train_config: TrainConfig,
    workdir,
    *,
    config_dict: dict | None = None,
    evaluate: Callable[[nnx.Module, int, Any], None] | None = None,
    progress: bool = True,
) -> dict:
    """Trains, resuming from the latest checkpoint in `workdir`; returns the last metrics.

    Stops after `train_config.steps`, on SIGTERM/SIGINT (after saving), or with
    `NonFiniteError` after `optimizer.max_consecutive_nonfinite` skipped updates
    in a row.
    """
    from tqdm.auto import tqdm

    from mgcore.checkpoint import Checkpointer, PreemptionGuard
    from mgcore.metrics import MetricsWriter

    graphdef, state, tx, schedule = init_state(family, optimizer, train_config)
    data = family.data()
    ckpt = Checkpointer(workdir, save_every=train_config.save_every, keep=train_config.keep)
    start = 0
    if ckpt.latest_step() is not None:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
        )
        state, extra = ckpt.restore(abstract_state=abstract)
        data.set_state(extra["data"])
        start = int(state["step"])
        log.info("resumed from step %d", start)
    step_fn = make_train_step(
        graphdef, family.loss, tx, schedule,
        compute_dtype=jnp.dtype(train_config.compute_dtype),
        ema_decay=optimizer.ema_decay, grad_accumulation=optimizer.grad_accumulation,
    )  # fmt: skip
    writer = MetricsWriter(workdir, config=config_dict, mode=train_config.wandb)
    total = train_config.steps * optimizer.grad_accumulation
    bar = tqdm(total=total, initial=start, disable=not progress, desc="train")
    pending, last = None, {}
    started, since_log = time.perf_counter(), 0
    try:
        with PreemptionGuard() as preempt:
            for step in range(start, total):
                batch = next(data)
                state, metrics = step_fn(state, _device_batch(batch))
                since_log += 1
                done = step + 1
                if pending is not None and pending[0] % train_config.log_every == 0:
                    last = _log(writer, bar, pending, since_log, time.perf_counter() - started)
                    started, since_log = time.perf_counter(), 0
                    _check_finite(last, optimizer)
                pending = (done, metrics)
                bar.update()
                if (
                    evaluate is not None
                    and train_config.eval_every
                    and done % train_config.eval_every == 0
                ):
                    weights = state["ema"] if state["ema"] is not None else state["params"]
                    evaluate(nnx.merge(graphdef, weights), done, writer)
                if ckpt.should_save(done) or done == total or preempt.requested:
                    ckpt.save(done, state, {"data": data.get_state(), "config": config_dict or {}},
                              force=True)  # fmt: skip
                if preempt.requested:
                    log.warning("stopping at step %d on a signal; resume by running again", done)
                    break
        if pending is not None:
            last = _log(writer, bar, pending, max(since_log, 1), time.perf_counter() - started)
    finally:  # also on NonFiniteError: finish an async save, close wandb
        ckpt.wait()
        ckpt.close()
        writer.close()
        bar.close()
    return last


def _device_batch(batch: dict) -> dict:
    """The numeric arrays of a host batch (strings and lists stay on the host)."""
    return {k: v for k, v in batch.items() if isinstance(v, np.ndarray | jax.Array)}


def _log(writer, bar, pending, steps: int, seconds: float) -> dict:
    step, metrics = pending
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    values["steps_per_second"] = steps / max(seconds, 1e-9)
    writer.scalars(step, values)
    bar.set_postfix(loss=f"{values['loss']:.4f}", steps_s=f"{values['steps_per_second']:.2f}")
    return {"step": step, **values}


def _check_finite(metrics: dict, optimizer: OptimizerConfig) -> None:
    if metrics.get("nonfinite_consecutive", 0) >= optimizer.max_consecutive_nonfinite:
        raise NonFiniteError(
            f"{int(metrics['nonfinite_consecutive'])} updates in a row had NaN/inf gradients "
            f"(step {metrics['step']}); lower the learning rate or check the data, then resume"
        )


class ArrayIterator:
    """Endless shuffled batches over in-memory arrays, with a checkpointable position.

    For tests and small examples; real data comes from `mgcore.data.pipeline`.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int = 0):
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.n = len(next(iter(arrays.values())))
        self.epoch, self.index = 0, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.index + self.batch_size > self.n:
            self.epoch, self.index = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        idx = order[self.index : self.index + self.batch_size]
        self.index += self.batch_size
        return {k: v[idx] for k, v in self.arrays.items()}

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def set_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
