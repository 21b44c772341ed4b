"""Tests of codec.quantizer (and its ema_codebook, factorized_codebook) against NumPy DAC/EnCodec.

Models share a few configs and shapes: every new one costs XLA compiles.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from codec import ema_codebook
from codec.factorized_codebook import weight_norm
from codec.quantizer import QuantizerConfig, ResidualVectorQuantizer, dropout_codebooks
from mgcore import sharding

FACT = QuantizerConfig(kind="factorized", num_codebooks=3, codebook_size=16, dim=8, codebook_dim=4)
FACT_DROP = dataclasses.replace(FACT, quantizer_dropout=1.0)
EMA = QuantizerConfig(
    kind="ema",
    num_codebooks=2,
    codebook_size=8,
    dim=4,
    decay=0.9,
    kmeans_iters=0,
    dead_code_threshold=0,
    commitment_weight=1.0,
)
EMA_DEAD = dataclasses.replace(EMA, decay=0.99, dead_code_threshold=2.0)
EMA_KMEANS = dataclasses.replace(EMA, decay=0.99, kmeans_iters=3)
EMA_FULL = dataclasses.replace(EMA, kmeans_iters=3, dead_code_threshold=2.0, quantizer_dropout=0.5)


def _make(config: QuantizerConfig, seed: int = 0) -> ResidualVectorQuantizer:
    # Annotated variables would otherwise be sharded eagerly, which needs a mesh.
    with nnx.use_eager_sharding(False):
        return ResidualVectorQuantizer(config, rngs=nnx.Rngs(seed))


def _perturb_factorized(model: ResidualVectorQuantizer, rng: np.random.Generator) -> None:
    """Moves g and the biases off their initial values so weight norm and biases matter."""
    for name in ("in_proj_g", "out_proj_g", "in_proj_bias", "out_proj_bias"):
        var = getattr(model, name)
        var[...] = var[...] + rng.uniform(0.2, 0.5, var[...].shape).astype(np.float32)


def _np_params(model: ResidualVectorQuantizer) -> dict[str, np.ndarray]:
    _, params, _ = nnx.split(model, nnx.Param, ...)
    return {k: np.asarray(v, np.float64) for k, v in nnx.to_pure_dict(params).items()}


def _np_weight_norm(v_IxO, g_O):
    return v_IxO * (g_O / np.linalg.norm(v_IxO, axis=0))[None]


def _np_normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _np_factorized(p, z_BxFxD, n):
    """transformers' DacResidualVectorQuantizer in eval mode, in float64."""
    residual, z_q, codes, commit, cbl = z_BxFxD.astype(np.float64), 0.0, [], [], []
    for k in range(n):
        z_e = residual @ _np_weight_norm(p["in_proj_v"][k], p["in_proj_g"][k])
        z_e = z_e + p["in_proj_bias"][k]
        x, e = _np_normalize(z_e), _np_normalize(p["codebook"][k])
        score = -((x**2).sum(-1, keepdims=True) - 2 * x @ e.T) + (e**2).sum(-1)
        c = score.argmax(-1)
        q = p["codebook"][k][c]
        commit.append(((z_e - q) ** 2).mean(axis=(1, 2)))
        cbl.append(((q - z_e) ** 2).mean(axis=(1, 2)))
        z_k = q @ _np_weight_norm(p["out_proj_v"][k], p["out_proj_g"][k]) + p["out_proj_bias"][k]
        z_q, residual = z_q + z_k, residual - z_k
        codes.append(c)
    return np.stack(codes, 1), z_q, np.stack(commit), np.stack(cbl)


def _np_euclidean(embed_KxNxD, z_BxFxD, n):
    """transformers' EncodecResidualVectorQuantizer encode + decode, in float64."""
    residual, z_q, codes = z_BxFxD.astype(np.float64), 0.0, []
    for k in range(n):
        e = embed_KxNxD[k].astype(np.float64)
        dist = -((residual**2).sum(-1, keepdims=True) - 2 * residual @ e.T + (e**2).sum(-1))
        c = dist.argmax(-1)
        z_q, residual = z_q + e[c], residual - e[c]
        codes.append(c)
    return np.stack(codes, 1), z_q


def _np_ema(embed, embed_avg, cluster_size, x_MxD, decay, eps, weight_M=None):
    """audiocraft's EuclideanCodebook EMA step; returns codes and the new state."""
    n = embed.shape[0]
    weight_M = np.ones(len(x_MxD)) if weight_M is None else weight_M
    codes = (((x_MxD[:, None] - embed[None]) ** 2).sum(-1)).argmin(-1)
    onehot = np.eye(n)[codes] * weight_M[:, None]
    cs = decay * cluster_size + (1 - decay) * onehot.sum(0)
    ea = decay * embed_avg + (1 - decay) * onehot.T @ x_MxD
    total = cs.sum()
    smoothed = (cs + eps) / (total + n * eps) * total
    return codes, ea / smoothed[:, None], ea, cs


def _set_ema_state(model, rng, embed_scale=1.0, cluster=None):
    k, n, d = model.embed[...].shape
    embed = (embed_scale * rng.normal(size=(k, n, d))).astype(np.float32)
    cluster = rng.uniform(3, 6, (k, n)) if cluster is None else cluster
    model.embed[...] = jnp.asarray(embed)
    model.cluster_size[...] = jnp.asarray(cluster, jnp.float32)
    model.embed_avg[...] = jnp.asarray(embed * np.asarray(cluster, np.float32)[..., None])


def _state(model) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in nnx.to_pure_dict(nnx.state(model)).items()}


def _check_usage(out, n: int) -> None:
    """perplexity_K and dead_fraction_K against a NumPy histogram of the live codes."""
    codes = np.asarray(out.codes_BxKxF)
    live_KxB = np.arange(codes.shape[1])[:, None] < np.asarray(out.n_codebooks_B)[None]
    for k in range(codes.shape[1]):
        counts = np.bincount(codes[live_KxB[k], k].reshape(-1), minlength=n)
        prob = counts[counts > 0] / counts.sum()
        np.testing.assert_allclose(
            out.perplexity_K[k], np.exp(-(prob * np.log(prob)).sum()), rtol=1e-5
        )
        np.testing.assert_allclose(out.dead_fraction_K[k], np.mean(counts == 0))


def test_factorized_codes_and_decode_match_numpy(rng):
    model = _make(FACT)
    _perturb_factorized(model, rng)
    p = _np_params(model)
    z = rng.normal(size=(4, 6, 8)).astype(np.float32)
    codes_ref, z_q_ref, commit_ref, cbl_ref = _np_factorized(p, z, 3)
    out = model(jnp.asarray(z))
    np.testing.assert_array_equal(out.codes_BxKxF, codes_ref)
    assert out.codes_BxKxF.dtype == jnp.int32
    np.testing.assert_allclose(out.z_q_BxFxD, z_q_ref, atol=1e-5)
    np.testing.assert_allclose(model.decode(out.codes_BxKxF), z_q_ref, atol=1e-5)
    commit, codebook = commit_ref.mean(1).sum(), cbl_ref.mean(1).sum()
    np.testing.assert_allclose(out.commitment_loss, commit, rtol=1e-5)
    np.testing.assert_allclose(out.codebook_loss, codebook, rtol=1e-5)
    np.testing.assert_allclose(out.loss, 0.25 * commit + codebook, rtol=1e-5)
    _check_usage(out, 16)
    # Fewer codebooks: encode runs only the first two, decode sums only what it is given.
    codes2_ref, z_q2_ref, _, _ = _np_factorized(p, z, 2)
    np.testing.assert_array_equal(model.encode(jnp.asarray(z), n_codebooks=2), codes2_ref)
    np.testing.assert_allclose(model.decode(jnp.asarray(codes_ref[:, :2])), z_q2_ref, atol=1e-5)
    # embed_codes: per-codebook contributions that sum to decode.
    parts = model.embed_codes(out.codes_BxKxF)
    assert parts.shape == (4, 3, 6, 8)
    np.testing.assert_allclose(parts.sum(1), z_q_ref, atol=1e-5)


def test_weight_norm_is_torch_dim0():
    v_IxO = np.arange(1.0, 7.0).reshape(3, 2)
    g_O = np.array([2.0, 3.0])
    column0 = 2.0 * v_IxO[:, 0] / np.sqrt(1 + 9 + 25)
    column1 = 3.0 * v_IxO[:, 1] / np.sqrt(4 + 16 + 36)
    np.testing.assert_allclose(
        weight_norm(jnp.asarray(v_IxO), jnp.asarray(g_O)),
        np.stack([column0, column1], axis=1),
        rtol=1e-6,
    )


