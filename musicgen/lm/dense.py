"""The LM's linear layer, in the formats its kernels come in (`model.py` builds every
projection from it).

- float: `x W` (+ bias), `W` `[in, out]` sharded by its logical axes;
- int8 (for sampling: one decoding step at small batch is bound by reading weights): `W`
  stored as int8 with a float scale per output unit, multiplied by `x` quantised to int8
  per row (`int8_matmul`); `quantize_state` converts a float model's state into it;
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


class Dense(nnx.Module):
    """A bias-free (by default) linear layer whose kernel may be weight-only int8, with an
    optional low-rank adapter (`lora`: (rank, alpha))."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        axes: tuple[str, str],
        *,
        bias: bool = False,
        int8: bool = False,
        lora: tuple[int, float] | None = None,
        rngs: nnx.Rngs,
    ):
        init = nnx.initializers.lecun_normal()
        if int8:
            self.kernel = nnx.Param(jnp.zeros((d_in, d_out), jnp.int8), out_sharding=axes)
            self.scale = nnx.Param(jnp.ones((d_out,), jnp.float32), out_sharding=(axes[1],))
        else:
            self.kernel = nnx.Param(init(rngs.params(), (d_in, d_out)), out_sharding=axes)
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
        else:
            y_NxO = matmul(x_NxI, kernel)
        if self.lora_a is not None:
            a_IxR, b_RxO = (p[...].astype(x_NxI.dtype) for p in (self.lora_a, self.lora_b))
            y_NxO = y_NxO + matmul(matmul(x_NxI, a_IxR), b_RxO) * self.lora_scale
        if self.bias is not None:
            y_NxO = y_NxO + self.bias[...].astype(y_NxO.dtype)
        return y_NxO


def int8_matmul(x_NxI: jax.Array, w_IxO: jax.Array) -> jax.Array:
    """`x @ w` for an int8 `w` (its scale left to the caller), without a float copy of `w`:
    each row of `x` is quantised to int8 with its own symmetric scale (max |x| / 127), the
    int8 x int8 product accumulates in int32, and the row scales are applied to the
    result. XLA:CPU reads the weights at about the bandwidth it reads float32 ones, a
    quarter of the bytes; an int8 kernel up-cast to float32 ran slower than float32 itself
    (`bench/lm_sampling.py`)."""
    x = x_NxI.astype(jnp.float32)
    scale_Nx1 = jnp.maximum(jnp.abs(x).max(-1, keepdims=True), 1e-12) / 127.0
    x_q = jnp.round(x / scale_Nx1).astype(jnp.int8)
    dims = (((1,), (0,)), ((), ()))
    acc = jax.lax.dot_general(x_q, w_IxO, dims, preferred_element_type=jnp.int32)
    return (acc.astype(jnp.float32) * scale_Nx1).astype(x_NxI.dtype)


def quantize_state(float_state, int8_abstract_state):
    """A float model's state converted for the same model built with `weights="int8"`.

    Every dense kernel becomes int8 with a symmetric scale per output unit
    (max |w| / 127); embeddings, norms and biases stay as they are.
    """
    flat_float = dict(nnx.to_flat_state(float_state))
    out = {}
    for path, var in nnx.to_flat_state(int8_abstract_state):
        if (
            path[-1] == "scale"
            and (*path[:-1], "kernel") in flat_float
            and (flat_float[(*path[:-1], "kernel")].get_value().ndim == 2)
        ):
            w = flat_float[(*path[:-1], "kernel")].get_value()
            out[path] = var.replace(jnp.maximum(jnp.abs(w).max(0), 1e-12) / 127.0)
        elif path[-1] == "kernel" and var.get_value().dtype == jnp.int8:
            w = flat_float[path].get_value()
            scale = jnp.maximum(jnp.abs(w).max(0), 1e-12) / 127.0
            out[path] = var.replace(jnp.round(w / scale).astype(jnp.int8))
        else:
            out[path] = var.replace(flat_float[path].get_value())
    return nnx.from_flat_state(out)
