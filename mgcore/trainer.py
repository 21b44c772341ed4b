"""The one training loop for every model family (codec, token LM, refiner).

A family supplies four things (`Family`): the model, a pure loss over a batch,
a host data iterator with `get_state`/`set_state`, and optionally an evaluation
hook. The trainer owns everything else: the optimiser chain (`optim.py`), the sharded
state and its initialisation (`train_state.py`), a pure jitted
`train_step(state, batch) -> (state, metrics)` over the `nnx.split` state with the
state donated, bfloat16 compute over float32 master
weights by option, weight EMA, skipping and counting non-finite updates,
checkpoints with the data iterator's state (`checkpoint.py`), saving and
stopping cleanly on SIGTERM/SIGINT, and metrics (`metrics.py`). The next step is
dispatched before the last step's metrics are read, so the host blocks on the
device only when it logs.

How a run ends, for the caller (and `musicgen train`'s exit status): it returns
after its last step (exit 0); it raises `Preempted` after a signal, once the
checkpoint of the step it stopped at is written (exit `EXIT_PREEMPTED`, 75: run
the same command again to resume); anything else is a failure (exit 1), among
them `NonFiniteError`, `CheckpointError` (a checkpoint could not be written:
the ones before it are intact) and `WorkdirError` (metrics could not be written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from mgcore.bounds import within
from mgcore.checkpoint import Checkpointer, PreemptionGuard
from mgcore.config_types import ConfigError
from mgcore.data.config import debug_data
from mgcore.metrics import MetricsWriter, Throughput
from mgcore.optim import MAX_STEPS, OptimizerConfig, ema_update
from mgcore.sharding import (
    MeshConfig,
    make_mesh,
    shard_batch,
)
from mgcore.train_state import init_state, with_weights

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
        memory_report: log the compiled step's memory once (`memory/step_*_bytes`: its
            arguments, that is the state and batch, its temporaries, and their sum), at
            the cost of compiling the step a second time.
    """

    steps: int = 1000
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 500
    keep: int = 3
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    wandb: Literal["offline", "online", "disabled"] = "offline"
    memory_report: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "log_every", "save_every"):
            within(self, name, 1, MAX_STEPS, high_open=True)
        within(self, "eval_every", 0, MAX_STEPS, high_open=True)  # 0: never
        within(self, "keep", 1, 1000)


# What every `:debug` recipe trains for: seconds, with a save, a resume point and an eval.
DEBUG_TRAIN = TrainConfig(steps=6, log_every=2, eval_every=6, save_every=3, keep=2)


def debug_experiment(config, data: dict | None = None, train: TrainConfig = DEBUG_TRAIN,
                     **changes):  # fmt: skip
    """A root config shrunk for a `:debug` run, the one helper every family's
    `debug_variant` extends: its data on the embedded dataset's smallest slice
    (`debug_data`, with the `data` changes), `train`, the default mesh, and `changes`
    (the family's small model)."""
    data = debug_data(config.data, **(data or {}))
    return dataclasses.replace(config, data=data, train=train, mesh=MeshConfig(), **changes)


class DataIterator(Protocol):
    def __next__(self) -> dict: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class Family(Protocol):
    """What a model family gives the trainer.

    Optional extras, looked up with `getattr`:

    - `evaluate(model, step, writer)`: called every `eval_every` steps with the EMA
      weights (or the weights); logs scalars, audio and images through `writer`
      (a `MetricsWriter`). Every process calls it; only process 0 writes.
    - `optimizer_groups() -> dict[str, OptimizerConfig]`: separate optimisers for the
      parameters under a top-level attribute of the model (a GAN's discriminator).
    - `initial_weights() -> dict[str, array]`: pretrained values by dotted name
      (`layers.0.fc1.kernel`) that replace the random ones when a run starts (not when it
      resumes): fine-tuning. Each is placed straight into its variable's sharding; a name
      that fills no variable is an error, variables it does not name keep their init.
    """

    def create_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

    def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
        """Scalar loss and a dict of metrics (scalars or small vectors); pure and jit-able.

        `batch["step"]` is the micro-step being taken (int32 scalar), for terms that
        switch on during training (a GAN's discriminators after a warm-up).

        The model's non-`nnx.Param` variables (batch statistics, EMA codebooks) may be
        updated in place; the trainer keeps the updates unless the step was skipped.
        """
        ...

    def data(self) -> DataIterator:
        """This process's rows of each global batch (`sharding.local_batch_rows`)."""
        ...


class NonFiniteError(RuntimeError):
    """Too many consecutive updates with NaN/inf gradients."""