def test_ema_codes_and_decode_match_numpy(rng):
    model = _make(EMA)
    _set_ema_state(model, rng)
    embed = np.asarray(model.embed[...])
    z = rng.normal(size=(4, 6, 4)).astype(np.float32)
    codes_ref, z_q_ref = _np_euclidean(embed, z, 2)
    before = _state(model)
    out = model(jnp.asarray(z))
    np.testing.assert_array_equal(out.codes_BxKxF, codes_ref)
    np.testing.assert_allclose(out.z_q_BxFxD, z_q_ref, atol=1e-5)
    np.testing.assert_allclose(model.decode(out.codes_BxKxF), z_q_ref, atol=1e-5)
    np.testing.assert_allclose(
        model.decode(jnp.asarray(codes_ref[:, :1])), embed[0][codes_ref[:, 0]], atol=1e-6
    )
    assert float(out.codebook_loss) == 0.0
    _check_usage(out, 8)
    # Inference leaves the EMA state alone.
    for name, value in _state(model).items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("kind", ["factorized", "ema"])
def test_residual_error_falls_with_codebooks(kind, rng):
    k, n, d = 3, 16, 8
    # Codebook k holds cluster centres at scale 0.1**k; data sums one centre per level.
    centres_KxNxD = rng.normal(size=(k, n, d)) * (0.1 ** np.arange(k))[:, None, None]
    index_KxM = rng.integers(0, n, (k, 40))
    z_M = centres_KxNxD[np.arange(k)[:, None], index_KxM].sum(0)
    z = (z_M + 1e-5 * rng.normal(size=z_M.shape)).reshape(5, 8, d).astype(np.float32)
    config = QuantizerConfig(
        kind=kind, num_codebooks=k, codebook_size=n, dim=d, codebook_dim=d, kmeans_iters=0
    )
    model = _make(config)
    if kind == "factorized":  # identity projections: the lookup sees the residual itself
        eye = np.broadcast_to(np.eye(d, dtype=np.float32), (k, d, d))
        model.in_proj_v[...] = model.out_proj_v[...] = jnp.asarray(eye)
        model.in_proj_g[...] = model.out_proj_g[...] = jnp.ones((k, d))
        model.codebook[...] = jnp.asarray(centres_KxNxD, jnp.float32)
    else:
        model.embed[...] = jnp.asarray(centres_KxNxD, jnp.float32)
    codes = model.encode(jnp.asarray(z))
    np.testing.assert_array_equal(codes, index_KxM.T.reshape(5, 8, k).transpose(0, 2, 1))
    errors = [float(np.linalg.norm(z))]
    for used in range(1, k + 1):
        z_hat = model.decode(codes[:, :used])
        errors.append(float(np.linalg.norm(z - np.asarray(z_hat))))
    assert all(b <= a for a, b in itertools.pairwise(errors)), errors
    assert all(b < 0.5 * a for a, b in itertools.pairwise(errors)), errors


def test_ema_straight_through_gradient_is_identity(rng):
    graphdef, state = nnx.split(_make(EMA_FULL))
    z = jnp.asarray(rng.normal(size=(4, 6, 4)), jnp.float32)
    # In training some examples drop codebooks (EMA_FULL has dropout): still the identity.
    for train in (False, True):

        def total(z_BxFxD, train=train):
            # Fresh Variables at this trace level, so training may update them (the trainer
            # does the same).
            model = nnx.merge(graphdef, state, copy=True)
            return model(z_BxFxD, rng=jax.random.key(0), train=train).z_q_BxFxD.sum()

        grad = np.asarray(jax.grad(total)(z))
        np.testing.assert_allclose(grad, np.ones(z.shape), atol=1e-6)


def test_factorized_straight_through_gradient(rng):
    model = _make(FACT)
    _perturb_factorized(model, rng)
    p = _np_params(model)
    graphdef, params = nnx.split(model)
    z = jnp.asarray(rng.normal(size=(4, 6, 8)), jnp.float32)

    def total(z_BxFxD):
        return nnx.merge(graphdef, params)(z_BxFxD).z_q_BxFxD.sum()

    # The gradient is the linear network's with the lookup replaced by the identity:
    # z_k = r_k A_k + c_k, r_{k+1} = r_k (I - A_k) - c_k, so the gradient of sum(z_q) is
    # sum_k (I - A_0) ... (I - A_{k-1}) A_k 1 at every frame.
    grad_D, chain = np.zeros(8), np.eye(8)
    for k in range(3):
        w_in = _np_weight_norm(p["in_proj_v"][k], p["in_proj_g"][k])
        a = w_in @ _np_weight_norm(p["out_proj_v"][k], p["out_proj_g"][k])
        grad_D += chain @ a @ np.ones(8)
        chain = chain @ (np.eye(8) - a)
    np.testing.assert_allclose(
        jax.grad(total)(z), np.broadcast_to(grad_D, z.shape), rtol=1e-4, atol=1e-5
    )

    # Commitment trains the projection, not the codebook; the codebook loss the reverse.
    def losses(params):
        out = nnx.merge(graphdef, params)(z)
        return out.commitment_loss, out.codebook_loss

    g_commit = nnx.to_pure_dict(jax.grad(lambda q: losses(q)[0])(params))
    g_codebook = nnx.to_pure_dict(jax.grad(lambda q: losses(q)[1])(params))
    assert np.all(np.asarray(g_commit["codebook"]) == 0)
    assert np.any(np.asarray(g_commit["in_proj_v"]) != 0)
    assert np.any(np.asarray(g_codebook["codebook"]) != 0)
    assert np.all(np.asarray(g_codebook["in_proj_v"]) == 0)


def test_ema_train_step_matches_numpy(rng):
    model = _make(EMA)
    _set_ema_state(model, rng)
    old = _state(model)
    z = rng.normal(size=(4, 6, 4)).astype(np.float32)
    out = model(jnp.asarray(z), train=True)
    new = _state(model)
    residual, z_q, commits = z.reshape(-1, 4).astype(np.float64), 0.0, []
    for k in range(2):
        codes, embed, embed_avg, cs = _np_ema(
            old["embed"][k], old["embed_avg"][k], old["cluster_size"][k], residual, 0.9, 1e-5
        )
        np.testing.assert_array_equal(np.asarray(out.codes_BxKxF)[:, k].reshape(-1), codes)
        np.testing.assert_allclose(new["embed"][k], embed, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new["embed_avg"][k], embed_avg, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new["cluster_size"][k], cs, rtol=1e-6)
        q = old["embed"][k][codes]  # this step's output uses the codebook before its update
        commits.append(((residual - q) ** 2).mean())
        z_q, residual = z_q + q, residual - q
    np.testing.assert_allclose(out.z_q_BxFxD, z_q.reshape(z.shape), atol=1e-5)
    np.testing.assert_allclose(out.commitment_loss, np.mean(commits), rtol=1e-5)
    np.testing.assert_allclose(out.loss, np.mean(commits), rtol=1e-5)
    _check_usage(out, 8)


def test_kmeans_matches_numpy_lloyd(rng):
    x = rng.normal(size=(50, 3)).astype(np.float32)
    seeds = x[:6].copy()
    means, bins = ema_codebook.kmeans(jnp.asarray(x), jnp.asarray(seeds), 4)
    ref = seeds.astype(np.float64)
    for _ in range(4):
        bucket = ((x[:, None] - ref[None]) ** 2).sum(-1).argmin(-1)
        ref_bins = np.bincount(bucket, minlength=6)
        for c in range(6):
            if ref_bins[c]:
                ref[c] = x[bucket == c].mean(0)
    np.testing.assert_allclose(means, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bins, ref_bins)
    rows = np.asarray(ema_codebook.sample_rows(jax.random.key(0), jnp.asarray(x), 10))
    assert len({tuple(r) for r in rows}) == 10  # distinct rows of x
    assert all(any(np.array_equal(r, xr) for xr in x) for r in rows)


def test_kmeans_initialises_exactly_once(rng):
    model = _make(EMA_KMEANS)
    assert not np.any(np.asarray(model.initialized[...]))
    np.testing.assert_array_equal(model.embed[...], 0.0)
    # As many distinct points as codes: k-means seeds one code on each and stops there.
    z = rng.normal(size=(2, 4, 4)).astype(np.float32)
    model(jnp.asarray(z), rng=jax.random.key(1), train=True)
    first = _state(model)
    assert np.all(first["initialized"])
    points = z.reshape(-1, 4)
    np.testing.assert_allclose(
        first["embed"][0][np.lexsort(first["embed"][0].T)],
        points[np.lexsort(points.T)],
        atol=1e-5,
    )
    np.testing.assert_allclose(first["cluster_size"][0], np.ones(8), rtol=1e-6)
    # A far-away second batch moves the codes by the EMA only: no second k-means.
    z2 = z + 50.0
    model(jnp.asarray(z2), rng=jax.random.key(2), train=True)
    second = _state(model)
    _, embed, _, cs = _np_ema(
        first["embed"][0],
        first["embed_avg"][0],
        first["cluster_size"][0],
        z2.reshape(-1, 4),
        0.99,
        1e-5,
    )
    np.testing.assert_allclose(second["embed"][0], embed, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second["cluster_size"][0], cs, rtol=1e-6)
    assert np.all(second["initialized"])


def test_dead_codes_are_replaced_by_batch_rows(rng):
    model = _make(EMA_DEAD)
    cluster = np.array([[5, 5, 0.5, 5, 1.9, 5, 5, 2.0], [5] * 8])
    _set_ema_state(model, rng, cluster=cluster)
    old = _state(model)
    z = rng.normal(size=(2, 8, 4)).astype(np.float32)
    out = model(jnp.asarray(z), rng=jax.random.key(3), train=True)
    new = _state(model)
    rows = z.reshape(-1, 4)
    _, embed, _, cs = _np_ema(
        old["embed"][0], old["embed_avg"][0], old["cluster_size"][0], rows, 0.99, 1e-5
    )
    dead = np.array([2, 4])
    alive = np.setdiff1d(np.arange(8), dead)  # 2.0 is not below the threshold 2
    np.testing.assert_allclose(new["embed"][0][alive], embed[alive], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["cluster_size"][0][alive], cs[alive], rtol=1e-6)
    picked = [np.flatnonzero(np.all(np.isclose(rows, new["embed"][0][c]), axis=1)) for c in dead]
    assert all(len(p) == 1 for p in picked) and picked[0][0] != picked[1][0]
    np.testing.assert_allclose(new["cluster_size"][0][dead], 2.0)
    np.testing.assert_allclose(new["embed_avg"][0][dead], 2.0 * new["embed"][0][dead], rtol=1e-6)
    np.testing.assert_allclose(out.expired_fraction_K, [0.25, 0.0])
    # Inference reports the expired share of the current state (the code at 2.0 decayed).
    np.testing.assert_allclose(
        model(jnp.asarray(z)).expired_fraction_K, np.mean(new["cluster_size"] < 2.0, axis=1)
    )


def test_quantizer_dropout_masks_codebooks(rng):
    model = _make(FACT_DROP)
    _perturb_factorized(model, rng)
    p = _np_params(model)
    z = rng.normal(size=(32, 3, 8)).astype(np.float32)
    out = model(jnp.asarray(z), rng=jax.random.key(4), train=True)
    n_B = np.asarray(out.n_codebooks_B)
    assert set(n_B.tolist()) == {1, 2, 3}
    codes_ref, _, commit_ref, cbl_ref = _np_factorized(p, z, 3)
    np.testing.assert_array_equal(out.codes_BxKxF, codes_ref)  # all K codes still computed
    for n in range(1, 4):  # dropped codebooks add nothing: z_q is the first-n quantisation
        rows = n_B == n
        z_q_n = _np_factorized(p, z[rows], n)[1]
        np.testing.assert_allclose(np.asarray(out.z_q_BxFxD)[rows], z_q_n, atol=1e-5)
    live_KxB = np.arange(3)[:, None] < n_B[None]
    commit = (commit_ref * live_KxB).mean(1).sum()
    np.testing.assert_allclose(out.commitment_loss, commit, rtol=1e-5)
    np.testing.assert_allclose(out.codebook_loss, (cbl_ref * live_KxB).mean(1).sum(), rtol=1e-5)
    _check_usage(out, 16)
    # DAC's share semantics: the floor(B * p) leading examples drop, the rest use all K.
    n_half = np.asarray(dropout_codebooks(jax.random.key(5), 32, 3, 0.5))
    assert np.all(n_half[16:] == 3) and set(n_half[:16].tolist()) == {1, 2, 3}
    # p = 0: training uses all K codebooks, as inference does.
    off = _make(FACT)
    out_off = off(jnp.asarray(z), rng=jax.random.key(5), train=True)
    np.testing.assert_array_equal(out_off.n_codebooks_B, 3)
    np.testing.assert_allclose(out_off.z_q_BxFxD, off(jnp.asarray(z)).z_q_BxFxD, atol=1e-6)


