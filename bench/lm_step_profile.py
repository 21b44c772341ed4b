"""Where one decoding step's time goes: XLA:CPU's profile of our sampler, per kind of work.

`lm_sampling.py` measures steps/s against the bandwidth roofline; this says why the gap
stays. It samples one window (`sampling.generate_window`, the whole loop in one
`lax.scan`) of a random LM of a bench shape (`_lm_models.SHAPES`: "small" is
MusicGen-small) in each weight format, batch 1 with guidance (2 rows), top-k 250, and:

1. times it untraced (median of `--repeats`, compilation excluded);
2. runs it once under `jax.profiler` and sums XLA:CPU's thunks (one per fused kernel) by
   what they do, read off the compiled program's source locations: the products with
   the weights (`dense.py`), activation quantisation and panel broadcasts (`dense.py`,
   int8 and panels), attention over the cache and the text, the cache writes, layer
   norms, GELU, the sampling (guidance, top-k, the draw), the rest. Thunks of the two
   cores overlap and tracing adds overhead, so the shares are of the summed thunk time,
   and the ms/step scale them to the untraced step;
3. prints what the weight products read per step and at what rate, against the
   machine's read bandwidth (`_lm_roofline.read_bandwidth`);
4. with `--kernels`, times one [1024, 4096] product at 2 rows as a chain of 24 distinct
   weights (what a step does) against the same weight 24 times (cache-resident): the
   kernel's own speed without DRAM, and the GEMV XLA:CPU emits for 1 row.

    .venv/bin/python bench/lm_step_profile.py [--shape small] [--frames 100]
        [--weights int8,bfloat16,float32] [--repeats 3] [--kernels]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent  # bench/codec.py would shadow the codec package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bench._lm_models import CARD, CFG, SHAPES, TEXT_DIM, TOP_K, VARIANTS, K, _text  # noqa: E402
from bench._lm_roofline import read_bandwidth  # noqa: E402

# What a thunk does, from the functions on its source stack (first match wins).
KINDS = (
    ("weight products", ("panel_matmul", "_product", "matmul")),
    ("int8 activations, panel broadcasts", ("int8_matmul", "Dense._rows")),
    ("attention (cache and text)", ("_cached_attention",)),
    ("cache writes", ("Block.step",)),
    ("layer norms", ("LayerNorm",)),
    ("GELU", ("Block.mlp",)),
    ("guidance, top-k, the draw", ("sample_logits", "generate_window.<locals>.step")),
)

# XLA:CPU's thunks that run a product (YNNPACK's fusions, XLA's own dot emitter).
PRODUCT_THUNKS = ("ynn_fusion", "xnn_fusion", "dot", "onednn")


def build(shape: str, weights: str):
    """A random LM of `shape` in `weights` (`LanguageModel.with_weights`)."""
    from flax import nnx

    from musicgen.lm.api import LanguageModel
    from musicgen.lm.model import LMConfig, MusicGenLM
    from musicgen.text import TextConfig

    s = SHAPES[shape]
    config = LMConfig(num_codebooks=K, card=CARD, num_layers=s["layers"], dim=s["dim"],
                      num_heads=s["heads"], ffn_dim=s["ffn"], text_dim=TEXT_DIM)  # fmt: skip
    with nnx.use_eager_sharding(False):
        lm = LanguageModel(MusicGenLM(config, rngs=nnx.Rngs(0)), TextConfig(), 1.0, 50.0)
        return lm.with_weights(weights).model


def window_call(model, frames: int, dtype: str):
    """A no-argument call of one compiled window, and its compiled HLO text."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from musicgen.lm.patterns import Pattern
    from musicgen.lm.sampling import (
        SamplingConfig,
        SamplingForm,
        generate_window,
        known_steps,
    )

    graphdef, state = nnx.split(model)
    text, mask = (jnp.asarray(a) for a in _text(1))
    known = jnp.asarray(
        known_steps(Pattern(model.config.pattern, K), None, 1, frames, model.config.special)
    )
    form = SamplingForm.of(SamplingConfig(top_k=TOP_K, cfg_coef=CFG, dtype=dtype))
    values = jnp.asarray([1.0, 0.0, CFG], jnp.float32)
    args = (graphdef, state, text, mask, known, jax.random.key(0), values, None)
    hlo = generate_window.lower(*args, form=form).compile().as_text()
    return lambda: generate_window(*args, form=form).block_until_ready(), hlo


