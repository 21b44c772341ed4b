"""mgcore.rows: dense layers over flattened rows compute what the plain layers compute."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.rows import Linear, matmul, on_rows


def test_on_rows_keeps_leading_axes_and_values():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 5, 4)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(4, 7)), jnp.float32)
    seen = []

    def fn(x_NxI):
        seen.append(x_NxI.shape)
        return x_NxI @ w

    y = on_rows(fn, x)
    assert seen == [(30, 4)]
    assert y.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(y, jnp.einsum("abci,io->abco", x, w), rtol=1e-6, atol=1e-6)


def test_linear_matches_nnx_linear_values_and_gradients():
    with nnx.use_eager_sharding(False):
        ours = Linear(6, 3, rngs=nnx.Rngs(0))
        plain = nnx.Linear(6, 3, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 9, 6)), jnp.float32)
    np.testing.assert_allclose(ours(x), plain(x), rtol=1e-6, atol=1e-6)

    def loss(model):
        return (model(x) ** 2).sum()

    g_ours = nnx.grad(loss)(ours)
    g_plain = nnx.grad(loss)(plain)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_matmul_accumulates_bfloat16_in_float32_and_keeps_the_input_dtype():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(8, 512)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(512, 16)), jnp.float32)
    x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    exact = np.asarray(x16, np.float32) @ np.asarray(w16, np.float32)

    y = matmul(x16, w16)
    assert y.dtype == jnp.bfloat16
    # One rounding of the float32 sum: within bfloat16's half-ulp of the exact product.
    np.testing.assert_allclose(np.asarray(y, np.float32), exact, rtol=2**-8, atol=1e-6)

    y32 = matmul(x, w16)  # bfloat16 weights read as stored, float32 result
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(y32, exact, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(matmul(x, w), np.asarray(x) @ np.asarray(w), rtol=1e-5, atol=1e-4)
