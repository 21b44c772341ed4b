"""The LM's linear layer, in the formats its kernels come in (`model.py` builds every
projection from it).

- float: `x W` (+ bias), `W` `[in, out]` sharded by its logical axes;
- int8 (for sampling: one decoding step at small batch is bound by reading weights): `W`
  stored as int8 with a float scale per output unit, multiplied by `x` quantised to int8
  per row (`int8_matmul`);
- in panels (`panels=True`, for sampling, any of the formats above): `W` stored as
  contiguous blocks of `PANEL` output columns by at most `PANEL_ROWS` input rows
  (`to_panels`), multiplied block by block in one batched product (`panel_matmul`): the
  same products, read faster at a few rows (`results/sampling_roofline/`);
  `sampling_state` converts a float model's state into either or both;
- with a LoRA adapter (`lora.py`): `x W + (alpha / r) (x A) B`, `A` `[in, r]` and `B`
  `[r, out]` `nnx.LoRAParam`s (B zero at creation, so a new adapter changes nothing),
  sharded like `W` along its input and output axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mgcore.rows import matmul, on_rows

# Panels (`to_panels`): at a few rows a product streams its kernel from memory, and
# XLA:CPU's (YNNPACK's) int8 product at 2 rows reads an `[in, out]` [1024, 4096] kernel at
# 7.8 GB/s, the same kernel as contiguous blocks of 64 output columns, batched in one
# product, at 11.0 GB/s (`bench/lm_step_profile.py --kernels`; MusicGen-small's int8 step:
# 15.0 -> 25.3 steps/s with the cache layouts of `model.py`, `results/sampling_roofline/`).
# int8 kernels are also cut into chunks of 1024 input rows (their int32 sums are exact in
# any order); float ones are not cut.
PANEL = 64
PANEL_ROWS = 1024


def panel_shape(d_in: int, d_out: int, int8: bool) -> tuple[int, int, int, int]:
    """`[panels, chunks, rows, columns]` of a `[d_in, d_out]` kernel in panels."""
    columns = PANEL if d_out % PANEL == 0 else d_out
    rows = PANEL_ROWS if int8 and d_in % PANEL_ROWS == 0 else d_in
    return d_out // columns, d_in // rows, rows, columns


def to_panels(w_IxO: jax.Array) -> jax.Array:
    """`[in, out]` -> `[panels, chunks, rows, columns]` (`panel_shape`), each block
    contiguous."""
    d_in, d_out = w_IxO.shape
    p, c, r, n = panel_shape(d_in, d_out, w_IxO.dtype == jnp.int8)
    return w_IxO.reshape(c, r, p, n).transpose(2, 0, 1, 3)


def from_panels(w_PxCxRxN: jax.Array) -> jax.Array:
    """The `[in, out]` kernel of `to_panels`' blocks."""
    p, c, r, n = w_PxCxRxN.shape
    return w_PxCxRxN.transpose(1, 2, 0, 3).reshape(c * r, p * n)


def panel_matmul(x_NxI: jax.Array, w_PxCxRxM: jax.Array, preferred) -> jax.Array:
    """`x @ from_panels(w)` as one product batched over the blocks, `[N, out]` in
    `preferred`."""
    p, c, r, m = w_PxCxRxM.shape
    n = x_NxI.shape[0]
    x_CxNxR = x_NxI.reshape(n, c, r).transpose(1, 0, 2)
    x_BxNxR = jnp.broadcast_to(x_CxNxR[None], (p, c, n, r)).reshape(p * c, n, r)
    y_BxNxM = jax.lax.dot_general(
        x_BxNxR,
        w_PxCxRxM.reshape(p * c, r, m),
        (((2,), (1,)), ((0,), (0,))),
        preferred_element_type=preferred,
    )
    y_PxNxM = y_BxNxM.reshape(p, c, n, m).sum(1) if c > 1 else y_BxNxM.reshape(p, n, m)
    return y_PxNxM.transpose(1, 0, 2).reshape(n, p * m)


def _product(x_NxI: jax.Array, w: jax.Array, preferred) -> jax.Array:
    if w.ndim == 4:
        return panel_matmul(x_NxI, w, preferred)
    return jax.lax.dot_general(x_NxI, w, (((1,), (0,)), ((), ())), preferred_element_type=preferred)


