"""Token-LM training speed on CPU: our decoder's train step against the same model in PyTorch.

One training step (forward, backward, gradient clipping to norm 1, AdamW) of the `tiny`
bench decoder of `lm_sampling.py` (8 layers, 512 wide, 8 heads, 4 codebooks x 2048, text
states of T5-base's width 768 x 20 tokens) on a batch of 4 x `--seconds` (10 s: 500
frames, 503 delay-pattern steps), float32, with the same weights in both frameworks (a
random transformers `MusicgenForConditionalGeneration`, converted with
`musicgen.lm.hf_import.lm_from_hf_model`; its text encoder and codec never run):

- ours: the repository's trainer pieces, `mgcore.trainer.init_state` and
  `make_train_step` (jitted, state donated; AdamW with clipping and the non-finite guard
  of `mgcore.optim`) over a small family whose loss is `musicgen.lm.family.cross_entropy`,
  once per `LMConfig.attention` ("full", "chunked", and "auto": `musicgen.lm.attention`'s
  choice by sequence length, so it times the same as one of the other two);
- PyTorch: the composite's forward with `encoder_outputs` (the text states) and `labels`
  (the interleaved codes, transformers' per-codebook cross-entropy over real frames,
  averaged over codebooks: the same loss as ours), `loss.backward()`,
  `clip_grad_norm_(1.0)` and `torch.optim.AdamW` over the decoder and `enc_to_dec_proj`.
  `torch.set_num_threads` equals the cores JAX uses; it is also timed with one thread
  (OpenMP threads on a shared machine can wait on each other for longer than the work).

The first step's losses are printed side by side (same weights, same batch: they agree).
Steps are interleaved across contenders after `--warmup` untimed steps (compilation),
and the medians of `--steps` timed steps are reported; the last line is the speed ratio
ours / PyTorch.

    .venv/bin/python bench/lm_train.py [--seconds 10] [--batch 4] [--steps 5] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# bench/codec.py would shadow the `codec` package from this script's folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _load_sampling_bench():
    """`bench/_lm_models.py` as a module: the shared shapes and the transformers model."""
    spec = importlib.util.spec_from_file_location("_lm_models", _HERE / "_lm_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_S = _load_sampling_bench()
K, CARD, FRAME_RATE = _S.K, _S.CARD, _S.FRAME_RATE
LEARNING_RATE, WEIGHT_DECAY, CLIP = 1e-4, 0.01, 1.0


def make_batch(batch: int, frames: int, seed: int = 0) -> dict:
    """Random codes `[B, K, F]` (all frames real) and text states `[B, 20, 768]`."""
    text, mask = _S._text(batch, seed)
    codes = np.random.default_rng(seed).integers(0, CARD, (batch, K, frames), dtype=np.int32)
    return {
        "codes": codes,
        "length": np.full((batch,), frames, np.int32),
        "text": text,
        "text_mask": mask,
    }


class _Family:
    """The trainer's view of the decoder: a model and `musicgen.lm.family.cross_entropy`."""

    def __init__(self, config):
        self.config = config

    def create_model(self, rngs):
        from musicgen.lm.model import MusicGenLM

        return MusicGenLM(self.config, rngs=rngs)

    def loss(self, model, batch, rng):
        from musicgen.lm.family import cross_entropy

        del rng
        ce_K, _ = cross_entropy(model, batch)
        return ce_K.mean(), {"ce": ce_K}

    def data(self):
        raise NotImplementedError("the benchmark feeds one fixed batch")


