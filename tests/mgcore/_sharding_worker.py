"""Subprocess side of test_sharding.py: trains a tiny model on a mesh, writes JSON.

XLA_FLAGS (the fake CPU device count) must be set before JAX is imported, so the tests
launch this script with the right environment instead of running in the pytest process.

  python _sharding_worker.py mesh OUT.json              # 8 devices vs 1 device
  python _sharding_worker.py multi OUT.json PORT PID    # one of two processes
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mgcore import distributed, sharding, trainer
from mgcore.checkpoint import Checkpointer
from mgcore.metrics import read_metrics
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig

try:  # same tree mode as the pytest process (tests/conftest.py)
    flax.config.update("nnx_graph_mode", False)
except (AttributeError, KeyError):
    pass

VOCAB, EMBED, HEADS, MLP, LENGTH, BATCH, STEPS = 64, 64, 4, 512, 16, 8, 20


def _linear(d_in: int, d_out: int, axes: tuple[str, str], rngs: nnx.Rngs) -> nnx.Linear:
    kernel_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), axes)
    bias_init = nnx.with_partitioning(nnx.initializers.zeros_init(), axes[1:])
    return nnx.Linear(d_in, d_out, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)


class TinyLM(nnx.Module):
    """Embedding, one causal attention block, one MLP, logits: about 90k parameters."""

    def __init__(self, *, rngs: nnx.Rngs):
        init = nnx.with_partitioning(nnx.initializers.normal(0.02), ("vocab", "embed"))
        self.embed = nnx.Embed(VOCAB, EMBED, embedding_init=init, rngs=rngs)
        # Separate q, k, v projections so each output splits cleanly by heads on `tensor`.
        self.q = _linear(EMBED, EMBED, ("embed", "heads"), rngs)
        self.k = _linear(EMBED, EMBED, ("embed", "heads"), rngs)
        self.v = _linear(EMBED, EMBED, ("embed", "heads"), rngs)
        self.out = _linear(EMBED, EMBED, ("heads", "embed"), rngs)
        self.up = _linear(EMBED, MLP, ("embed", "mlp"), rngs)
        self.down = _linear(MLP, EMBED, ("mlp", "embed"), rngs)
        self.norm = nnx.LayerNorm(EMBED, rngs=rngs)  # unannotated: replicated

    def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
        x_BxTxD = self.embed(tokens_BxT)
        h_BxTxD = self.norm(x_BxTxD)
        b, t, _ = x_BxTxD.shape
        q, k, v = (
            p(h_BxTxD).reshape(b, t, HEADS, EMBED // HEADS) for p in (self.q, self.k, self.v)
        )
        scores_BxHxTxT = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(EMBED // HEADS)
        causal = np.tril(np.ones((t, t), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores_BxHxTxT, -1e9), axis=-1)
        attn_BxTxD = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, EMBED)
        x_BxTxD = x_BxTxD + self.out(attn_BxTxD)
        x_BxTxD = x_BxTxD + self.down(jax.nn.gelu(self.up(x_BxTxD)))
        return x_BxTxD @ self.embed.embedding[...].T


def create() -> TinyLM:
    return TinyLM(rngs=nnx.Rngs(0))


def data(step: int) -> np.ndarray:
    """The fixed global batch of one step."""
    return np.random.default_rng(step).integers(0, VOCAB, (BATCH, LENGTH + 1), dtype=np.int32)


class StepData:
    """This process's rows of `data(step)`, step after step, with a resumable position."""

    def __init__(self, rows: slice):
        self.rows, self.step = rows, 0

    def __next__(self) -> dict:
        self.step += 1
        return {"tokens": data(self.step - 1)[self.rows]}

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


class Family:
    """Next-token prediction with TinyLM, through the shared trainer."""

    def __init__(self, rows: slice):
        self.rows = rows

    def create_model(self, rngs: nnx.Rngs) -> TinyLM:
        return TinyLM(rngs=rngs)

    def loss(self, model: TinyLM, batch: dict, rng: jax.Array):
        tokens_BxT1 = batch["tokens"]
        logits_BxTxV = model(tokens_BxT1[:, :-1])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, tokens_BxT1[:, 1:])
        return ce.mean(), {}

    def data(self) -> StepData:
        return StepData(self.rows)


OPTIMIZER = OptimizerConfig(
    learning_rate=1e-2, weight_decay=0.1, schedule="constant", grad_clip_norm=None
)