class Dense(nnx.Module):
    """A bias-free (by default) linear layer whose kernel may be weight-only int8 and
    stored in panels, with an optional low-rank adapter (`lora`: (rank, alpha))."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        axes: tuple[str, str],
        *,
        bias: bool = False,
        int8: bool = False,
        panels: bool = False,
        lora: tuple[int, float] | None = None,
        rngs: nnx.Rngs,
    ):
        init = nnx.initializers.lecun_normal()
        shape, sharding = (d_in, d_out), axes
        if panels:
            shape, sharding = panel_shape(d_in, d_out, int8), (axes[1], None, axes[0], None)
        if int8:
            self.kernel = nnx.Param(jnp.zeros(shape, jnp.int8), out_sharding=sharding)
            self.scale = nnx.Param(jnp.ones((d_out,), jnp.float32), out_sharding=(axes[1],))
        else:
            kernel = init(rngs.params(), (d_in, d_out))
            self.kernel = nnx.Param(to_panels(kernel) if panels else kernel, out_sharding=sharding)
            self.scale = None
        self.bias = nnx.Param(jnp.zeros((d_out,)), out_sharding=(axes[1],)) if bias else None
        if lora is not None:
            rank, alpha = lora
            self.lora_scale = alpha / rank
            a_init = nnx.initializers.normal(1.0 / math.sqrt(d_in))
            self.lora_a = nnx.LoRAParam(a_init(rngs.params(), (d_in, rank)),
                                        out_sharding=(axes[0], None))  # fmt: skip
            self.lora_b = nnx.LoRAParam(jnp.zeros((rank, d_out)), out_sharding=(None, axes[1]))
        else:
            self.lora_a = self.lora_b = None

    def __call__(self, x_BxI: jax.Array) -> jax.Array:
        return on_rows(self._rows, x_BxI)  # 2-D for XLA:CPU's weight gradient (mgcore.rows)

    def _rows(self, x_NxI: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.scale is not None:  # int8: multiply the (small) output, not the weights
            y_NxO = int8_matmul(x_NxI, kernel) * self.scale[...].astype(x_NxI.dtype)
        elif kernel.ndim == 4:  # as `matmul`: in the lower of the two precisions
            dtype = kernel.dtype if kernel.dtype != jnp.float32 else x_NxI.dtype
            y_NxO = panel_matmul(x_NxI.astype(dtype), kernel.astype(dtype), jnp.float32)
            y_NxO = y_NxO.astype(x_NxI.dtype)
        else:
            y_NxO = matmul(x_NxI, kernel)
        if self.lora_a is not None:
            a_IxR, b_RxO = (p[...].astype(x_NxI.dtype) for p in (self.lora_a, self.lora_b))
            y_NxO = y_NxO + matmul(matmul(x_NxI, a_IxR), b_RxO) * self.lora_scale
        if self.bias is not None:
            y_NxO = y_NxO + self.bias[...].astype(y_NxO.dtype)
        return y_NxO


def int8_matmul(x_NxI: jax.Array, w: jax.Array) -> jax.Array:
    """`x @ w` for an int8 `w` (`[in, out]` or in panels; its scale left to the caller),
    without a float copy of `w`: each row of `x` is quantised to int8 with its own
    symmetric scale (max |x| / 127), the int8 x int8 product accumulates in int32, and the
    row scales are applied to the result. An int8 kernel up-cast to float32 per product
    ran slower than float32 itself (`bench/lm_sampling.py`)."""
    x = x_NxI.astype(jnp.float32)
    scale_Nx1 = jnp.maximum(jnp.abs(x).max(-1, keepdims=True), 1e-12) / 127.0
    x_q = jnp.round(x / scale_Nx1).astype(jnp.int8)
    acc = _product(x_q, w, jnp.int32)
    return (acc.astype(jnp.float32) * scale_Nx1).astype(x_NxI.dtype)


def sampling_state(float_state, abstract_state):
    """A float model's state converted for the same model built for sampling
    (`LMConfig.weights` "int8" and/or `panels`), whose abstract state is given.

    An int8 kernel gets a symmetric scale per output unit (max |w| / 127); a kernel in
    panels is rearranged (`to_panels`); embeddings, norms and biases stay as they are,
    and float values keep their dtype.
    """
    flat_float = dict(nnx.to_flat_state(float_state))
    out = {}
    for path, var in nnx.to_flat_state(abstract_state):
        target = var.get_value()
        if path[-1] == "scale" and (*path[:-1], "kernel") in flat_float:
            w = flat_float[(*path[:-1], "kernel")].get_value()
            if w.ndim == 2 and target.ndim == 1:
                out[path] = var.replace(jnp.maximum(jnp.abs(w).max(0), 1e-12) / 127.0)
                continue
        value = flat_float[path].get_value()
        if path[-1] == "kernel" and target.dtype == jnp.int8:
            scale = jnp.maximum(jnp.abs(value).max(0), 1e-12) / 127.0
            value = jnp.round(value / scale).astype(jnp.int8)
        if path[-1] == "kernel" and target.ndim == 4 and value.ndim == 2:
            value = to_panels(value)
        out[path] = var.replace(value)
    return nnx.from_flat_state(out)
