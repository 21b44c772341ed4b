"""Attention speed on CPU: `musicgen.lm.attention`'s formulations against PyTorch's SDPA.

Causal self-attention at MusicGen-like shapes (B, T, H, D): "tiny" (8, 500, 8, 32), the
small LM (4, 1500, 16, 64) and "long" (2, 3000, 16, 64: a 60 s clip at 50 steps/s).
Contenders: `dot_product_attention` with impl "full" (materialises the `[B, H, T, S]`
scores), "chunked" (FlashAttention-2 style; blocks of `attention.block_size` unless
`--block-q`/`--block-k` say otherwise) and "xla" (`jax.nn.dot_product_attention`), each
jitted and timed after a warm-up call (compile time excluded); and
`torch.nn.functional.scaled_dot_product_attention(is_causal=True)` with
`torch.set_num_threads` at the cores JAX uses and at one (on a machine shared with other
jobs, OpenMP threads that wait on each other can make PyTorch's multi-threaded runs
slower than its single-threaded ones). Two modes: "fwd+bwd" (gradients of
`sum(o * w)` w.r.t. q, k and v: a training step's attention) and "fwd" (prefill at
decode time; PyTorch under `inference_mode`). Float32 inputs. All contenders run
`--repeats` times, interleaved so that all see the same background load, after one
untimed round; medians are reported. Before timing, each output is checked against
"full" (max |difference|). Peak memory: one fwd+bwd per contender in a fresh process,
compiled first, as the growth of its resident set (VmHWM after the call - VmRSS before).

The ratio lines come last: chunked's speed-up over full per shape and mode, then JAX's
best against PyTorch's faster thread setting (the conservative figure), the long shape's
fwd+bwd last.

    .venv/bin/python bench/attention.py [--shapes tiny small long] [--repeats 5]
                                        [--impls full chunked xla] [--block-q N]
                                        [--block-k N] [--no-memory] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Python puts this script's folder first on sys.path; keep imports to the repository's.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

SHAPES = {  # name: (B, T, H, D)
    "tiny": (8, 500, 8, 32),
    "small": (4, 1500, 16, 64),
    "long": (2, 3000, 16, 64),
    "smoke": (2, 100, 2, 16),
}
MODES = ("fwd+bwd", "fwd")


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def jax_runs(shape, impls, block_q, block_k) -> tuple[dict, dict, tuple]:
    """Compiled callables per (impl, mode), each impl's forward output, and the inputs."""
    import jax
    import jax.numpy as jnp

    from musicgen.lm.attention import dot_product_attention

    b, t, h, d = shape
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v, w = (jax.random.normal(key, (b, t, h, d), jnp.float32) for key in keys)
    runs, outputs = {}, {}
    for impl in impls:

        def attend(q, k, v, impl=impl):
            return dot_product_attention(
                q, k, v, causal=True, impl=impl, block_q=block_q, block_k=block_k
            )

        fwd = jax.jit(attend)
        grad = jax.jit(jax.grad(lambda q, k, v, f=attend: (f(q, k, v) * w).sum(), (0, 1, 2)))
        outputs[impl] = np.asarray(fwd(q, k, v))
        jax.block_until_ready(grad(q, k, v))
        runs[impl, "fwd"] = lambda f=fwd: jax.block_until_ready(f(q, k, v))
        runs[impl, "fwd+bwd"] = lambda g=grad: jax.block_until_ready(g(q, k, v))
    return runs, outputs, tuple(np.asarray(x) for x in (q, k, v, w))


def torch_runs(arrays, threads: list[int]) -> tuple[dict, np.ndarray]:
    """Callables per (contender, mode) with their thread count, and SDPA's forward output."""
    import torch
    import torch.nn.functional as F

    q, k, v, w = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1, 3))) for a in arrays)
    qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

    def fwd_bwd():
        o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True)
        qg.grad = kg.grad = vg.grad = None
        (o * w).sum().backward()

    def fwd():
        with torch.inference_mode():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    out = fwd().numpy().transpose(0, 2, 1, 3)
    runs = {}
    for n in threads:
        runs[f"torch{n}", "fwd"] = (n, fwd)
        runs[f"torch{n}", "fwd+bwd"] = (n, fwd_bwd)
    return runs, out


def measure(shape, args, threads) -> tuple[dict, dict]:
    """Median seconds per (contender, mode), and each output's max |diff| to the reference
    (full's output, or the first impl's)."""
    import torch

    runs, outputs, arrays = jax_runs(shape, args.impls, args.block_q, args.block_k)
    truns, outputs["torch"] = torch_runs(arrays, threads)
    ref = outputs["full" if "full" in outputs else args.impls[0]]
    errors = {name: float(np.abs(o - ref).max()) for name, o in outputs.items()}
    times = {name: [] for name in [*runs, *truns]}
    for _ in range(args.repeats + 1):  # the first round is an untimed warm-up
        for name, run in runs.items():
            times[name].append(_seconds(run))
        for name, (n, run) in truns.items():
            torch.set_num_threads(n)
            times[name].append(_seconds(run))
    return {name: statistics.median(t[1:]) for name, t in times.items()}, errors