# sysexits.h's EX_TEMPFAIL ("try again later"): what a scheduler reads as "requeue me".
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """The run stopped on SIGTERM/SIGINT after saving a checkpoint at `step`; running it
    again resumes there."""

    def __init__(self, step: int, signal_name: str, workdir):
        self.step, self.signal_name = step, signal_name
        super().__init__(
            f"stopped by {signal_name} at step {step}, with a checkpoint of it in {workdir}; "
            "run the same command again to resume"
        )


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
    state_shardings: Any = None,
):
    """A pure `step(state, batch) -> (state, metrics)`, jitted, donating the state.

    `state` is a dict: params (the model's `nnx.Param`s, float32), rest (its other
    variables), opt_state, ema (or None), step, rng (key data). Metrics are device
    arrays; reading them is what syncs the host. With `state_shardings`, the new state
    is pinned to the same layout as the old (XLA would otherwise be free to move it).
    """

    def step_fn(state: dict, batch: dict):
        rng, step_rng = jax.random.split(state["rng"])
        batch = {**batch, "step": state["step"]}  # for losses with a schedule of their own

        def objective(params):
            # Fresh Variables at this trace level: the loss may update them in place.
            rest = jax.tree.map(lambda x: x, state["rest"])
            model = nnx.merge(graphdef, _cast_floats(params, compute_dtype), rest)
            loss, aux = loss_fn(model, batch, step_rng)
            rest = nnx.split(model, nnx.Param, ...)[2]
            return loss.astype(jnp.float32), (aux, rest)

        (loss, (aux, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # A skipped (non-finite) step must not leak NaN into the non-Param state either.
        finite = opt_state.last_finite
        rest = jax.tree.map(lambda new, old: jnp.where(finite, new, old), rest, state["rest"])
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
        new_state = {"params": params, "rest": rest, "opt_state": opt_state, "ema": ema,
                     "step": state["step"] + 1, "rng": rng}  # fmt: skip
        return new_state, metrics

    if state_shardings is None:
        return jax.jit(step_fn, donate_argnums=0)
    mesh = jax.tree.leaves(state_shardings)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step_fn, donate_argnums=0, out_shardings=(state_shardings, replicated))


def train(
    family: Family,
    optimizer: OptimizerConfig,
    train_config: TrainConfig,
    workdir,
    *,
    mesh_config: MeshConfig | None = None,
    config_dict: dict | None = None,
    progress: bool = True,
    devices: Sequence[jax.Device] | None = None,
) -> dict:
    """Trains, resuming from the latest checkpoint in `workdir`; returns the last metrics.

    Stops after `train_config.steps`; raises `Preempted` on SIGTERM/SIGINT (after
    saving), `NonFiniteError` after `optimizer.max_consecutive_nonfinite` skipped
    updates in a row, `CheckpointError` when a checkpoint cannot be written (or none
    restores). Resumes from the newest checkpoint that restores, setting newer broken
    ones aside. Checkpoints go to `workdir/checkpoints`, metrics to
    `workdir/metrics.jsonl` (and wandb).

    Args:
      family: the model family (`Family`).
      optimizer: the optimiser of the whole model (or of its default group).
      train_config: the loop's settings.
      workdir: the run's folder; created if missing.
      mesh_config: mesh sizes and logical-axis rules; default: data parallel over all
        devices.
      config_dict: the resolved experiment config, saved with every checkpoint and
        logged to wandb.
      progress: show a progress bar.
      devices: the devices of the mesh; default all (`jax.devices()`).
    """
    mesh_config = mesh_config or MeshConfig()
    mesh = make_mesh(mesh_config, devices)
    plan = init_state(family, optimizer, train_config, mesh, mesh_config.rules)
    data = family.data()
    step_fn = make_train_step(
        plan.graphdef, family.loss, plan.tx, plan.schedule,
        compute_dtype=jnp.dtype(train_config.compute_dtype),
        ema_decay=optimizer.ema_decay, grad_accumulation=optimizer.grad_accumulation,
        state_shardings=plan.shardings,
    )  # fmt: skip
    evaluate = getattr(family, "evaluate", None)
    total = train_config.steps * optimizer.grad_accumulation
    if total >= MAX_STEPS:
        raise ConfigError(f"train.steps x optimizer.grad_accumulation is {total} micro-steps, "
                          f"more than the int32 step counter holds (2**31)")  # fmt: skip
    pending, last, stopped_by = None, {}, None
    # Closed in reverse order on any exit (NonFiniteError too): the progress bar, the
    # metrics (and wandb), then the checkpointer, which first finishes an async save.
    with contextlib.ExitStack() as stack:
        ckpt = stack.enter_context(Checkpointer(
            Path(workdir) / "checkpoints", save_every=train_config.save_every,
            keep=train_config.keep,
        ))  # fmt: skip
        restored = ckpt.restore_newest(abstract_state=plan.abstract)
        if restored is None:
            state, start = plan.init(), 0
            initial = getattr(family, "initial_weights", None)
            if initial is not None:
                state = with_weights(state, initial(), plan.shardings)
        else:
            _, state, extra = restored
            data.set_state(extra["data"])
            start = int(state["step"])
            _say(f"resumed from step {start} of {total}")
        writer = MetricsWriter(workdir, config=config_dict, mode=train_config.wandb,
                               resume_step=start)  # fmt: skip
        stack.callback(writer.close)
        if start >= total:
            _say(f"{workdir} has finished its {start} steps; nothing to train "
                 "(raise train.steps to train on)")  # fmt: skip
        bar = tqdm(total=total, initial=start, disable=not progress, desc="train")
        stack.callback(bar.close)
        timer = Throughput()

        def flush(force: bool = False):  # log the pending step (if on the logging cadence)
            nonlocal pending, last
            if pending is not None and (force or pending[0] % train_config.log_every == 0):
                last = _log(writer, bar, pending, timer.take())
                _check_finite(last, optimizer)
            pending = None

        with PreemptionGuard() as preempt:
            for step in range(start, total):
                batch = shard_batch(_device_batch(next(data)), mesh)
                if train_config.memory_report and step == start:
                    writer.scalars(step, step_memory(step_fn, state, batch))
                state, metrics = step_fn(state, batch)
                timer.add(_batch_rows(batch))
                done = step + 1
                flush()
                pending = (done, metrics)
                bar.update()
                if (
                    evaluate is not None
                    and train_config.eval_every
                    and (done % train_config.eval_every == 0)
                ):
                    weights = state["ema"] if state["ema"] is not None else state["params"]
                    evaluate(nnx.merge(plan.graphdef, weights, state["rest"]), done, writer)
                if ckpt.should_save(done) or done == total or preempt.requested:
                    # The rows up to a checkpoint's step are written before it: a resumed
                    # run drops the rows after it and logs those steps again, once.
                    flush(force=done == total or preempt.requested)
                    ckpt.save(done, state, {"data": data.get_state(), "config": config_dict or {}},
                              force=True)  # fmt: skip
                if preempt.requested:
                    log.warning("stopping at step %d on a signal; resume by running again", done)
                    stopped_by = (done, preempt.signal.name)
                    break
        flush(force=True)
        ckpt.wait()  # the last save is committed (or its error raised) before returning
    if stopped_by is not None:
        raise Preempted(*stopped_by, workdir)
    return last


def step_memory(step_fn, state: dict, batch: dict) -> dict:
    """What XLA's compiled train step holds at once, in bytes (per device): its arguments
    (state and batch), its temporaries (activations, gradients, optimiser updates) and
    their sum, from `memory_analysis()` of the step compiled ahead of time."""
    stats = step_fn.lower(state, batch).compile().memory_analysis()
    arguments, temp = int(stats.argument_size_in_bytes), int(stats.temp_size_in_bytes)
    return {"memory/step_argument_bytes": arguments, "memory/step_temp_bytes": temp,
            "memory/step_total_bytes": arguments + temp}  # fmt: skip


def _say(message: str) -> None:
    """A line for the user (process 0 only), and the log."""
    log.info(message)
    if jax.process_index() == 0:
        print(message, flush=True)


def _device_batch(batch: dict) -> dict:
    """The numeric arrays of a host batch (strings and lists stay on the host)."""
    return {k: v for k, v in batch.items() if isinstance(v, np.ndarray | jax.Array)}


def _batch_rows(batch: dict) -> int:
    arrays = [v for v in batch.values() if getattr(v, "ndim", 0) > 0]
    return int(arrays[0].shape[0]) if arrays else 0


def _log(writer, bar, pending, rates: dict) -> dict:
    step, metrics = pending
    values: dict[str, float] = {}
    for key, value in jax.device_get(metrics).items():
        value = np.asarray(value)
        if value.ndim == 0:
            values[key] = float(value)
        else:  # per-codebook vectors and the like: one scalar per entry
            values.update({f"{key}_{i}": float(v) for i, v in enumerate(value.reshape(-1))})
    values.update(rates)
    writer.scalars(step, values)
    bar.set_postfix(
        loss=f"{values['loss']:.4f}",
        steps_s=f"{rates['steps_per_second']:.2f}",
        ex_s=f"{rates['examples_per_second']:.1f}",
    )
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