def train(
    mesh_config: sharding.MeshConfig, steps: int, local_rows: slice, workdir: str, devices=None
) -> tuple[list[float], dict, float]:
    """Trains with `mgcore.trainer.train`; returns (losses, param specs, last loss).

    Losses come from metrics.jsonl (process 0 writes it); the specs from the last
    checkpoint restored onto the same mesh, so they are what the trainer kept.
    """
    config = TrainConfig(steps=steps, log_every=1, save_every=steps, wandb="disabled")
    family = Family(local_rows)
    last = trainer.train(
        family, OPTIMIZER, config, workdir, mesh_config=mesh_config, devices=devices,
        progress=False,
    )  # fmt: skip
    losses = [r["loss"] for r in read_metrics(workdir)] if distributed.is_main_process() else []
    mesh = sharding.make_mesh(mesh_config, devices)
    plan = trainer.init_state(family, OPTIMIZER, config, mesh)
    with Checkpointer(Path(workdir) / "checkpoints", save_every=steps) as ckpt:
        state, _ = ckpt.restore(abstract_state=plan.abstract)
    specs = {
        "/".join(map(str, path)): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state["params"])
    }
    mu = optax.tree_utils.tree_get(state["opt_state"], "mu")  # Adam's first moment
    specs["mu/up/kernel"] = str(mu["up"]["kernel"].get_raw_value().sharding.spec)
    return losses, specs, last["loss"]


def mesh_mode(out: str) -> None:
    devices = jax.devices()
    assert len(devices) == 8, devices
    shapes = {
        f"{c.data},{c.fsdp},{c.tensor}": dict(sharding.make_mesh(c).shape)
        for c in (sharding.MeshConfig(), sharding.MeshConfig(fsdp=4), sharding.MeshConfig(1, 2, 4))
    }
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))

    # The jitted initialiser's compiled outputs must already be sharded: no full copy.
    _, init, expected = sharding._make_init(create, mesh, sharding.DEFAULT_RULES)
    compiled = init.lower().compile().output_shardings
    init_ok = all(
        c.is_equivalent_to(e, len(c.mesh.shape))
        for c, e in zip(jax.tree.leaves(compiled), jax.tree.leaves(expected), strict=True)
    )
    init_specs = [str(s.spec) for s in jax.tree.leaves(compiled)]
    _, params = sharding.init_sharded(create, mesh)
    shard_shapes = {
        "/".join(map(str, p)): [list(a.shape), list(a.addressable_shards[0].data.shape)]
        for p, a in jax.tree_util.tree_leaves_with_path(params)
    }

    # A 63-row vocabulary can't split over tensor=2: that dimension falls back to replication.
    with nnx.use_eager_sharding(False):
        odd = nnx.Param(
            jax.ShapeDtypeStruct((63, 64), jnp.float32), out_sharding=("vocab", "embed")
        )
    odd_spec = str(sharding.state_shardings({"w": odd}, mesh)["w"].get_raw_value().spec)

    sharded, specs, _ = train(
        sharding.MeshConfig(data=2, fsdp=2, tensor=2), STEPS, slice(None), out + ".sharded"
    )
    single, _, _ = train(sharding.MeshConfig(), STEPS, slice(None), out + ".one", devices[:1])
    result = dict(
        shapes=shapes,
        sharded=sharded,
        single=single,
        specs=specs,
        init_ok=init_ok,
        init_specs=init_specs,
        shard_shapes=shard_shapes,
        odd_spec=odd_spec,
    )
    with open(out, "w") as f:
        json.dump(result, f)


def multi_mode(out: str, port: int, pid: int) -> None:
    distributed.initialize(f"127.0.0.1:{port}", 2, pid)
    assert jax.process_count() == 2 and jax.device_count() == 4
    # fsdp spans the two processes, tensor the two devices of each: parameters are
    # all-gathered across processes and the batch is split by process.
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=2, tensor=2))
    rows = sharding.local_batch_rows(BATCH, mesh)
    assert rows == slice(pid * BATCH // 2, (pid + 1) * BATCH // 2), rows
    steps = 5
    # Both processes write into one workdir, as on a cluster's shared filesystem.
    workdir = os.path.join(os.path.dirname(out), "multi")
    losses, specs, last = train(sharding.MeshConfig(data=1, fsdp=2, tensor=2), steps, rows, workdir)
    with open(out, "w") as f:
        json.dump(
            dict(losses=losses, specs=specs, last=last, main=distributed.is_main_process()), f
        )
    jax.distributed.shutdown()


if __name__ == "__main__":
    mode, out_path = sys.argv[1], sys.argv[2]
    if mode == "mesh":
        mesh_mode(out_path)
    else:
        multi_mode(out_path, int(sys.argv[3]), int(sys.argv[4]))
