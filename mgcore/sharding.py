"""Logical-axis sharding on one `("data", "fsdp", "tensor")` device mesh.

The same training code runs on one CPU, a GPU cluster and a TPU pod: parameters carry
*logical* axis names (`"embed"`, `"mlp"`, ...) through Flax NNX metadata, and one small
rule table maps those names to mesh axes. This follows MaxText and Flax's FSDP example:

- `data`: pure data parallelism (parameters replicated, batch split).
- `fsdp`: the batch is split along it too, and parameters are sharded along it
  (ZeRO-3 / fully sharded data parallel); XLA all-gathers them where they are used.
- `tensor`: Megatron-style model parallelism over hidden units and attention heads.

Annotate a parameter with `nnx.with_partitioning(initializer, ("embed", "mlp"))` (the
Flax 0.12 metadata key is `out_sharding`), then build the model with `init_sharded`,
which runs the initialiser under `jax.jit` with `out_shardings`, so each device only ever
holds its own shard. Models built outside `init_sharded` with annotated parameters need
`with nnx.use_eager_sharding(False):` (or a mesh and logical rules in context), because
Flax by default shards annotated variables eagerly at creation.

Default rule table (`DEFAULT_RULES`):

| logical name | mesh axes | used for |
| --- | --- | --- |
| batch | ("data", "fsdp") | batch dimension of inputs and activations |
| length, frames | None | sequence / time steps |
| embed | "fsdp" | model width of weights (FSDP shards it) |
| mlp | "tensor" | feed-forward hidden units |
| heads | "tensor" | attention heads (or heads x head_dim flattened) |
| kv | None | per-head dimension |
| vocab | "tensor" | token vocabulary of embeddings and logits |
| codebooks, layers, norm | None | codebook index, scanned layer stack, norm scales |
| conv_width | None | convolution kernel taps |
| conv_in | "fsdp" | convolution input channels |
| conv_out | "tensor" | convolution output channels |

A mesh axis is used at most once per array: when two dimensions of one array ask for
the same mesh axis, the earlier one keeps it. `state_shardings` also drops mesh axes that
do not divide a dimension (e.g. a 2049-token vocabulary on `tensor=2`), so odd sizes stay
correct and fall back to replication along that axis instead of failing to compile.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgcore.config_types import ConfigError

MeshAxes = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxes], ...]

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

DEFAULT_RULES: Rules = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("frames", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("codebooks", None),
    ("layers", None),
    ("norm", None),
    ("conv_width", None),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
)

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the three mesh axes; -1 on one axis takes all remaining devices."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    rules: Rules = DEFAULT_RULES


def _mesh_shape(config: MeshConfig, n_devices: int) -> tuple[int, int, int]:
    sizes = [config.data, config.fsdp, config.tensor]
    if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive with at most one -1, got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(
                f"mesh data={config.data} fsdp={config.fsdp} tensor={config.tensor} "
                f"does not divide {n_devices} devices"
            )
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ConfigError(
            f"mesh data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]} needs "
            f"{math.prod(sizes)} devices, but there are {n_devices}; set mesh.data=-1 to use "
            "them all"
        )
    return sizes[0], sizes[1], sizes[2]


def make_mesh(config: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the `("data", "fsdp", "tensor")` mesh.

    Args:
      config: axis sizes; -1 means all remaining devices.
      devices: devices to use; all global devices (`jax.devices()`) when None.

    Returns:
      A mesh with `Auto` axes, so XLA propagates shardings through unannotated code.

    Raises:
      ValueError: when the sizes don't multiply to the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = _mesh_shape(config, len(devices))
    try:
        # Lays the mesh out along the physical interconnect on TPU/GPU; tensor, the most
        # communication-hungry axis, is last so it lands on the fastest links.
        grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
        grid = np.asarray(devices, dtype=object).reshape(shape)
    auto = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return Mesh(grid, MESH_AXES, axis_types=auto)


def _rule_dict(rules: Rules) -> dict[str, MeshAxes]:
    return dict(rules)


def logical_to_mesh(
    spec_or_axes: PartitionSpec | Sequence[str | None] | None, rules: Rules = DEFAULT_RULES
) -> PartitionSpec:
    """Maps logical axis names to a mesh `PartitionSpec`.

    Args:
      spec_or_axes: one logical name (or None, meaning replicated) per array dimension,
        as a tuple or a `PartitionSpec` of logical names. None gives a replicated spec.
      rules: the logical -> mesh table.

    Returns:
      A `PartitionSpec` over mesh axes, each mesh axis used at most once.

    Raises:
      ValueError: for a logical name that the table doesn't know (typos would otherwise
        silently replicate a large weight).
    """
    if spec_or_axes is None:
        return PartitionSpec()
    table = _rule_dict(rules)
    used: set[str] = set()
    out: list[MeshAxes] = []
    for name in spec_or_axes:
        if name is None:
            out.append(None)
            continue
        if isinstance(name, tuple):  # several logical names merged on one dimension
            targets = [a for n in name for a in _as_tuple(_lookup(table, n))]
        else:
            targets = list(_as_tuple(_lookup(table, name)))
        axes = tuple(a for a in targets if a not in used)
        used.update(axes)
        out.append(_simplify(axes))
    return PartitionSpec(*out)


def _lookup(table: dict[str, MeshAxes], name: str) -> MeshAxes:
    if name not in table:
        raise ValueError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
    return table[name]


def _as_tuple(axes: MeshAxes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def _simplify(axes: tuple[str, ...]) -> MeshAxes:
    if not axes:
        return None
    return axes[0] if len(axes) == 1 else axes


def _fit_to_shape(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drops trailing mesh axes of each dimension until their product divides it."""
    if len(spec) > len(shape):
        raise ValueError(f"sharding {spec} has more entries than shape {shape} has dimensions")
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        kept = list(_as_tuple(axes))
        while kept and dim % math.prod(mesh.shape[a] for a in kept):
            kept.pop()
        if len(kept) != len(_as_tuple(axes)):
            _log.debug("dimension %d not divisible by %s: replicated along the rest", dim, axes)
        out.append(_simplify(tuple(kept)))
    return PartitionSpec(*out)


