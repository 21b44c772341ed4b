"""The training state, planned on the mesh before anything is allocated, then built in
place: every parameter, optimiser moment and EMA copy in its own sharding, and, for a
fine-tune, the pretrained weights placed into it (`with_weights`).

`init_state` gives the trainer (`trainer.py`) and the benchmarks one plan: the graph,
the optimiser chain, the schedule, the shardings and abstract shapes of the state dict
(params, rest, opt_state, ema, step, rng), and its jitted initialiser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from optax.transforms._masking import MaskedNode as _MaskedNode

from mgcore.config_types import ConfigError
from mgcore.optim import OptimizerConfig, make_optimizer, make_schedule
from mgcore.sharding import DEFAULT_RULES, Rules, state_shardings
from mgcore.weights import dotted_name


@dataclasses.dataclass
class TrainState:
    """What `init_state` prepares: the pieces of the model and the sharded state."""

    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    shardings: Any  # NamedSharding per leaf of the state dict
    abstract: Any  # ShapeDtypeStruct per leaf, with the shardings (for restore)
    init: Callable[[], dict]  # jitted; builds each shard on its own device


def init_state(
    family,  # a `trainer.Family`
    optimizer: OptimizerConfig,
    train,  # the run's `trainer.TrainConfig`: its steps and seed
    mesh: Mesh,
    rules: Rules = DEFAULT_RULES,
) -> TrainState:
    """Plans the training state on `mesh` from abstract shapes; allocates nothing.

    Parameters follow their logical-axis annotations through `rules`; optimiser moments
    and EMA follow their parameter; everything else (step, RNG, counters) is replicated.
    `TrainState.init()` then builds the state under `jit` with these `out_shardings`,
    so no device ever holds a full copy of a sharded model.
    """

    def create():
        with nnx.use_eager_sharding(False):
            return family.create_model(nnx.Rngs(train.seed))

    graphdef, abs_params, abs_rest = nnx.split(nnx.eval_shape(create), nnx.Param, ...)
    groups = getattr(family, "optimizer_groups", lambda: None)()
    tx = make_optimizer(optimizer, train.steps, groups)
    schedule = make_schedule(optimizer, train.steps)

    def init() -> dict:
        _, params, rest = nnx.split(create(), nnx.Param, ...)
        return {
            "params": params,
            "rest": rest,
            "opt_state": tx.init(params),
            "ema": jax.tree.map(jnp.copy, params) if optimizer.ema_decay is not None else None,
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(train.seed + 1)),
        }

    replicated = NamedSharding(mesh, PartitionSpec())
    param_sh = state_shardings(abs_params, mesh, rules)
    abstract = jax.eval_shape(init)
    shardings = {
        "params": param_sh,
        "rest": state_shardings(abs_rest, mesh, rules),
        # Moments mirror their parameter's layout (ZeRO: sharded like the weights).
        "opt_state": optax.tree_map_params(
            tx,
            lambda leaf, sh: leaf if isinstance(leaf, _MaskedNode) else sh,
            abstract["opt_state"],
            param_sh,
            transform_non_params=lambda _: replicated,
            # Another group's slots in a multi_transform state are empty placeholders.
            is_leaf=lambda x: isinstance(x, _MaskedNode),
        ),
        "ema": param_sh if optimizer.ema_decay is not None else None,
        "step": replicated,
        "rng": replicated,
    }  # fmt: skip
    abstract = jax.tree.map(
        lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), abstract, shardings
    )
    return TrainState(graphdef, tx, schedule, shardings, abstract,
                      jax.jit(init, out_shardings=shardings))  # fmt: skip


def with_weights(state: dict, weights: dict, shardings: dict) -> dict:
    """The training state with the `weights` (by dotted name) in its params and rest,
    each placed in its leaf's sharding (`make_array_from_callback`: every process
    supplies its own shards, so this works on a multi-host mesh), and the EMA restarted
    from the new params.

    Raises:
      ConfigError: a weight fills no variable, or has another shape.
    """
    used = set()

    def fill(part: str):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state[part])
        out = []
        for (path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings[part]), strict=True):
            name = dotted_name(path)
            if name in weights:
                value = np.asarray(weights[name])
                if value.shape != leaf.shape:
                    raise ConfigError(f"pretrained weight {name} has shape {value.shape}, the "
                                      f"model's is {leaf.shape}")  # fmt: skip
                value = value.astype(leaf.dtype)
                leaf = jax.make_array_from_callback(leaf.shape, sharding, lambda i, v=value: v[i])
                used.add(name)
            out.append(leaf)
        return jax.tree_util.tree_unflatten(treedef, out)

    state = {**state, "params": fill("params"), "rest": fill("rest")}
    unused = sorted(set(weights) - used)
    if unused:
        raise ConfigError(f"{len(unused)} pretrained weights fill no variable of the model, "
                          f"e.g. {unused[:3]}")  # fmt: skip
    if state["ema"] is not None:
        state["ema"] = jax.tree.map(jnp.copy, state["params"])
    return state
