"""Token-LM sampling speed on CPU: our JAX sampler against transformers' MusicGen.

Both frameworks run the same decoder with the same weights: a random transformers
`MusicgenForConditionalGeneration` (its text encoder and codec are tiny stand-ins that never
run) is converted with `musicgen.lm.hf_import.lm_from_hf_model`. Shapes: "tiny" (8 layers,
512 wide, 8 heads) and "small" (MusicGen-small: 24 layers, 1024 wide, 16 heads, ffn 4096),
both over EnCodec 32 kHz's 4 codebooks x 2048 at 50 frames/s with the delay pattern
(F frames take F + 3 steps), conditioned on 20 text states of T5-base's width (768).

Each measurement samples `--seconds` of audio (the small shape: `--small-frames`) for
batch 1 and batch 4 with classifier-free guidance (coefficient 3: the conditional and
unconditional rows batched, 2 x batch rows through the decoder), top-k 250, temperature 1:

- ours: `sampling.generate_codes` (one window: the whole loop in one `lax.scan`), with the
  float32 weights and with `LanguageModel.with_weights("bfloat16")` (computing in
  bfloat16) and `("int8")` (int8 x int8 products of per-row quantised activations,
  int32 accumulation: `musicgen.lm.dense.int8_matmul`), both with their kernels in
  panels (`musicgen.lm.dense.to_panels`); compilation happens in an untimed warm-up call;
- transformers: the decoder's own sampling loop, `MusicgenForCausalLM.generate` on the
  composite's `decoder`, given the projected text states (`enc_to_dec_proj`, zeroed under
  the mask, zero rows for the unconditional half: what the composite's `generate` computes
  before it calls the same loop; the composite itself would also decode audio). It needs
  an explicit `EncoderDecoderCache`: without one, transformers 5.x gives the decoder-only
  class a plain `DynamicCache` and the cross-attention keys land in the self-attention
  cache; and an all-ones `attention_mask`: without one, `generate` masks out the start
  step, whose token is also the pad id (the composite passes no decoder mask, as ours).
  Greedy decoding with guidance then gives the same codes in both (checked on the tiny
  shape). `torch.set_num_threads` equals the cores JAX's CPU client uses, and PyTorch is
  also timed with one thread (on a shared machine OpenMP threads that wait on each other
  can make PyTorch's multi-threaded runs many times slower).

All contenders run interleaved, `--repeats` times after the warm-up, and medians are
reported. Also printed: the machine's memory read bandwidth (measured in the same run)
and the bandwidth roofline of one decoding step; a profile of our decode step (the scan
against a jitted `decode_step` called from Python, the cost of a longer window, and the
buffers XLA materialises per step, read off the compiled HLO); the peak RSS of generating
30 s and 2 minutes at batch 4 with guidance (tiny shape, sliding 30 s windows with
MusicGen's 18 s stride) in fresh subprocesses; last, the speed ratios ours / transformers.

The shapes and both samplers are in `bench/_lm_models.py`; the bandwidth, the roofline and
the profile in `bench/_lm_roofline.py`.

    .venv/bin/python bench/lm_sampling.py [--shapes tiny,small] [--seconds 5]
        [--small-frames 100] [--repeats 3] [--torch-threads 2,1] [--memory-seconds 30,120]
        [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Python puts this script's folder first on sys.path, where bench/codec.py would shadow the
# `codec` package that `musicgen.lm.hf_import` imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench._lm_models import (  # noqa: E402
    BATCHES,
    CARD,
    CFG,
    FRAME_RATE,
    PROBE_FRAMES,
    SHAPES,
    STRIDE_SECONDS,
    TOP_K,
    VARIANTS,
    WINDOW_SECONDS,
    K,
    _label,
    _seconds,
    _text,
    hf_generate,
    hf_musicgen,
    ours_generate,
    tiny_lm_config,
)
from bench._lm_roofline import print_roofline, profile, read_bandwidth  # noqa: E402
from bench._memory import peak, run_child, status_kib  # noqa: E402


# ---------------------------------------------------------------------------- speed
def speed(shape: str, frames: int, repeats: int, torch_threads: list[int], jax_threads: int):
    """Median seconds of every contender at batch 1 and 4 (same weights everywhere).

    Returns (times, notes, models): times[(batch, name)] = median seconds, where name is
    an our-weights variant or ("torch", n); notes: lines to print; models: ours by variant.
    """
    import torch

    from musicgen.lm.api import LanguageModel
    from musicgen.lm.hf_import import lm_from_hf_model
    from musicgen.text import TextConfig

    hf = hf_musicgen(shape)
    ours = LanguageModel(lm_from_hf_model(hf), TextConfig(), frames / FRAME_RATE, FRAME_RATE)
    models = {w: ours.with_weights(w).model for w in VARIANTS}
    notes = []
    if shape == "tiny":  # same weights, same work: greedy codes agree
        text, mask = _text(2, seed=1)
        a = ours_generate(models["float32"], text, mask, 20, "float32", temperature=0.0)
        torch.set_num_threads(1)
        b = hf_generate(hf, text, mask, 20, greedy=True)
        notes.append(
            f"[{shape}] greedy decoding with guidance, batch 2 x 20 frames: codes equal to "
            f"transformers': {100 * np.mean(a == b):.1f}%"
        )
        notes.append(format_cross_entropy(shape, models))
    times = {}
    for batch in BATCHES:
        text, mask = _text(batch)
        runs = {
            w: functools.partial(ours_generate, m, text, mask, frames, VARIANTS[w])
            for w, m in models.items()
        }
        for n in torch_threads:
            runs["torch", n] = functools.partial(hf_generate, hf, text, mask, frames)
        # A short probe first: on a shared machine PyTorch's OpenMP threads can run many
        # times slower than one thread, and a whole generation would then take many minutes.
        slowest, fastest = max(torch_threads), min(torch_threads)
        probe = functools.partial(hf_generate, hf, text, mask, PROBE_FRAMES)
        probes = {}
        for n in [fastest, *torch_threads]:  # the first call only warms PyTorch up
            torch.set_num_threads(n)
            probes[n] = _seconds(probe)
        timed = dict(runs)
        if slowest != fastest and probes[slowest] > 3 * probes[fastest]:
            del timed["torch", slowest]
            notes.append(
                f"[{shape}] batch {batch}: PyTorch at {slowest} threads took "
                f"{probes[slowest]:.1f} s for a {PROBE_FRAMES}-frame probe against "
                f"{probes[fastest]:.1f} s at {fastest} thread (its OpenMP threads contend with "
                "other jobs); its row is that probe's rate, not a full generation"
            )
            times[batch, ("torch", slowest)] = probes[slowest] * (frames + K) / (PROBE_FRAMES + K)
        for name, run in timed.items():  # compiles ours; warms PyTorch's allocator
            torch.set_num_threads(name[1] if isinstance(name, tuple) else 1)
            run()
        samples = {name: [] for name in timed}
        for _ in range(repeats):
            for name, run in timed.items():
                torch.set_num_threads(name[1] if isinstance(name, tuple) else 1)
                samples[name].append(_seconds(run))
        for name, t in samples.items():
            times[batch, name] = statistics.median(t)
    torch.set_num_threads(jax_threads)
    del hf
    return times, notes, models


def format_cross_entropy(shape: str, models: dict, rows: int = 4, frames: int = 100) -> str:
    """Each format's cross-entropy on held-out samples of the float32 model (other text
    states than the timed runs': `rows` x `frames`, drawn with guidance), teacher-forced
    with their own captions (`musicgen.lm.family.cross_entropy`)."""
    from flax import nnx

    from musicgen.lm.family import cross_entropy

    text, mask = _text(rows, seed=7)
    codes = ours_generate(models["float32"], text, mask, frames, "float32")
    batch = dict(codes=codes, length=np.full(rows, frames, np.int32), text=text, text_mask=mask)
    score = nnx.jit(cross_entropy, static_argnums=2)
    ce = {w: float(score(m, batch, VARIANTS[w])[0].mean()) for w, m in models.items()}
    line = ", ".join(f"{w} {v:.4f} ({100 * (v / ce['float32'] - 1):+.2f}%)" for w, v in ce.items())
    return (
        f"[{shape}] cross-entropy (nats/token) on {rows} x {frames} frames the float32 model "
        f"sampled from held-out text states: {line}; uniform over {CARD} codes: "
        f"{math.log(CARD):.4f}"
    )


def print_table(shape: str, frames: int, times: dict) -> None:
    steps = frames + K - 1
    print(
        f"[{shape}] {frames} frames = {frames / FRAME_RATE:g} s per row ({steps} steps), guidance "
        f"{CFG:g} (2 x batch rows), top-k {TOP_K}"
    )
    head = (
        f"{'shape':6s} {'batch':>5s}  {'framework / weights':34s} {'steps/s':>8s} "
        f"{'tokens/s':>9s} {'codebook tok/s':>14s} {'x real time':>11s} {'audio s/s':>9s}"
    )
    print(head)
    for (batch, name), t in times.items():
        print(
            f"{shape:6s} {batch:5d}  {_label(name):34s} {steps / t:8.1f} {steps * batch / t:9.1f} "
            f"{frames * K * batch / t:14.0f} {frames / FRAME_RATE / t:11.2f} "
            f"{batch * frames / FRAME_RATE / t:9.2f}"
        )
    print(
        "  (tokens/s: decoding steps x batch; codebook tok/s: frames x 4 codebooks x batch; "
        "x real time: audio seconds per wall second per row, 1.0 = 50 frames/s; audio s/s: "
        "the whole batch)"
    )


# ---------------------------------------------------------------------------- memory
def memory_child(seconds: float, window: int) -> None:
    """Generates `seconds` at the tiny shape, batch 4 with guidance; prints JSON."""
    import jax.numpy as jnp  # noqa: F401  (imports counted in the base RSS)
    from flax import nnx

    from musicgen.lm.model import MusicGenLM
    from musicgen.lm.sampling import SamplingConfig, generate_codes

    with nnx.use_eager_sharding(False):
        model = MusicGenLM(tiny_lm_config(), rngs=nnx.Rngs(0))
    text, mask = _text(4)
    frames = round(seconds * FRAME_RATE)
    stride = max(1, round(window * STRIDE_SECONDS / WINDOW_SECONDS))
    base = status_kib("VmRSS:")
    start = time.perf_counter()
    codes = generate_codes(
        model,
        text,
        mask,
        frames,
        sampling=SamplingConfig(top_k=TOP_K, cfg_coef=CFG),
        window=window,
        stride=stride,
    )
    wall = time.perf_counter() - start
    assert codes.shape == (4, K, frames), codes.shape
    windows = 1 + max(0, math.ceil((frames - window) / stride))
    print(
        json.dumps(
            dict(
                **peak(),
                base_mib=base / 1024,
                wall=wall,
                windows=windows,
                stride=stride,
            )
        )
    )


def memory(seconds: float, window: int) -> dict:
    """`memory_child` in a fresh process (`bench/_memory.py`: call while this one is small)."""
    return run_child(__file__, "--memory-child", str(seconds), "--window", str(window))


def print_memory(lengths: list[float], window: int) -> None:
    s = SHAPES["tiny"]
    cache = 2 * s["layers"] * 8 * (window + K - 1) * s["dim"] * 4
    for seconds in lengths:
        m = memory(seconds, window)
        print(
            f"[tiny] memory, batch 4 with guidance, window {window} frames "
            f"({window / FRAME_RATE:g} s), stride {m['stride']} frames: {seconds:g} s of output "
            f"({m['windows']} window{'s' if m['windows'] > 1 else ''}) in a fresh process: peak "
            f"RSS {m['peak_mib']:.0f} MiB (VmHWM {m['hwm_mib']:.0f} MiB; {m['base_mib']:.0f} MiB "
            f"before generating), {m['wall']:.1f} s with compilation"
        )
    print(
        f"[tiny] one window's KV cache: 2 x {s['layers']} layers x 8 rows x {window + K - 1} steps "
        f"x {s['dim']} x 4 B = {cache / 2**20:.0f} MiB; memory grows with the window, not with "
        "the output's length"
    )


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,small", help="comma-separated: tiny,small")
    parser.add_argument("--seconds", type=float, default=5.0, help="audio per row (tiny)")
    parser.add_argument("--small-frames", type=int, default=100, help="frames per row (small)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--torch-threads", default="", help="e.g. 2,1 (default: JAX's cores, 1)")
    parser.add_argument("--memory-seconds", default="30,120", help="output lengths; '' for none")
    parser.add_argument("--window", type=int, default=round(WINDOW_SECONDS * FRAME_RATE))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny, 1 s, 1 repeat, torch 1 thread, 1 s windows for 1 s and 4 s",
    )
    parser.add_argument("--memory-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.window)
        return
    threads = len(os.sched_getaffinity(0))  # XLA's CPU client runs one thread per core
    shapes = [s for s in args.shapes.split(",") if s]
    torch_threads = sorted({threads, 1}, reverse=True)
    if args.torch_threads:
        torch_threads = [int(x) for x in args.torch_threads.split(",")]
    lengths = [float(x) for x in args.memory_seconds.split(",") if x]
    frames = {"tiny": round(args.seconds * FRAME_RATE), "small": args.small_frames}
    if args.quick:
        shapes, args.repeats, torch_threads = ["tiny"], 1, [1]
        frames, lengths, args.window = {"tiny": 50}, [1.0, 4.0], 50
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; choose from {sorted(SHAPES)}")

    if lengths:  # first, while this process is small (see `memory`)
        print_memory(lengths, args.window)

    warnings.filterwarnings("ignore")
    import jax
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    print(
        f"device: {jax.devices()[0].platform}, {threads} cores (JAX's CPU client: one thread per "
        f"core); torch.set_num_threads({threads}) to match, PyTorch also timed at "
        f"{torch_threads}; medians of {args.repeats} interleaved runs after a warm-up call "
        "(compilation excluded); weights identical in both (hf_import.lm_from_hf_model)"
    )
    bw = read_bandwidth(threads)
    bandwidth = max(bw.values())
    print(
        "memory read bandwidth (sum of a 512 MiB float32 array): "
        + ", ".join(f"{name} {gbs:.1f} GB/s" for name, gbs in bw.items())
        + f"; the roofline uses the best, {bandwidth:.1f} GB/s"
    )
    results, shares = {}, {}
    for shape in shapes:
        times, notes, models = speed(shape, frames[shape], args.repeats, torch_threads, threads)
        results[shape] = times
        for line in notes:
            print(line)
        print_table(shape, frames[shape], times)
        shares[shape] = print_roofline(shape, frames[shape], times, bandwidth)
        if shape == "tiny":
            scans = {w: times[4, w] for w in VARIANTS}
            profile(shape, models, 4, frames[shape], scans)
        del models
    for shape in shapes:
        summary(shape, frames[shape], results[shape], shares[shape], torch_threads, threads)


def summary(shape, frames, times, shares, torch_threads, threads) -> None:
    """What a user asks, batch 1 with guidance: each format's steps/s, x real time and
    share of its ceiling, int8 against bfloat16, float32 against transformers at equal
    threads, and last the fastest format against transformers at its faster threads."""
    steps = frames + K - 1
    rate = {name: steps / t for (batch, name), t in times.items() if batch == 1}
    line = ", ".join(
        f"{w} {rate[w]:.1f} steps/s ({frames / FRAME_RATE / times[1, w]:.2f}x real time, "
        f"{100 * shares[1, w]:.0f}% of its ceiling)"
        for w in VARIANTS
    )
    print(f"[{shape}] batch 1 with guidance: {line}")
    print(f"[{shape}] batch 1: int8 / bfloat16 {rate['int8'] / rate['bfloat16']:.2f}x")
    for batch in BATCHES:
        ours = times[batch, "float32"]
        theirs = {n: times[batch, ("torch", n)] for n in torch_threads}
        equal = f"{theirs[threads] / ours:.2f}x" if threads in theirs else "not timed"
        print(
            f"[{shape}] batch {batch}: speedup ours float32 / transformers, same weights, at "
            f"{threads} threads each: {equal}; against PyTorch at its faster thread count: "
            f"{min(theirs.values()) / ours:.2f}x"
        )
    best = max(VARIANTS, key=rate.get)
    torch_best = max(rate[("torch", n)] for n in torch_threads)
    print(
        f"[{shape}] batch 1 with guidance: speedup ours {best} (fastest) / transformers at its "
        f"faster thread count: {rate[best] / torch_best:.2f}x"
    )


if __name__ == "__main__":
    main()
