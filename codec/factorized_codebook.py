"""DAC's factorised codebooks: weight-normalised projections and a cosine lookup.

Follows descript-audio-codec `dac/nn/quantize.py` (`VectorQuantize`,
`ResidualVectorQuantize`) and transformers `DacVectorQuantize` for the inference math:
project the residual D -> C with a weight-normalised 1x1 conv (here a dense kernel
[in, out]), L2-normalise it and the codebook, take the best code, and project the raw
(unnormalised) code vector back to D. `codec.quantizer` stacks these into an RVQ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from codec import layers

F32 = jnp.float32
sg = jax.lax.stop_gradient


def weight_norm(v_IxO: jax.Array, g_O: jax.Array) -> jax.Array:
    """torch `weight_norm(dim=0)` of a [out, in, 1] conv weight, here stored [in, out].

    Args:
      v_IxO: direction.
      g_O: norm of each output unit's weights.

    Returns:
      `g * v / ||v||`, the norm taken over the input axis.
    """
    return layers.weight_norm(v_IxO, g_O, keep_axis=1)


def _l2_normalize(x: jax.Array) -> jax.Array:
    # torch F.normalize: x / max(||x||, 1e-12).
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_codes(z_e_MxC: jax.Array, codebook_NxC: jax.Array) -> jax.Array:
    """DAC lookup: argmax of transformers' score on L2-normalised vectors.

    Args:
      z_e_MxC: projected latents.
      codebook_NxC: raw codebook.

    Returns:
      int32 `[M]` code indices.
    """
    x_MxC = _l2_normalize(z_e_MxC)
    e_NxC = _l2_normalize(codebook_NxC)
    # transformers' exact expression (descript's adds ||e||² where this subtracts it; with
    # unit-norm e both are constant in e, so the argmax agrees up to rounding).
    x2_Mx1 = jnp.sum(x_MxC**2, axis=1, keepdims=True)
    score_MxN = -(x2_Mx1 - 2.0 * x_MxC @ e_NxC.T) + jnp.sum(e_NxC**2, axis=1)[None, :]
    return jnp.argmax(score_MxN, axis=1).astype(jnp.int32)


def residual_quantize(
    params: dict[str, jax.Array], z_BxFxD: jax.Array, live_KxB: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """DAC's residual loop over K stacked codebooks, under `lax.scan`.

    Args:
      params: `in_proj_v` [K, D, C], `in_proj_g` [K, C], `in_proj_bias` [K, C],
        `out_proj_v` [K, C, D], `out_proj_g` [K, D], `out_proj_bias` [K, D],
        `codebook` [K, N, C] (float32).
      z_BxFxD: latents (float32).
      live_KxB: 1 where codebook k is live for example b (quantiser dropout), else 0.

    Returns:
      `(z_q_BxFxD, codes_KxBxF, commit_KxB, codebook_KxB)`: z_q straight-through and
      masked by `live_KxB`; per-example commitment and codebook mse, unmasked.
    """

    def step(carry, xs):
        residual_BxFxD, z_q_BxFxD = carry
        p, live_B = xs
        b, f, _ = residual_BxFxD.shape
        z_e_BxFxC = residual_BxFxD @ weight_norm(p["in_proj_v"], p["in_proj_g"]) + p["in_proj_bias"]
        codes_BxF = cosine_codes(z_e_BxFxC.reshape(b * f, -1), p["codebook"]).reshape(b, f)
        q_BxFxC = p["codebook"][codes_BxF]  # the raw, unnormalised code vector
        commit_B = jnp.mean((z_e_BxFxC - sg(q_BxFxC)) ** 2, axis=(1, 2))
        codebook_B = jnp.mean((q_BxFxC - sg(z_e_BxFxC)) ** 2, axis=(1, 2))
        z_st_BxFxC = z_e_BxFxC + sg(q_BxFxC - z_e_BxFxC)
        w_out_CxD = weight_norm(p["out_proj_v"], p["out_proj_g"])
        z_k_BxFxD = z_st_BxFxC @ w_out_CxD + p["out_proj_bias"]
        z_q_BxFxD = z_q_BxFxD + z_k_BxFxD * live_B[:, None, None]
        # DAC subtracts every codebook's output, live or dropped, from the residual.
        residual_BxFxD = residual_BxFxD - z_k_BxFxD
        return (residual_BxFxD, z_q_BxFxD), (codes_BxF, commit_B, codebook_B)

    init = (z_BxFxD, jnp.zeros_like(z_BxFxD))
    (_, z_q), (codes, commit, cbl) = jax.lax.scan(step, init, (params, live_KxB))
    return z_q, codes, commit, cbl


def embed_codes(params: dict[str, jax.Array], codes_KxBxF: jax.Array) -> jax.Array:
    """Each codebook's contribution out_proj(codebook[code]), `[K, B, F, D]`.

    Args:
      params: `codebook`, `out_proj_v`, `out_proj_g`, `out_proj_bias`, stacked over K.
      codes_KxBxF: integer codes.
    """

    def one(p, codes_BxF):
        w_out_CxD = weight_norm(p["out_proj_v"], p["out_proj_g"])
        return p["codebook"][codes_BxF] @ w_out_CxD + p["out_proj_bias"]

    names = ("codebook", "out_proj_v", "out_proj_g", "out_proj_bias")
    return jax.vmap(one)({name: params[name] for name in names}, codes_KxBxF)
