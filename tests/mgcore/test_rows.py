"""mgcore.rows: dense layers over flattened rows compute what the plain layers compute."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.rows import Linear, on_rows


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
