"""Optimiser chains, learning-rate schedules and weight EMA for every model family.

One config, one builder, all optax: AdamW (or Adam), a schedule with linear
warmup then cosine, linear, inverse-square-root or exponential decay, global-norm
clipping, gradient accumulation (`optax.MultiSteps`), and a NaN/inf guard
(`optax.apply_if_finite`) that skips an update whose gradients are not finite and
counts it; the trainer stops after `max_consecutive_nonfinite` in a row.

The anchors' recipes map onto it: EnCodec's Adam 3e-4 with betas (0.5, 0.9),
DAC's AdamW 1e-4 with betas (0.8, 0.99) and exponential decay 0.999996 a step,
MusicGen's AdamW with 4k warmup and cosine decay.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgcore.bounds import within


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """How parameters are updated.

    Attributes:
        name: "adamw" (decoupled weight decay) or "adam".
        learning_rate: peak learning rate, reached after warmup.
        b1, b2, eps: Adam's moment decays and epsilon.
        weight_decay: AdamW's decoupled weight decay (ignored by Adam).
        schedule: decay after warmup: constant, cosine, linear, inverse_sqrt or
            exponential.
        warmup_steps: linear warmup from 0 to `learning_rate`.
        decay_steps: length of the cosine/linear decay (None: the run's steps).
        end_lr_fraction: cosine/linear decay ends at this fraction of the peak.
        decay_rate: exponential decay factor a step (DAC: 0.999996).
        grad_clip_norm: clip gradients to this global norm (None: no clipping).
        grad_accumulation: average gradients over this many micro-batches per update.
        max_consecutive_nonfinite: skip updates with NaN/inf gradients, and stop
            training after this many in a row.
        ema_decay: keep an exponential moving average of the weights (None: no EMA).
    """

    name: Literal["adamw", "adam"] = "adamw"
    learning_rate: float = 3e-4
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    schedule: Literal["constant", "cosine", "linear", "inverse_sqrt", "exponential"] = "cosine"
    warmup_steps: int = 0
    decay_steps: int | None = None
    end_lr_fraction: float = 0.0
    decay_rate: float = 0.999996
    grad_clip_norm: float | None = 1.0
    grad_accumulation: int = 1
    max_consecutive_nonfinite: int = 10
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        within(self, "learning_rate", 0.0, 1e3, low_open=True)
        within(self, "b1", 0.0, 1.0, high_open=True)
        within(self, "b2", 0.0, 1.0, high_open=True)
        within(self, "eps", 0.0, 1.0, low_open=True)
        within(self, "weight_decay", 0.0, 1e3)
        within(self, "warmup_steps", 0, MAX_STEPS, high_open=True)
        within(self, "decay_steps", 1, MAX_STEPS, high_open=True, optional=True)
        within(self, "end_lr_fraction", 0.0, 1.0)
        within(self, "decay_rate", 0.0, 1.0, low_open=True)
        within(self, "grad_clip_norm", 0.0, 1e9, low_open=True, optional=True)
        within(self, "grad_accumulation", 1, 65536)
        within(self, "max_consecutive_nonfinite", 1, MAX_STEPS, high_open=True)
        within(self, "ema_decay", 0.0, 1.0, high_open=True, optional=True)


# The trainer counts steps in int32.
MAX_STEPS = 2**31


def make_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
    """The learning rate at each optimiser update (not micro-batch)."""
    peak, warmup = config.learning_rate, config.warmup_steps
    decay_steps = max(1, (config.decay_steps or total_steps) - warmup)
    end = peak * config.end_lr_fraction
    if config.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif config.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=config.end_lr_fraction)
    elif config.schedule == "linear":
        after = optax.linear_schedule(peak, end, decay_steps)
    elif config.schedule == "exponential":
        # exp(step * ln r), with ln r taken in float64: r**step in float32 drifts
        # (0.999996 is not a float32; over 100k steps the error compounds to 7e-4).
        log_rate = float(np.log(config.decay_rate))

        def after(step):
            return peak * jnp.exp(jnp.asarray(step, jnp.float32) * log_rate)
    elif config.schedule == "inverse_sqrt":
        scale = max(warmup, 1)

        def after(step):
            # join_schedules evaluates every piece, also at negative steps: guard them.
            return peak * jnp.sqrt(scale / jnp.maximum(jnp.asarray(step, jnp.float32) + scale, 1))
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}")
    if warmup <= 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def _core(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
    """Clip -> Adam(W) with the schedule, for one group of parameters."""
    schedule = make_schedule(config, total_steps)
    if config.name == "adamw":
        core = optax.adamw(schedule, config.b1, config.b2, config.eps,
                           weight_decay=config.weight_decay)  # fmt: skip
    elif config.name == "adam":
        core = optax.adam(schedule, config.b1, config.b2, config.eps)
    else:
        raise ValueError(f"unknown optimizer {config.name!r}")
    parts = (
        [] if config.grad_clip_norm is None else [optax.clip_by_global_norm(config.grad_clip_norm)]
    )
    return optax.chain(*parts, core)


def make_optimizer(
    config: OptimizerConfig,
    total_steps: int,
    groups: Mapping[str, OptimizerConfig] | None = None,
) -> optax.GradientTransformation:
    """The full chain: clip -> Adam(W) with the schedule -> accumulate -> skip non-finite.

    Args:
      config: the optimiser of every parameter not in `groups`; its accumulation and
        non-finite settings apply to the whole model.
      total_steps: optimiser updates in the run (for the schedule's decay length).
      groups: optional per-group optimisers keyed by the top-level attribute of the model
        that holds the group's parameters (a GAN's `"discriminator"`): each group gets its
        own clipping norm, schedule and Adam settings, as DAC and EnCodec train their
        generator and discriminators.
    """
    if groups:
        transforms = {"default": _core(config, total_steps)}
        transforms.update({name: _core(c, total_steps) for name, c in groups.items()})
        chain = optax.multi_transform(transforms, functools.partial(_group_labels, set(groups)))
    else:
        chain = _core(config, total_steps)
    if config.grad_accumulation > 1:
        chain = optax.MultiSteps(chain, every_k_schedule=config.grad_accumulation)
    # Outermost, so a NaN micro-batch never reaches the accumulator either.
    return optax.apply_if_finite(chain, config.max_consecutive_nonfinite)


def _group_labels(names: set[str], params):
    """Labels each parameter by its top-level attribute when that names a group."""

    def label(path, _):
        top = getattr(path[0], "key", getattr(path[0], "name", None)) if path else None
        return top if top in names else "default"

    return jax.tree_util.tree_map_with_path(label, params)


def nonfinite_counts(opt_state) -> tuple[jax.Array, jax.Array]:
    """(consecutive, total) skipped updates, from `make_optimizer`'s state."""
    return opt_state.notfinite_count, opt_state.total_notfinite


def ema_update(ema, params, decay: float):
    """One step of the weights' exponential moving average: decay * ema + (1 - decay) * params."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype), ema, params)
