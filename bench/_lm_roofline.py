"""What bounds `lm_sampling.py`'s decode step: bandwidth, roofline and a step profile.

The machine's memory read bandwidth, the bytes one decoding step must read at least and
the steps/s ceiling that gives against the measured rates, and a profile of our decode
step: the scan against a jitted `decode_step` called from Python, the cost of a longer
window, and the buffers XLA materialises per step, read off the compiled HLO.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench._lm_models import (
    CARD,
    SHAPES,
    TEXT_TOKENS,
    VARIANTS,
    K,
    _label,
    _seconds,
    _text,
    ours_generate,
)


# ---------------------------------------------------------------------------- bandwidth
def read_bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> dict:
    """GB/s of summing a float32 array far larger than the caches (medians).

    Returns {"numpy 1 thread", f"numpy {threads} threads", "jax (XLA)"}.
    """
    import jax
    import jax.numpy as jnp

    a = np.ones(mib * 2**18, np.float32)
    parts = np.array_split(a, threads)
    ja = jnp.asarray(a)
    total = jax.jit(jnp.sum)
    runs = {
        "numpy 1 thread": lambda: a.sum(),
        f"numpy {threads} threads": lambda: sum(pool.map(np.sum, parts)),
        "jax (XLA)": lambda: total(ja).block_until_ready(),
    }
    with ThreadPoolExecutor(threads) as pool:
        times = {name: [] for name in runs}
        for _ in range(repeats + 1):
            for name, run in runs.items():
                times[name].append(_seconds(run))
    return {name: a.nbytes / statistics.median(t[1:]) / 1e9 for name, t in times.items()}


def step_bytes(
    shape: str, rows: int, steps: int, weight_bytes: float, act_bytes: int, cache_bytes: int = 4
) -> dict:
    """Bytes one decoding step must read at least, on average over a generation.

    Weights read once (self-attention q/k/v/out, cross-attention q/out: the text's keys and
    values are computed once per prompt, MLP, the K heads; int8 adds a float scale per
    output unit), the self-attention cache at its current length (on average
    (steps + 1) / 2 positions), and the text's cross-attention keys and values.
    """
    s = SHAPES[shape]
    d, f, n = s["dim"], s["ffn"], s["layers"]
    kernels = n * (6 * d * d + 2 * d * f) + K * d * CARD
    weights = kernels * weight_bytes
    if weight_bytes == 1:
        weights += 4 * (n * (5 * d + f + d) + K * CARD)
    cache = 2 * n * rows * (steps + 1) / 2 * d * cache_bytes  # float32 on CPU (init_cache)
    cross = 2 * n * rows * TEXT_TOKENS * d * act_bytes
    return {"weights": weights, "cache": cache, "cross": cross, "total": weights + cache + cross}


def print_roofline(shape: str, frames: int, times: dict, bandwidth: float) -> dict:
    """Prints each contender's bytes per step, ceiling and share of it; returns the shares
    by (batch, name)."""
    steps = frames + K - 1
    shares = {}
    print(
        f"[{shape}] roofline at {bandwidth:.1f} GB/s read: MB each decoding step must read "
        "(weights + KV cache at its mean length + text K/V) -> steps/s ceiling, measured, fraction"
    )
    for (batch, name), t in times.items():
        weights = name if isinstance(name, str) else "float32"
        wb = {"float32": 4, "bfloat16": 2, "int8": 1}[weights]
        ab = 2 if VARIANTS.get(weights) == "bfloat16" else 4
        b = step_bytes(shape, 2 * batch, steps, wb, ab)
        ceiling = bandwidth * 1e9 / b["total"]
        shares[batch, name] = steps / t / ceiling
        print(
            f"  batch {batch} {_label(name):34s} {b['total'] / 1e6:7.1f} MB "
            f"({b['weights'] / 1e6:.1f} weights + {b['cache'] / 1e6:.1f} cache + "
            f"{b['cross'] / 1e6:.1f} text)  ceiling {ceiling:6.1f} steps/s, measured "
            f"{steps / t:6.1f}: {100 * steps / t / ceiling:5.1f}%"
        )
    return shares


# ---------------------------------------------------------------------------- profile
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s8": 1, "u8": 1, "s32": 4, "u32": 4, "pred": 1}
_PASS = {"parameter", "get-tuple-element", "bitcast", "tuple", "constant"}


def materialised(hlo: str, shapes: dict[str, set[tuple[int, ...]]]) -> dict:
    """Buffers the top-level program writes, grouped by which `shapes` they match.

    Returns {group: (count, bytes)} over the ENTRY computation's instructions (not the
    insides of fusions), parameters and views excluded.
    """
    entry = hlo[hlo.index("\nENTRY") :]
    entry = entry[: entry.index("\n}")]
    found = {g: [0, 0] for g in shapes}
    for line in entry.splitlines()[1:]:
        m = re.match(r"\s*(?:ROOT )?%\S+ = (.+?) ([a-z][\w-]*)\(", line)
        if not m or m.group(2) in _PASS:
            continue
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", m.group(1)):
            shape = tuple(int(x) for x in dims.split(",") if x)
            for group, members in shapes.items():
                if shape in members:
                    found[group][0] += 1
                    found[group][1] += math.prod(shape) * _BYTES.get(dtype, 4)
    return {g: tuple(v) for g, v in found.items()}


def profile(shape: str, models: dict, batch: int, frames: int, scan_seconds: dict) -> None:
    """Our decode step: scan vs a jitted step from Python, window length, HLO buffers."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    s = SHAPES[shape]
    steps, rows = frames + K - 1, 2 * batch
    n, d, heads = s["layers"], s["dim"], s["heads"]
    text, mask = _text(batch)
    text2 = jnp.concatenate([jnp.asarray(text), jnp.zeros_like(text)])
    mask2 = jnp.concatenate([jnp.asarray(mask), jnp.zeros_like(mask)])
    hd = d // heads
    cache_shapes = {
        (rows, steps, heads, hd),
        (n, rows, steps, heads, hd),
        (1, rows, steps, heads, hd),
        (rows, heads, steps, hd),
        (rows, heads, hd, steps),
    }
    kernel_shapes = {(d, d), (d, s["ffn"]), (s["ffn"], d), (d, CARD), (CARD + 1, d)}
    print(f"[{shape}] profile of our decode step, batch {batch} with guidance ({rows} rows):")
    for weights, model in models.items():
        dtype = jnp.dtype(VARIANTS[weights])
        graphdef, state = nnx.split(model)

        @functools.partial(jax.jit, donate_argnums=(2,))
        def step(state, tokens_BxK, cache, pos, cross, text_mask, graphdef=graphdef, dtype=dtype):
            lm = nnx.merge(graphdef, state)
            return lm.decode_step(tokens_BxK, pos, cache, cross, dtype)

        cross = jax.jit(lambda st, t, m, g=graphdef, dt=dtype: nnx.merge(g, st).cross_kv(t, m, dt))(
            state, text2, mask2
        )
        tokens = jnp.full((rows, K), CARD, jnp.int32)
        cache = model.init_cache(rows, steps, dtype)
        hlo = step.lower(state, tokens, cache, 0, cross, mask2).compile().as_text()
        logits, cache = step(state, tokens, cache, 0, cross, mask2)
        logits.block_until_ready()
        start = time.perf_counter()
        for pos in range(1, steps):
            logits, cache = step(state, tokens, cache, pos, cross, mask2)
        logits.block_until_ready()
        alone = (time.perf_counter() - start) / (steps - 1)
        found = materialised(hlo, {"cache": cache_shapes, "kernel": kernel_shapes})
        cache_mb = 2 * n * rows * steps * d * 4 / 1e6  # float32 on CPU (init_cache)
        print(
            f"  {weights:8s}: {1e3 * scan_seconds[weights] / steps:6.2f} ms/step in the scan, "
            f"{1e3 * alone:6.2f} ms/step as a jitted decode_step called from Python; per step "
            f"the compiled step writes {found['cache'][0]} cache-sized buffers "
            f"({found['cache'][1] / 1e6:.1f} MB; the whole K+V cache is {cache_mb:.1f} MB) and "
            f"{found['kernel'][0]} weight-sized buffers ({found['kernel'][1] / 1e6:.1f} MB)"
        )
    model = models["float32"]
    long = 4 * frames
    run = functools.partial(ours_generate, model, text, mask, long, "float32")
    run()
    t_long = statistics.median(_seconds(run) for _ in range(2))
    short = 1e3 * scan_seconds["float32"] / steps
    per_long = 1e3 * t_long / (long + K - 1)
    cache_short = 2 * n * rows * steps * d * 4
    cache_long = 2 * n * rows * (long + K - 1) * d * 4
    print(
        f"  float32 window of {long + K - 1} steps: {per_long:.2f} ms/step against {short:.2f} at "
        f"{steps}: +{per_long - short:.2f} ms/step for +{(cache_long - cache_short) / 1e6:.0f} MB "
        f"of cache ({(cache_long - cache_short) / max(per_long - short, 1e-9) / 1e6:.1f} GB/s "
        "if that time went on moving the cache once)"
    )