def stacks(hlo: str) -> dict[str, tuple[str, ...]]:
    """Instruction name -> the function names on its source stack (innermost first)."""
    section = lambda name: re.search(rf"\n{name}\n(.*?)\n\n", hlo, re.S).group(1)  # noqa: E731
    table = lambda name, pat: dict(re.findall(pat, section(name)))  # noqa: E731
    functions = table("FunctionNames", r'(\d+) "([^"]*)"')
    locations = table("FileLocations", r"(\d+) \{file_name_id=\d+ function_name_id=(\d+)")
    frames = {
        k: (loc, parent)
        for k, loc, parent in re.findall(
            r"(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)\}", section("StackFrames")
        )
    }
    out = {}
    for name, frame in re.findall(r"%(\S+) = .*?stack_frame_id=(\d+)", hlo):
        names, seen = [], set()
        while frame in frames and frame not in seen:
            seen.add(frame)
            loc, parent = frames[frame]
            names.append(functions[locations[loc]])
            frame = parent
        out[name] = tuple(names)
    return out


def kind_of(stack: tuple[str, ...]) -> str:
    for function in stack:  # innermost first
        for kind, marks in KINDS:
            if any(function == m or function.startswith(m + ".") for m in marks):
                return kind
    return "other"


def traced_thunks(run) -> dict[str, float]:
    """Microseconds per thunk name over one traced `run()`."""
    import jax

    with tempfile.TemporaryDirectory() as d:
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        run()
        jax.profiler.stop_trace()
        trace = json.load(gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total = collections.Counter()
    for e in events:
        if e.get("ph") == "X":
            total[e["name"]] += e.get("dur", 0)
    return total


def weight_bytes(model) -> int:
    """Bytes of the kernels one step reads: not the text's projections, nor the
    cross-attention keys' and values' (they run once per window)."""
    from flax import nnx

    def per_step(path) -> bool:
        once = {"text_proj", "text_sum_proj"} & set(path) or (
            "encoder_attn" in path and {"k_proj", "v_proj"} & set(path)
        )
        return path[-1] == "kernel" and not once

    flat = nnx.to_flat_state(nnx.state(model))
    return sum(v.get_value().nbytes for path, v in flat if per_step(path))


def profile(shape: str, frames: int, weights: str, repeats: int, bandwidth: float) -> tuple:
    """Prints the step's time by kind of work; returns (steps/s, the products' GB/s)."""
    import jax

    model = build(shape, weights)
    run, hlo = window_call(model, frames, VARIANTS[weights])
    run()
    steps = frames + K - 1
    step_ms = 1e3 * statistics.median(_seconds(run) for _ in range(repeats)) / steps
    where = stacks(hlo)
    thunks = traced_thunks(run)
    by_kind = collections.Counter()
    for name, us in thunks.items():
        if name in where:
            kind = kind_of(where[name])
            if kind == "weight products" and not name.startswith(PRODUCT_THUNKS):
                kind = KINDS[1][0]  # the products' operands: broadcasts, conversions
            by_kind[kind] += us
    summed = sum(by_kind.values())
    mb = weight_bytes(model) / 1e6
    print(
        f"[{shape}] {weights}: {step_ms:.1f} ms/step untraced ({1e3 / step_ms:.1f} steps/s); "
        f"the weights' products read {mb:.0f} MB a step ({mb / bandwidth:.1f} ms at "
        f"{bandwidth:.1f} GB/s)"
    )
    for kind, us in by_kind.most_common():
        share = us / summed
        line = f"  {kind:36s} {100 * share:5.1f}%  {share * step_ms:6.2f} ms/step"
        if kind == "weight products":
            line += f"  ({mb / (share * step_ms):.1f} GB/s of weights)"
        print(line)
    del model
    jax.clear_caches()
    return 1e3 / step_ms, mb / (by_kind["weight products"] / summed * step_ms)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def kernels(repeats: int) -> None:
    """One [1024, 4096] product at 2 rows (1 for the GEMV), 24 in a chain per call."""
    import jax
    import jax.numpy as jnp

    from musicgen.lm.dense import panel_matmul, to_panels

    rng = np.random.default_rng(0)
    n, d_in, d_out = 24, 1024, 4096
    w8 = [jnp.asarray(rng.integers(-127, 128, (d_in, d_out), dtype=np.int8)) for _ in range(n)]
    forms = {
        "int8 [in, out]": (lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.int32), w8, 2),
        "int8 panels": (lambda x, w: panel_matmul(x, w, jnp.int32), [to_panels(w) for w in w8], 2),
        "int8 panels, one weight 24 times (cache-resident)": (
            lambda x, w: panel_matmul(x, w, jnp.int32),
            [to_panels(w8[0])] * n,
            2,
        ),
        "bfloat16 [in, out]": (
            lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.float32),
            [w.astype(jnp.bfloat16) for w in w8],
            2,
        ),
        "float32 [in, out]": (lambda x, w: x @ w, [w.astype(jnp.float32) for w in w8], 2),
        "float32 [in, out], 1 row (GEMV)": (
            lambda x, w: x @ w,
            [w.astype(jnp.float32) for w in w8],
            1,
        ),
    }
    print(f"one [{d_in}, {d_out}] product, {n} distinct weights in a chain (each product's "
          "input is the last one's output), median of the chain:")  # fmt: skip
    for name, (product, ws, rows) in forms.items():
        dtype = ws[0].dtype

        @jax.jit
        def chain(x, ws, product=product):
            for w in ws:
                y = product(x, w)
                x = (y[:, :d_in] % 7 - 3).astype(x.dtype)
            return x

        x = jnp.asarray(rng.integers(-3, 4, (rows, d_in))).astype(dtype)
        call = lambda chain=chain, x=x, ws=ws: chain(x, ws).block_until_ready()  # noqa: E731
        call()
        t = statistics.median(_seconds(call) for _ in range(repeats))
        bytes_ = d_in * d_out * jnp.dtype(dtype).itemsize
        print(f"  {name:50s} {1e3 * t / n:6.3f} ms  {n * bytes_ / t / 1e9:5.1f} GB/s")
        del ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="small", choices=sorted(SHAPES))
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--weights", default="int8,bfloat16,float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernels", action="store_true", help="also time single products")
    args = parser.parse_args()
    formats = [w for w in args.weights.split(",") if w]
    unknown = set(formats) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown weights {sorted(unknown)}; choose from {list(VARIANTS)}")
    warnings.filterwarnings("ignore")
    import os

    bandwidth = max(read_bandwidth(len(os.sched_getaffinity(0))).values())
    print(
        f"read bandwidth {bandwidth:.1f} GB/s; {args.frames} frames ({args.frames + K - 1} "
        f"steps), batch 1 with guidance {CFG:g} (2 rows), top-k {TOP_K}; per kind of work: "
        "share of the traced thunk time, and that share of the untraced step"
    )
    rates = {w: profile(args.shape, args.frames, w, args.repeats, bandwidth) for w in formats}
    if args.kernels:
        kernels(args.repeats + 2)
    best = max(rates, key=lambda w: rates[w][0])
    print(
        f"[{args.shape}] fastest format {best}, {rates[best][0]:.1f} steps/s: its weight "
        f"products read at {rates[best][1]:.1f} GB/s against the machine's {bandwidth:.1f} "
        f"GB/s: {rates[best][1] / bandwidth:.2f}x"
    )


if __name__ == "__main__":
    main()