def _logical_axes(var: nnx.Variable) -> tuple[Any, ...] | None:
    # Flax 0.12 stores annotations as `out_sharding` (it remaps the older `sharding` and
    # `sharding_names` keys to it when the variable is created).
    return var.get_metadata().get("out_sharding")


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """A `NamedSharding` for every variable of an (abstract) NNX state.

    Args:
      abstract_state: state from `nnx.split` / `nnx.eval_shape`; leaves are NNX variables
        over arrays or `jax.ShapeDtypeStruct`s.
      mesh: the device mesh.
      rules: the logical -> mesh table.

    Returns:
      The same tree with each variable's value replaced by its `NamedSharding`;
      unannotated variables are replicated.
    """

    def one(x: Any) -> Any:
        if isinstance(x, nnx.Variable):
            value = x.get_raw_value()
            spec = _fit_to_shape(logical_to_mesh(_logical_axes(x), rules), value.shape, mesh)
            return x.replace(NamedSharding(mesh, spec))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _make_init(
    create: Callable[[], nnx.Module], mesh: Mesh, rules: Rules
) -> tuple[nnx.GraphDef, Callable[[], Any], Any]:
    """The graphdef, the jitted state initialiser and its output shardings."""
    # Eager sharding would try to resolve logical names at creation without our rules;
    # the jit's out_shardings below place every array instead.
    with nnx.use_eager_sharding(False):
        graphdef, abstract_state = nnx.split(nnx.eval_shape(create))
    shardings = state_shardings(abstract_state, mesh, rules)

    def init() -> Any:
        with nnx.use_eager_sharding(False):
            return nnx.split(create())[1]

    return graphdef, jax.jit(init, out_shardings=shardings), shardings


def init_sharded(
    create: Callable[[], nnx.Module], mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> tuple[nnx.GraphDef, Any]:
    """Initialises a model directly into its sharded layout.

    Shapes come from `nnx.eval_shape` (nothing allocated); then the initialiser runs
    under `jax.jit(..., out_shardings=...)`, so XLA computes each shard on its own device
    and no device ever holds the full unsharded model.

    Args:
      create: builds the model, e.g. `lambda: Model(config, rngs=nnx.Rngs(0))`; it must
        be deterministic (it is traced twice).
      mesh: the device mesh.
      rules: the logical -> mesh table.

    Returns:
      `(graphdef, state)`; `nnx.merge(graphdef, state)` gives the model.
    """
    graphdef, init, _ = _make_init(create, mesh, rules)
    return graphdef, init()


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) dimension over `("data", "fsdp")`, replicated on `tensor`.

    Args:
      mesh: the device mesh.
    """
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def local_batch_rows(global_batch_size: int, mesh: Mesh) -> slice:
    """The rows of the global batch that this process must load for `shard_batch`.

    Args:
      global_batch_size: rows in the global batch.
      mesh: the device mesh.

    Returns:
      A contiguous slice; the whole batch when the batch axes don't span processes.
    """
    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size,))
    rows = [idx[0].indices(global_batch_size)[:2] for idx in index_map.values()]
    start, stop = min(r[0] for r in rows), max(r[1] for r in rows)
    return slice(start, stop)


def shard_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles the global batch from every process's local slice.

    Each process passes its own rows, `local_batch_rows(global_batch_size, mesh)` of the
    global batch (rows `[i * n_local, (i + 1) * n_local)` on process `i` when the batch
    axes span all processes; the whole batch on each when they don't).

    Args:
      local_batch: arrays with the local batch size as leading dimension.
      mesh: the device mesh.

    Returns:
      Global `jax.Array`s sharded by `batch_sharding(mesh)`.
    """
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }
