"""EnCodec's EMA codebooks: Euclidean lookup, k-means init, EMA update, dead-code reset.

Follows audiocraft `audiocraft/quantization/core_vq.py` (`EuclideanCodebook`, `kmeans`,
`sample_vectors`) for training and transformers `EncodecEuclideanCodebook` for the
lookup. Everything is a pure function with static shapes, so the whole training update,
k-means included (`lax.fori_loop`, behind `lax.cond` on the `initialized` flag), runs
inside the jitted train step. `codec.quantizer` stacks these codebooks into an RVQ.

Under data parallelism the batch sums are global (XLA reduces them across devices) and
the random rows come from one shared key, so every replica makes the same update; this
is what audiocraft's explicit buffer broadcasts are for.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

F32 = jnp.float32
sg = jax.lax.stop_gradient


def sq_distances(x_MxD: jax.Array, means_NxD: jax.Array) -> jax.Array:
    """Squared Euclidean distances `||x||² - 2 x·m + ||m||²`, `[M, N]`.

    Args:
      x_MxD: points.
      means_NxD: centres.
    """
    # The expanded form keeps memory at M×N; audiocraft's broadcast difference is M×N×D.
    x2_Mx1 = jnp.sum(x_MxD**2, axis=1, keepdims=True)
    m2_1xN = jnp.sum(means_NxD**2, axis=1)[None, :]
    return x2_Mx1 - 2.0 * x_MxD @ means_NxD.T + m2_1xN


def euclidean_codes(x_MxD: jax.Array, embed_NxD: jax.Array) -> jax.Array:
    """EnCodec lookup: argmax of -(||x||² - 2 x·e + ||e||²), as in transformers.

    Args:
      x_MxD: latents.
      embed_NxD: codebook.

    Returns:
      int32 `[M]` code indices.
    """
    return jnp.argmax(-sq_distances(x_MxD, embed_NxD), axis=1).astype(jnp.int32)


def sample_rows(rng: jax.Array, x_MxD: jax.Array, num: int) -> jax.Array:
    """Draws `num` rows of `x_MxD`: distinct rows when there are enough, else with repeats.

    Args:
      rng: PRNG key.
      x_MxD: the rows to draw from.
      num: how many rows to return.

    Returns:
      `[num, D]` rows of `x_MxD`.
    """
    m = x_MxD.shape[0]
    # Static branch, as audiocraft's randperm / randint: repeats only when they must.
    index_S = jax.random.choice(rng, m, (num,), replace=m < num)
    return x_MxD[index_S]


def kmeans(x_MxD: jax.Array, means_NxD: jax.Array, num_iters: int) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means from given initial means; an emptied cluster keeps its mean.

    Args:
      x_MxD: points.
      means_NxD: initial means (EnCodec seeds them with `sample_rows` of `x_MxD`).
      num_iters: Lloyd iterations; 0 returns the initial means and zero counts.

    Returns:
      `(means_NxD, bins_N)`: the means after the last update and, as in audiocraft, the
      number of points per cluster in the last assignment (float32).
    """
    n = means_NxD.shape[0]

    def step(_, carry):
        means_NxD, _ = carry
        bucket_M = jnp.argmin(sq_distances(x_MxD, means_NxD), axis=1)
        onehot_MxN = jax.nn.one_hot(bucket_M, n, dtype=x_MxD.dtype)
        bins_N = onehot_MxN.sum(axis=0)
        new_NxD = (onehot_MxN.T @ x_MxD) / jnp.maximum(bins_N, 1.0)[:, None]
        means_NxD = jnp.where(bins_N[:, None] == 0, means_NxD, new_NxD)
        return means_NxD, bins_N

    bins_N = jnp.zeros((n,), x_MxD.dtype)
    return jax.lax.fori_loop(0, num_iters, step, (means_NxD, bins_N))


def ema_update(
    embed_avg_NxD: jax.Array,
    cluster_size_N: jax.Array,
    x_MxD: jax.Array,
    codes_M: jax.Array,
    weight_M: jax.Array,
    decay: float,
    epsilon: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One EMA step of a codebook (audiocraft `EuclideanCodebook.forward`, training).

    Args:
      embed_avg_NxD: EMA of the per-code sums of assigned latents.
      cluster_size_N: EMA of the per-code counts.
      x_MxD: this batch's latents.
      codes_M: their codes.
      weight_M: 1 for rows of examples where the codebook is live, 0 for dropped ones.
      decay: EMA decay.
      epsilon: Laplace smoothing of the counts.

    Returns:
      `(embed, embed_avg, cluster_size)` after the step; embed = sums / smoothed counts.
    """
    n = cluster_size_N.shape[0]
    onehot_MxN = jax.nn.one_hot(codes_M, n, dtype=F32) * weight_M[:, None]
    cluster_size_N = decay * cluster_size_N + (1.0 - decay) * onehot_MxN.sum(axis=0)
    embed_avg_NxD = decay * embed_avg_NxD + (1.0 - decay) * (onehot_MxN.T @ x_MxD)
    total = cluster_size_N.sum()
    smoothed_N = (cluster_size_N + epsilon) / (total + n * epsilon) * total
    return embed_avg_NxD / smoothed_N[:, None], embed_avg_NxD, cluster_size_N


def reset_dead_codes(
    rng: jax.Array,
    x_MxD: jax.Array,
    expired_N: jax.Array,
    embed_NxD: jax.Array,
    embed_avg_NxD: jax.Array,
    cluster_size_N: jax.Array,
    threshold: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Replaces expired codes by random rows of the batch.

    audiocraft writes the rows into `embed` only, which the EMA normalisation overwrites
    in the same step, so its reset never takes; like vector-quantize-pytorch we also set
    the code's EMA count to the threshold and its EMA sum to row * threshold, so the new
    code survives the next normalisation.

    Args:
      rng: PRNG key for choosing rows.
      x_MxD: this batch's latents.
      expired_N: which codes to replace.
      embed_NxD: codebook after this step's EMA update.
      embed_avg_NxD: EMA sums after the update.
      cluster_size_N: EMA counts after the update.
      threshold: the dead-code threshold.

    Returns:
      `(embed, embed_avg, cluster_size)`.
    """
    rows_NxD = sample_rows(rng, x_MxD, embed_NxD.shape[0])
    mask_Nx1 = expired_N[:, None]
    return (
        jnp.where(mask_Nx1, rows_NxD, embed_NxD),
        jnp.where(mask_Nx1, rows_NxD * threshold, embed_avg_NxD),
        jnp.where(expired_N, jnp.asarray(threshold, F32), cluster_size_N),
    )


def residual_quantize(
    state: dict[str, jax.Array],
    z_BxFxD: jax.Array,
    live_KxB: jax.Array,
    keys_K: jax.Array,
    *,
    train: bool,
    kmeans_iters: int,
    decay: float,
    epsilon: float,
    threshold: float,
):
    """EnCodec's residual loop over K stacked codebooks, under `lax.scan`.

    Per codebook, in training: k-means if not yet initialised, lookup with the (new)
    codebook, output from the codebook before its EMA update, then the EMA update and the
    dead-code reset (codes whose count was below `threshold` before the update).

    Args:
      state: `embed` [K, N, D], `embed_avg` [K, N, D], `cluster_size` [K, N],
        `initialized` [K] bool.
      z_BxFxD: latents (float32).
      live_KxB: 1 where codebook k is live for example b (quantiser dropout), else 0.
      keys_K: one PRNG key per codebook (unused unless training).
      train: update the state.
      kmeans_iters: k-means iterations at initialisation; 0 = no k-means.
      decay: EMA decay.
      epsilon: Laplace smoothing.
      threshold: dead-code threshold; 0 = no reset.

    Returns:
      `(z_q_BxFxD, codes_KxBxF, commit_KxB, expired_K, new_state)`: z_q straight-through
      and masked by `live_KxB`; per-example commitment mse; share of codes below the
      threshold; the state after the step (unchanged when not training).
    """
    b, f, d = z_BxFxD.shape
    n = state["embed"].shape[1]

    def step(carry, xs):
        residual_BxFxD, z_q_BxFxD = carry
        s, live_B, key = xs
        embed, embed_avg, cluster_size, initialized = (
            s["embed"], s["embed_avg"], s["cluster_size"], s["initialized"]
        )  # fmt: skip
        x_MxD = sg(residual_BxFxD.reshape(b * f, d))
        if train and kmeans_iters > 0:
            key, init_key = jax.random.split(key)

            def kmeans_init():
                means_NxD, bins_N = kmeans(x_MxD, sample_rows(init_key, x_MxD, n), kmeans_iters)
                return means_NxD, means_NxD, bins_N, jnp.ones((), bool)

            # k-means on the first training batch only: the flag is part of the state.
            embed, embed_avg, cluster_size, initialized = jax.lax.cond(
                initialized, lambda: (embed, embed_avg, cluster_size, initialized), kmeans_init
            )
        codes_M = euclidean_codes(x_MxD, embed)
        q_BxFxD = embed[codes_M].reshape(b, f, d)
        commit_B = jnp.mean((residual_BxFxD - sg(q_BxFxD)) ** 2, axis=(1, 2))
        z_k_BxFxD = residual_BxFxD + sg(q_BxFxD - residual_BxFxD)
        z_q_BxFxD = z_q_BxFxD + z_k_BxFxD * live_B[:, None, None]
        # transformers' value (residual - quantized) with audiocraft's zero gradient
        # (residual - (residual + sg(q - residual))).
        next_BxFxD = sg(residual_BxFxD - q_BxFxD)
        expired_N = cluster_size < threshold if threshold > 0 else jnp.zeros((n,), bool)
        if train:
            embed, embed_avg, cluster_size = ema_update(
                embed_avg, cluster_size, x_MxD, codes_M, jnp.repeat(live_B, f), decay, epsilon
            )
            if threshold > 0:
                embed, embed_avg, cluster_size = reset_dead_codes(
                    key, x_MxD, expired_N, embed, embed_avg, cluster_size, threshold
                )
        new = {"embed": embed, "embed_avg": embed_avg, "cluster_size": cluster_size,
               "initialized": initialized}  # fmt: skip
        ys = (codes_M.reshape(b, f), commit_B, jnp.mean(expired_N.astype(F32)), new)
        return (next_BxFxD, z_q_BxFxD), ys

    init = (z_BxFxD, jnp.zeros_like(z_BxFxD))
    (_, z_q), (codes, commit, expired, new_state) = jax.lax.scan(
        step, init, (state, live_KxB, keys_K)
    )
    return z_q, codes, commit, expired, new_state
