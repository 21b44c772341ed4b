"""Subprocess side of test_lm_sharding.py: the token LM trained by the shared trainer on
a 2x2x2 mesh of 8 fake CPU devices and on one device, from scratch and as a LoRA
fine-tune of a base LM (adapters trained, base frozen); writes losses and specs as JSON.

XLA_FLAGS (the fake device count) must be set before JAX is imported.

  python _mesh_worker.py OUT.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile

import flax
import jax
import numpy as np
from flax import nnx

from mgcore import sharding, trainer
from mgcore.checkpoint import Checkpointer
from mgcore.optim import OptimizerConfig
from mgcore.trainer import ArrayIterator, TrainConfig
from mgcore.weights import flatten_state
from musicgen.lm.family import cross_entropy
from musicgen.lm.lora import LoRAConfig, freeze_base
from musicgen.lm.model import LMConfig, MusicGenLM

try:  # same tree mode as the pytest process (tests/conftest.py)
    flax.config.update("nnx_graph_mode", False)
except (AttributeError, KeyError):
    pass

CONFIG = LMConfig(num_codebooks=4, card=64, num_layers=2, dim=64, num_heads=4, text_dim=32)
BATCH, FRAMES, TEXT, STEPS = 8, 24, 6, 8


class Family:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.arrays = {
            "codes": rng.integers(0, 64, (32, 4, FRAMES)).astype(np.int32),
            "length": rng.integers(FRAMES // 2, FRAMES + 1, 32).astype(np.int32),
            "text": rng.normal(size=(32, TEXT, 32)).astype(np.float32),
            "text_mask": rng.random((32, TEXT)) < 0.8,
        }

    def create_model(self, rngs):
        return MusicGenLM(CONFIG, rngs=rngs)

    def loss(self, model, batch, rng):
        ce_K, _ = cross_entropy(model, batch)
        return ce_K.mean(), {"ce": ce_K}

    def data(self):
        return ArrayIterator(self.arrays, BATCH, seed=0)


class LoRAFamily(Family):
    """A LoRA fine-tune of a base LM (`initial_weights`), every base weight frozen."""

    def create_model(self, rngs):
        config = dataclasses.replace(CONFIG, lora=LoRAConfig(rank=4))
        return freeze_base(MusicGenLM(config, rngs=rngs))

    def initial_weights(self):
        with nnx.use_eager_sharding(False):
            return flatten_state(nnx.state(MusicGenLM(CONFIG, rngs=nnx.Rngs(5))))


NAMES = (
    "layers.0.fc1.kernel",
    "layers.0.self_attn.q_proj.kernel",
    "embed_tokens.0.embedding",
    "lm_heads.0.kernel",
    "text_proj.kernel",
    "layers.0.fc1.lora_a",
    "layers.0.fc1.lora_b",
    "layers.0.self_attn.q_proj.lora_a",
)


def run(mesh_config, devices, workdir, family=Family):
    optimizer = OptimizerConfig(learning_rate=3e-3, warmup_steps=2)
    config = TrainConfig(steps=STEPS, log_every=1, save_every=STEPS, wandb="disabled")
    trainer.train(
        family(),
        optimizer,
        config,
        workdir,
        mesh_config=mesh_config,
        devices=devices,
        progress=False,
    )
    from mgcore.metrics import read_metrics

    losses = [r["loss"] for r in read_metrics(workdir) if "loss" in r]
    mesh = sharding.make_mesh(mesh_config, devices)
    plan = trainer.init_state(family(), optimizer, config, mesh)
    with Checkpointer(f"{workdir}/checkpoints", save_every=1) as ckpt:
        state, _ = ckpt.restore(abstract_state=plan.abstract)
    named = {**_named(state["params"]), **_named(state["rest"])}
    specs = {name: str(leaf.sharding.spec) for name, leaf in named.items() if name in NAMES}
    if family is LoRAFamily:  # the frozen base weights are the base's, untouched
        base = family().initial_weights()
        specs["trainable"] = sorted({n.rsplit(".", 1)[1] for n in _named(state["params"])})
        specs["base_kept"] = all(np.array_equal(np.asarray(named[n]), base[n]) for n in base)
    return losses, specs


def _named(state):
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        out[".".join(k for k in keys if k != "value")] = leaf
    return out


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        sharded, specs = run(sharding.MeshConfig(data=2, fsdp=2, tensor=2), jax.devices(), a)
        single, _ = run(sharding.MeshConfig(), jax.devices()[:1], b)
    with tempfile.TemporaryDirectory() as a:  # the mesh math is checked above: once here
        mesh = sharding.MeshConfig(data=2, fsdp=2, tensor=2)
        lora_sharded, lora_specs = run(mesh, jax.devices(), a, LoRAFamily)
    with open(out, "w") as f:
        json.dump({"sharded": sharded, "single": single, "specs": specs,
                   "lora_sharded": lora_sharded, "lora_specs": lora_specs}, f)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
