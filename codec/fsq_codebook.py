"""Finite scalar quantisation (FSQ), stacked residually: codebooks that cannot collapse.

FSQ (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple") replaces the
learned codebook by a fixed grid: project the latent to a few channels, bound channel i to
`levels[i]` values with a shifted tanh, round, and pass gradients straight through the
rounding. The code is the mixed-radix number of the rounded channels, so a codebook of
`prod(levels)` entries (8 x 5 x 5 x 5 = 1000, the paper's choice near 2^10) has no
entries to die: every grid point stays reachable, nothing needs a codebook or commitment
loss, an EMA or dead-code resets.

Here K such quantisers run as a residual stack (as the RVQ flavours in
`codec.quantizer`): quantiser k sees what 0..k-1 left, through its own projections
D -> len(levels) and back, which learn the gain each finer stage needs. The bound, the
rounding and the code digits follow the paper's reference code (`bound`, `quantize`,
`codes_to_indexes`); the stacking and the projections are ours.

Measured in `experiments/codec_vocos.py:quantizer=fsq` (`results/codec_vocos/`, 2000
steps): a grid whose entries cannot die still collapsed, the encoder putting its latents
in a few cells (3 % of the first codebook's entries used, against 37 % with EMA
codebooks), so the recipe uses EMA codebooks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32
sg = jax.lax.stop_gradient

_EPS = 1e-3  # keeps the tanh bound strictly inside the outermost level


def _grid(levels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel: half the number of steps, the even-level offset, the radix basis."""
    levels_C = np.asarray(levels, np.float32)
    half_width_C = np.floor(levels_C / 2)
    offset_C = np.where(levels_C % 2 == 0, 0.5, 0.0).astype(np.float32)
    basis_C = np.cumprod([1, *levels[:-1]]).astype(np.int32)
    return half_width_C, offset_C, basis_C


def quantize(z_MxC: jax.Array, levels: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Rounds each channel to its grid; gradients pass straight through the rounding.

    Args:
      z_MxC: projected latents, C = len(levels).
      levels: grid points per channel.

    Returns:
      `(q_MxC, codes_M)`: the grid values scaled to [-1, 1] and int32 mixed-radix codes.
    """
    half_width_C, offset_C, basis_C = _grid(levels)
    half_l_C = (np.asarray(levels, np.float32) - 1) * (1 - _EPS) / 2
    shift_C = np.arctanh(offset_C / half_l_C)
    bounded_MxC = jnp.tanh(z_MxC + shift_C) * half_l_C - offset_C
    rounded_MxC = bounded_MxC + sg(jnp.round(bounded_MxC) - bounded_MxC)
    digits_MxC = jnp.round(sg(rounded_MxC) + half_width_C).astype(jnp.int32)
    codes_M = jnp.sum(digits_MxC * basis_C, axis=1).astype(jnp.int32)
    return rounded_MxC / half_width_C, codes_M


def grid_values(codes: jax.Array, levels: tuple[int, ...]) -> jax.Array:
    """The scaled grid point `[..., C]` of each code, the inverse of `quantize`'s codes."""
    half_width_C, _, basis_C = _grid(levels)
    digits = (codes[..., None] // basis_C) % np.asarray(levels, np.int32)
    return (digits.astype(F32) - half_width_C) / half_width_C


def residual_quantize(
    params: dict[str, jax.Array], z_BxFxD: jax.Array, live_KxB: jax.Array, levels: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    """K residual FSQ stages under `lax.scan`.

    Args:
      params: `in_proj` [K, D, C], `in_bias` [K, C], `out_proj` [K, C, D], `out_bias`
        [K, D] (float32).
      z_BxFxD: latents (float32).
      live_KxB: 1 where stage k is live for example b (quantiser dropout), else 0.
      levels: grid points per channel.

    Returns:
      `(z_q_BxFxD, codes_KxBxF)`: z_q masked by `live_KxB`, and the codes of every stage.
    """

    def step(carry, xs):
        residual_BxFxD, z_q_BxFxD = carry
        p, live_B = xs
        b, f, _ = residual_BxFxD.shape
        z_BxFxC = residual_BxFxD @ p["in_proj"] + p["in_bias"]
        q_MxC, codes_M = quantize(z_BxFxC.reshape(b * f, -1), levels)
        z_k_BxFxD = q_MxC.reshape(b, f, -1) @ p["out_proj"] + p["out_bias"]
        z_q_BxFxD = z_q_BxFxD + z_k_BxFxD * live_B[:, None, None]
        return (residual_BxFxD - z_k_BxFxD, z_q_BxFxD), codes_M.reshape(b, f)

    init = (z_BxFxD, jnp.zeros_like(z_BxFxD))
    (_, z_q), codes = jax.lax.scan(step, init, (params, live_KxB))
    return z_q, codes


def embed_codes(
    params: dict[str, jax.Array], codes_KxBxF: jax.Array, levels: tuple[int, ...]
) -> jax.Array:
    """Each stage's contribution out_proj(grid[code]), `[K, B, F, D]`."""

    def one(p, codes_BxF):
        return grid_values(codes_BxF, levels) @ p["out_proj"] + p["out_bias"]

    names = ("out_proj", "out_bias")
    return jax.vmap(one)({name: params[name] for name in names}, codes_KxBxF)