def _status_mib(field: str) -> float:
    line = next(
        x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field)
    )
    return int(line.split()[1]) / 1024


def memory_child(impl: str, shape: str) -> None:
    """One fwd+bwd of `impl` ("torch" for SDPA) at `shape`, compiled beforehand; prints
    the peak resident memory it adds, in MiB (VmHWM reset through /proc/self/clear_refs)."""
    b, t, h, d = SHAPES[shape]
    if impl == "torch":
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        q, k, v = (torch.randn(b, h, t, d, requires_grad=True) for _ in range(3))

        def run():
            F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    else:
        import jax
        import jax.numpy as jnp

        from musicgen.lm.attention import dot_product_attention

        q, k, v = (jnp.full((b, t, h, d), 0.1 * i, jnp.float32) for i in range(3))
        loss = lambda q, k, v: dot_product_attention(q, k, v, causal=True, impl=impl).sum()  # noqa: E731
        grad = jax.jit(jax.grad(loss, (0, 1, 2))).lower(q, k, v).compile()

        def run():
            jax.block_until_ready(grad(q, k, v))

    Path("/proc/self/clear_refs").write_text("5")
    base = _status_mib("VmRSS:")
    run()
    print(_status_mib("VmHWM:") - base)


def memory(shapes, contenders) -> dict:
    """Peak MiB added by one fwd+bwd per (shape, contender), each in a fresh process."""
    peaks = {}
    for shape in shapes:
        for impl in contenders:
            cmd = [sys.executable, __file__, "--memory-child", impl, shape]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"memory run {impl} {shape} failed:\n{out.stderr[-3000:]}")
            peaks[shape, impl] = float(out.stdout.strip().splitlines()[-1])
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "small", "long"], choices=SHAPES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--impls", nargs="+", default=["full", "chunked", "xla"], choices=["full", "chunked", "xla"]
    )
    parser.add_argument("--block-q", type=int, help="default: attention.block_size(T)")
    parser.add_argument("--block-k", type=int, help="default: attention.block_size(S)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: a toy shape, 1 repeat")
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("IMPL", "SHAPE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.quick:
        args.shapes, args.repeats = ["smoke"], 1
    # First, while this process holds nothing (each run is a fresh process anyway).
    peaks = {} if args.no_memory else memory(args.shapes, [*args.impls, "torch"])
    import jax

    from musicgen.lm.attention import block_size

    threads = len(os.sched_getaffinity(0))  # XLA's CPU client runs one thread per core
    torch_threads = [1] if args.quick else sorted({threads, 1}, reverse=True)
    print(
        f"device: {jax.devices()[0].platform}, {threads} cores; causal self-attention, "
        "float32; medians of "
        f"{args.repeats} interleaved runs after a warm-up round; JAX jitted (compile time "
        f"excluded); PyTorch SDPA with set_num_threads in {torch_threads}"
    )
    columns = [*args.impls, *(f"torch{n}" for n in torch_threads)]
    header = f"{'shape (B, T, H, D)':<24} {'mode':<8}" + "".join(f"{c:>11}" for c in columns)
    results = {}
    for name in args.shapes:
        shape = SHAPES[name]
        b, t, h, _ = shape
        results[name], errors = measure(shape, args, torch_threads)
        blocks = f"{args.block_q or block_size(t)} x {args.block_k or block_size(t)}"
        mib = b * h * t * t * 4 / 2**20
        print(
            f"[{name}] chunked blocks {blocks}; scores [B, H, T, T] in float32: {mib:.0f} MiB; "
            f"max |o - o_{'full' if 'full' in errors else args.impls[0]}|: "
            + ", ".join(f"{i} {e:.1e}" for i, e in errors.items())
        )
    for name in args.shapes:
        if peaks:
            print(
                f"[{name}] peak memory added by one fwd+bwd (fresh process, after compiling): "
                + ", ".join(f"{i} {peaks[name, i]:.0f} MiB" for i in [*args.impls, "torch"])
            )
    print(header + "   (ms)")
    for name in args.shapes:
        for mode in MODES:
            row = f"{name + ' ' + str(SHAPES[name]):<24} {mode:<8}"
            row += "".join(f"{1e3 * results[name][c, mode]:11.1f}" for c in columns)
            print(row)
    if "full" in args.impls and "chunked" in args.impls:
        for name in args.shapes:
            r = results[name]
            print(
                f"[{name}] speedup chunked / full: fwd+bwd "
                f"{r['full', 'fwd+bwd'] / r['chunked', 'fwd+bwd']:.2f}x, fwd "
                f"{r['full', 'fwd'] / r['chunked', 'fwd']:.2f}x"
            )
    for name in args.shapes:
        r = results[name]
        for mode in reversed(MODES):
            best = min(args.impls, key=lambda i: r[i, mode])
            torch_best = min(r[f"torch{n}", mode] for n in torch_threads)
            print(
                f"[{name}] {mode}: speedup jax ({best}) / pytorch sdpa at its faster thread "
                f"count: {torch_best / r[best, mode]:.2f}x"
            )


if __name__ == "__main__":
    main()