def test_ema_dropout_excludes_dropped_rows_from_statistics(rng):
    model = _make(dataclasses.replace(EMA, quantizer_dropout=1.0))
    _set_ema_state(model, rng)
    old = _state(model)
    z = rng.normal(size=(16, 5, 4)).astype(np.float32)
    out = model(jnp.asarray(z), rng=jax.random.key(6), train=True)
    n_B = np.asarray(out.n_codebooks_B)
    live_KxB = np.arange(2)[:, None] < n_B[None]
    assert live_KxB[1].sum() < 16  # some examples dropped codebook 1
    np.testing.assert_allclose(
        _state(model)["cluster_size"].sum(1),
        0.9 * old["cluster_size"].sum(1) + 0.1 * 5 * live_KxB.sum(1),
        rtol=1e-5,
    )
    # Commitment: per example, the mean over the codebooks it used (audiocraft's layer mean).
    residual, commit_KxB = z.astype(np.float64), []
    for k in range(2):
        e = old["embed"][k]
        q = e[((residual[..., None, :] - e) ** 2).sum(-1).argmin(-1)]
        commit_KxB.append(((residual - q) ** 2).mean(axis=(1, 2)))
        residual = residual - q
    expected = ((np.stack(commit_KxB) * live_KxB).sum(0) / n_B).mean()
    np.testing.assert_allclose(out.commitment_loss, expected, rtol=1e-5)
    _check_usage(out, 8)


def test_jit_over_split_merge_updates_state(rng):
    graphdef, params, rest = nnx.split(_make(EMA_FULL), nnx.Param, ...)
    assert not jax.tree.leaves(params)  # EMA codebooks are state, never trained by gradient

    @jax.jit
    def step(params, rest, z, key):
        model = nnx.merge(graphdef, params, rest)
        out = model(z, rng=key, train=True)
        return out, nnx.split(model, nnx.Param, ...)[2]

    z = jnp.asarray(rng.normal(size=(4, 6, 4)), jnp.float32)
    out, new_rest = step(params, rest, z, jax.random.key(8))
    assert np.all(np.asarray(new_rest["initialized"][...]))
    assert np.any(np.asarray(new_rest["embed"][...]) != 0)
    eager = nnx.merge(graphdef, params, rest, copy=True)  # tree mode would share `rest`
    eager_out = eager(z, rng=jax.random.key(8), train=True)
    np.testing.assert_array_equal(out.codes_BxKxF, eager_out.codes_BxKxF)
    np.testing.assert_allclose(new_rest["embed"][...], eager.embed[...], atol=1e-6)
    # The old state was not touched; a second step starts from the returned one.
    assert not np.any(np.asarray(rest["initialized"][...]))
    out2, _ = step(params, new_rest, z, jax.random.key(9))
    assert np.isfinite(float(out2.loss))

    # Factorised: gradients reach every parameter through the jitted split/merge.
    graphdef_f, params_f = nnx.split(_make(FACT))

    @jax.jit
    def grads(params, z):
        def loss(params):
            out = nnx.merge(graphdef_f, params)(z, train=True)
            return out.loss + jnp.mean(out.z_q_BxFxD**2)

        return jax.grad(loss)(params)

    g = grads(params_f, jnp.asarray(rng.normal(size=(4, 6, 8)), jnp.float32))
    assert all(np.any(np.asarray(v) != 0) for v in jax.tree.leaves(g))


@pytest.mark.parametrize("config", [FACT, EMA], ids=["factorized", "ema"])
def test_logical_axes_resolve_and_eager_sharding_needs_a_mesh(config):
    model = _make(config)
    for _, var in nnx.to_flat_state(nnx.state(model)):
        axes = var.get_metadata()["out_sharding"]
        assert len(axes) == var[...].ndim
        sharding.logical_to_mesh(axes)  # raises on a name the rule table lacks
    with pytest.raises(ValueError, match="mesh"):
        ResidualVectorQuantizer(config, rngs=nnx.Rngs(0))


def test_bad_arguments():
    z = jnp.zeros((1, 2, 8))
    with pytest.raises(ValueError, match="n_codebooks"):
        _make(FACT).encode(z, n_codebooks=4)
    with pytest.raises(ValueError, match="rng"):
        _make(FACT_DROP)(z, train=True)
    with pytest.raises(ValueError, match="kind"):
        QuantizerConfig(kind="lfq")