def ours_trainer(model, attention: str, batch: dict):
    """A `() -> loss` closure running our train step on `batch`, starting at `model`'s weights."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mgcore.optim import OptimizerConfig
    from mgcore.sharding import MeshConfig, make_mesh
    from mgcore.trainer import TrainConfig, init_state, make_train_step

    config = dataclasses.replace(model.config, attention=attention)
    optimizer = OptimizerConfig(
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        schedule="constant",
        grad_clip_norm=CLIP,
    )
    plan = init_state(_Family(config), optimizer, TrainConfig(steps=1000), make_mesh(MeshConfig()))
    state = plan.init()
    params = nnx.split(model, nnx.Param, ...)[1]
    state["params"] = jax.device_put(
        jax.tree.map(jnp.copy, params), plan.shardings["params"]
    )  # the converted weights, not the trainer's random ones
    step = make_train_step(
        plan.graphdef, _Family(config).loss, plan.tx, plan.schedule, state_shardings=plan.shardings
    )
    device_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    holder = {"state": state}

    def run() -> float:
        holder["state"], metrics = step(holder["state"], device_batch)
        return float(metrics["loss"])  # waits for the step

    return run


def torch_trainer(hf, batch: dict):
    """A `() -> loss` closure running a PyTorch AdamW step of the composite on `batch`."""
    import torch

    from musicgen.lm.patterns import Pattern, PatternConfig

    codes = batch["codes"]
    pattern = Pattern(PatternConfig(), K)
    steps = pattern.steps(codes.shape[-1])
    seq_BxKxS = pattern.interleave(codes, CARD, steps)
    labels = torch.from_numpy(np.ascontiguousarray(seq_BxKxS.transpose(0, 2, 1))).long()
    text = torch.from_numpy(batch["text"])
    mask = torch.from_numpy(batch["text_mask"]).long()
    params = [*hf.decoder.parameters(), *hf.enc_to_dec_proj.parameters()]
    opt = torch.optim.AdamW(
        params, lr=LEARNING_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=WEIGHT_DECAY
    )
    hf.train()

    def run() -> float:
        opt.zero_grad(set_to_none=True)
        loss = hf(encoder_outputs=(text,), attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return float(loss.detach())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per row")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--attention", default="full,chunked,auto", help="our attention impls")
    parser.add_argument("--torch-threads", default="", help="e.g. 2,1 (default: JAX's cores, 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batch 2 x 1 s, 1 warm-up + 1 timed step, full and auto, torch 1 thread",
    )
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))  # XLA's CPU client runs one thread per core
    torch_threads = sorted({threads, 1}, reverse=True)
    if args.torch_threads:
        torch_threads = [int(x) for x in args.torch_threads.split(",")]
    attentions = [a for a in args.attention.split(",") if a]
    if args.quick:
        args.seconds, args.batch, args.steps, args.warmup = 1.0, 2, 1, 1
        attentions, torch_threads = ["full", "auto"], [1]

    warnings.filterwarnings("ignore")
    import jax
    import torch
    import transformers

    from musicgen.lm.hf_import import lm_from_hf_model

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    frames = round(args.seconds * FRAME_RATE)
    steps = frames + K - 1
    batch = make_batch(args.batch, frames)
    hf = _S.hf_musicgen("tiny")
    model = lm_from_hf_model(hf)  # before PyTorch's first update changes hf's weights
    print(
        f"device: {jax.devices()[0].platform}, {threads} cores (JAX's CPU client: one thread per "
        f"core); torch.set_num_threads({threads}) to match, PyTorch also timed at "
        f"{torch_threads}; tiny decoder (8 x 512, 8 heads, ffn 2048, 4 x 2048 codebooks), "
        f"batch {args.batch} x {frames} frames ({steps} steps), text 20 x 768, float32; AdamW "
        f"lr {LEARNING_RATE:g}, weight decay {WEIGHT_DECAY:g}, clip {CLIP:g}; medians of "
        f"{args.steps} interleaved steps after {args.warmup} warm-up steps"
    )
    runs = {}
    for attention in attentions:
        runs["ours", attention] = ours_trainer(model, attention, batch)
    for n in torch_threads:
        runs["torch", n] = torch_trainer(hf, batch)  # one model and optimiser, stepped by all
    first, warm = {}, {}
    for name, run in runs.items():
        torch.set_num_threads(name[1] if name[0] == "torch" else threads)
        start = time.perf_counter()
        first[name] = run()
        warm[name] = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            run()
    ours_first = [v for (who, _), v in first.items() if who == "ours"]
    torch_first = first["torch", torch_threads[0]]
    print(
        f"first-step loss (same weights, same batch): ours {ours_first[0]:.6f}, PyTorch "
        f"{torch_first:.6f} (|diff| {abs(ours_first[0] - torch_first):.1e}); compile + first "
        "step: " + ", ".join(f"{_label(n)} {t:.1f} s" for n, t in warm.items())
    )
    times = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, run in runs.items():
            torch.set_num_threads(name[1] if name[0] == "torch" else threads)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'contender':38s} {'s/step':>7s} {'positions/s':>11s} {'codebook tok/s':>14s}")
    for name, t in medians.items():
        print(
            f"{_label(name):38s} {t:7.3f} {args.batch * steps / t:11.0f} "
            f"{args.batch * frames * K / t:14.0f}"
        )
    print("  (positions/s: batch x delay-pattern steps; codebook tok/s: batch x frames x 4)")
    ours_best = min((t, n) for n, t in medians.items() if n[0] == "ours")
    theirs = {n: medians["torch", n] for n in torch_threads}
    for name, t in medians.items():
        if name[0] == "ours" and threads in theirs:
            print(
                f"ours ({name[1]}) / PyTorch at {threads} threads: {theirs[threads] / t:.2f}x; "
                f"against PyTorch at its faster thread count: {min(theirs.values()) / t:.2f}x"
            )
    print(
        f"speedup ours (best attention: {ours_best[1][1]}) / PyTorch at its faster thread count "
        f"(conservative): {min(theirs.values()) / ours_best[0]:.2f}x"
    )


def _label(name) -> str:
    return f"PyTorch, {name[1]} threads" if name[0] == "torch" else f"ours, attention {name[1]}"


if __name__ == "__main__":
    main()
