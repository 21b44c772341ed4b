"""Tests of the finite scalar quantiser (codec.fsq_codebook, kind="fsq" in codec.quantizer)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from codec import fsq_codebook
from codec.quantizer import QuantizerConfig, ResidualVectorQuantizer

LEVELS = (8, 5, 5, 5)
FSQ = QuantizerConfig(kind="fsq", num_codebooks=3, codebook_size=1000, dim=8, levels=LEVELS)


def _make(config: QuantizerConfig, seed: int = 0) -> ResidualVectorQuantizer:
    with nnx.use_eager_sharding(False):
        return ResidualVectorQuantizer(config, rngs=nnx.Rngs(seed))


def _np_fsq(z_MxC: np.ndarray, levels=LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """The FSQ paper's bound, round and mixed-radix index, in float64."""
    levels_C = np.asarray(levels, np.float64)
    half_l = (levels_C - 1) * (1 - 1e-3) / 2
    offset = np.where(levels_C % 2 == 0, 0.5, 0.0)
    bounded = np.tanh(z_MxC + np.arctanh(offset / half_l)) * half_l - offset
    half_width = np.floor(levels_C / 2)
    digits = np.round(bounded) + half_width
    basis = np.cumprod([1, *levels[:-1]])
    return np.round(bounded) / half_width, (digits * basis).sum(1).astype(np.int64)


def test_grid_matches_numpy_and_every_code_is_reachable(rng):
    z = rng.normal(scale=2.0, size=(4000, 4))
    q, codes = fsq_codebook.quantize(jnp.asarray(z, jnp.float32), LEVELS)
    q_ref, codes_ref = _np_fsq(z)
    np.testing.assert_array_equal(codes, codes_ref)
    np.testing.assert_allclose(q, q_ref, atol=1e-6)
    # grid_values inverts the codes; every one of the 1000 grid points is some code.
    np.testing.assert_allclose(fsq_codebook.grid_values(codes, LEVELS), q_ref, atol=1e-6)
    grid = np.asarray(fsq_codebook.grid_values(jnp.arange(1000), LEVELS))
    assert len({tuple(row) for row in grid.round(4)}) == 1000
    assert grid.min() == -1.0 and grid.max() <= 1.0


def test_residual_stages_decode_and_gradient_passes_the_rounding(rng):
    model = _make(FSQ)
    z = jnp.asarray(rng.normal(size=(2, 5, 8)), jnp.float32)
    out = model(z)
    assert out.codes_BxKxF.shape == (2, 3, 5) and float(out.loss) == 0.0
    np.testing.assert_allclose(model.decode(out.codes_BxKxF), out.z_q_BxFxD, atol=1e-5)
    # The stages in NumPy: each quantises what the earlier ones left over.
    p = {k: np.asarray(v, np.float64) for k, v in nnx.to_pure_dict(nnx.state(model)).items()}
    residual, z_q = np.asarray(z, np.float64).reshape(10, 8), 0.0
    for k in range(3):
        q, codes = _np_fsq(residual @ p["in_proj"][k] + p["in_bias"][k])
        np.testing.assert_array_equal(np.asarray(out.codes_BxKxF)[:, k].reshape(-1), codes)
        z_k = q @ p["out_proj"][k] + p["out_bias"][k]
        z_q, residual = z_q + z_k, residual - z_k
    np.testing.assert_allclose(np.asarray(out.z_q_BxFxD).reshape(10, 8), z_q, atol=1e-5)
    # Straight through: the gradient is that of the same stack with rounding left out.
    one = dataclasses.replace(FSQ, num_codebooks=1)
    m1 = _make(one)
    w = {k: v[0] for k, v in nnx.to_pure_dict(nnx.state(m1)).items()}
    levels_C = np.asarray(LEVELS, np.float32)
    half_l, offset = (levels_C - 1) * (1 - 1e-3) / 2, np.where(levels_C % 2 == 0, 0.5, 0.0)

    def smooth(z):
        bounded = jnp.tanh(z @ w["in_proj"] + w["in_bias"] + np.arctanh(offset / half_l))
        return ((bounded * half_l - offset) / np.floor(levels_C / 2)) @ w["out_proj"]

    g = jax.grad(lambda z: jnp.sum(m1(z).z_q_BxFxD * 1.5))(z)
    np.testing.assert_allclose(g, jax.grad(lambda z: jnp.sum(smooth(z) * 1.5))(z), rtol=1e-5)


def test_trained_projections_make_every_stage_count(rng):
    """A few hundred Adam steps on Gaussian latents: each stage lowers the error, and the
    first codebook spreads over its grid (no collapse), from the same random start."""
    config = dataclasses.replace(FSQ, dim=4, num_codebooks=3)
    graphdef, params = nnx.split(_make(config))
    z = jnp.asarray(rng.normal(size=(16, 32, 4)), jnp.float32)
    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, state):
        def loss(params):
            return jnp.mean((nnx.merge(graphdef, params)(z).z_q_BxFxD - z) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state, value

    state = opt.init(params)
    for _ in range(300):
        params, state, _ = step(params, state)
    model = nnx.merge(graphdef, params)
    codes = model.encode(z)
    errors = [float(jnp.mean((model.decode(codes[:, :k]) - z) ** 2)) for k in (1, 2, 3)]
    # The latents have variance 1; the stack is trained as a whole (no dropout here).
    assert errors[0] < 0.5 and errors[1] < 0.6 * errors[0] and errors[2] < 0.3 * errors[1]
    assert len(np.unique(np.asarray(codes[:, 0]))) > 200  # of 512 latents


def test_dropout_and_bad_levels(rng):
    model = _make(dataclasses.replace(FSQ, quantizer_dropout=1.0))
    z = jnp.asarray(rng.normal(size=(32, 3, 8)), jnp.float32)
    out = model(z, rng=jax.random.key(1), train=True)
    n_B = np.asarray(out.n_codebooks_B)
    assert set(n_B.tolist()) == {1, 2, 3}
    full = model(z)
    np.testing.assert_array_equal(out.codes_BxKxF, full.codes_BxKxF)
    for n in (1, 2):
        rows = n_B == n
        expected = model.decode(full.codes_BxKxF[rows][:, :n])
        np.testing.assert_allclose(np.asarray(out.z_q_BxFxD)[rows], expected, atol=1e-5)
    with pytest.raises(ValueError, match="multiply to codebook_size 1024"):
        QuantizerConfig(kind="fsq", codebook_size=1024, levels=LEVELS)
    with pytest.raises(ValueError, match=">= 2"):
        QuantizerConfig(kind="fsq", codebook_size=8, levels=(8, 1))
    assert QuantizerConfig(kind="fsq", codebook_size=1000, levels=[8, 5, 5, 5]).levels == LEVELS
