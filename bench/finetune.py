"""Fine-tuning cost: LoRA against full fine-tuning of the same LM, side by side.

One training step (forward, backward, clipping, AdamW) of MusicGen's decoder at a
`--shape` of `bench/_lm_models.py` (`small`: 24 layers, 1024 wide, MusicGen-small's
300M parameters; `tiny`) with 4 codebooks x 2048 and 20 text states of T5-base's width,
through the repository's trainer pieces (`mgcore.trainer.init_state`,
`make_train_step`), as `musicgen finetune` runs it:

- full: every weight trained;
- LoRA: rank `--rank` adapters on every attention and MLP projection
  (`musicgen/lm/lora.py`), every other weight a `FrozenParam` (no gradient, no moments).

For each: the trainable parameters, the training state's bytes (weights, frozen weights,
optimiser moments), the compiled step's memory from XLA's `memory_analysis()`
(arguments plus temporaries: what one device must hold), the process's peak resident
memory after the run, and the median step time over `--steps` timed steps after one
untimed (compiling) step, interleaved. The last line is LoRA / full for memory and time.

    .venv/bin/python bench/finetune.py [--shape small] [--seconds 2] [--batch 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_models():
    spec = importlib.util.spec_from_file_location("_lm_models", _HERE / "_lm_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_S = _load_models()
TEXT_DIM, TEXT_LEN = 768, 20


class _Family:
    """The decoder as `musicgen finetune` trains it: all of it, or its adapters only."""

    def __init__(self, config, lora: bool):
        self.config, self.lora = config, lora

    def create_model(self, rngs):
        from musicgen.lm.lora import freeze_base
        from musicgen.lm.model import MusicGenLM

        model = MusicGenLM(self.config, rngs=rngs)
        return freeze_base(model) if self.lora else model

    def loss(self, model, batch, rng):
        from musicgen.lm.family import cross_entropy

        del rng
        ce_K, _ = cross_entropy(model, batch)
        return ce_K.mean(), {"ce": ce_K}

    def data(self):
        raise NotImplementedError("the benchmark feeds one fixed batch")


def _config(shape: str, rank: int):
    from musicgen.lm.lora import LoRAConfig
    from musicgen.lm.model import LMConfig

    s = _S.SHAPES[shape]
    config = LMConfig(num_codebooks=_S.K, card=_S.CARD, num_layers=s["layers"], dim=s["dim"],
                      num_heads=s["heads"], ffn_dim=s["ffn"], text_dim=TEXT_DIM)  # fmt: skip
    return config, dataclasses.replace(config, lora=LoRAConfig(rank=rank, alpha=2.0 * rank))


def _contender(config, lora: bool, batch: dict, steps: int):
    import jax
    import jax.numpy as jnp

    from mgcore.optim import OptimizerConfig
    from mgcore.sharding import MeshConfig, make_mesh
    from mgcore.trainer import TrainConfig, init_state, make_train_step, step_memory

    family = _Family(config, lora)
    optimizer = OptimizerConfig(learning_rate=1e-4, schedule="constant", grad_clip_norm=1.0)
    plan = init_state(family, optimizer, TrainConfig(steps=steps + 1), make_mesh(MeshConfig()))
    state = plan.init()
    step = make_train_step(plan.graphdef, family.loss, plan.tx, plan.schedule,
                           state_shardings=plan.shardings)  # fmt: skip
    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    memory = step_memory(step, state, device_batch)

    def size(tree) -> int:
        return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))

    info = {
        "trainable": int(sum(x.size for x in jax.tree.leaves(state["params"]))),
        "state_mb": (size(state["params"]) + size(state["rest"]) + size(state["opt_state"])) / 1e6,
        "step_mb": memory["memory/step_total_bytes"] / 1e6,
    }
    holder = {"state": state}

    def run() -> float:
        holder["state"], metrics = step(holder["state"], device_batch)
        return float(metrics["loss"])

    return info, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(_S.SHAPES), default="small")
    parser.add_argument("--seconds", type=float, default=2.0, help="training window")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps each")
    args = parser.parse_args()

    import resource

    full_config, lora_config = _config(args.shape, args.rank)
    frames = round(args.seconds * _S.FRAME_RATE)
    rng = np.random.default_rng(0)
    batch = {
        "codes": rng.integers(0, _S.CARD, (args.batch, _S.K, frames)).astype(np.int32),
        "length": np.full((args.batch,), frames, np.int32),
        "text": rng.normal(size=(args.batch, TEXT_LEN, TEXT_DIM)).astype(np.float32),
        "text_mask": np.ones((args.batch, TEXT_LEN), bool),
    }
    print(f"shape {args.shape}, batch {args.batch} x {args.seconds:g} s ({frames} frames), "
          f"LoRA rank {args.rank}, float32, CPU")  # fmt: skip
    contenders = {}
    for name, config, lora in (("full", full_config, False), ("lora", lora_config, True)):
        info, run = _contender(config, lora, batch, args.steps)
        run()  # compiles
        contenders[name] = (info, run, [])
    for _ in range(args.steps):
        for _, run, times in contenders.values():
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print("| fine-tuning | trainable parameters | state MB | XLA step memory MB | s/step |")
    print("| --- | --- | --- | --- | --- |")
    for name, (info, _, times) in contenders.items():
        print(f"| {name} | {info['trainable']:,} | {info['state_mb']:.0f} | "
              f"{info['step_mb']:.0f} | {statistics.median(times):.2f} |")  # fmt: skip
    print(f"process peak resident memory (both): {peak:.0f} MB")
    full, lora = contenders["full"], contenders["lora"]
    print(f"LoRA / full: step memory {lora[0]['step_mb'] / full[0]['step_mb']:.2f}x, "
          f"state {lora[0]['state_mb'] / full[0]['state_mb']:.2f}x, time "
          f"{statistics.median(lora[2]) / statistics.median(full[2]):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
