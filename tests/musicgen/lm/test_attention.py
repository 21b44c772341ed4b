"""`musicgen.lm.attention`: chunked (flash) and jax.nn's against the full reference.

Tiny shapes with blocks that divide neither length, so every case crosses block edges,
pads internally and, under causal masking, skips key blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musicgen.lm import attention
from musicgen.lm.attention import dot_product_attention

B, H, D = 3, 2, 8
BLOCKS = dict(block_q=8, block_k=16)


def _inputs(rng, t, s, masked: bool):
    q, w = (jnp.asarray(rng.standard_normal((B, t, H, D)), jnp.float32) for _ in range(2))
    k, v = (jnp.asarray(rng.standard_normal((B, s, H, D)), jnp.float32) for _ in range(2))
    mask = None
    if masked:
        mask = rng.random((B, s)) > 0.3
        mask[0] = False  # a row with every key masked
        mask[1, : 2 * BLOCKS["block_k"]] = False  # whole key blocks masked
        mask = jnp.asarray(mask)
    return q, k, v, w, mask


def _value_and_grads(impl, q, k, v, w, mask, causal):
    def loss(q, k, v):
        o = dot_product_attention(q, k, v, causal=causal, kv_mask_BxS=mask, impl=impl, **BLOCKS)
        return (o.astype(jnp.float32) * w).sum(), o

    (_, o), grads = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(q, k, v)
    return [o, *grads]


@pytest.mark.parametrize(
    "t, s, causal, masked",
    [
        (37, 37, True, False),  # causal self-attention
        (20, 45, False, True),  # cross-attention style: T != S, kv masks
        (20, 45, True, True),  # a query chunk against a longer key cache, kv masks
    ],
)
def test_chunked_matches_full_with_gradients(rng, t, s, causal, masked):
    q, k, v, w, mask = _inputs(rng, t, s, masked)
    want = _value_and_grads("full", q, k, v, w, mask, causal)
    got = _value_and_grads("chunked", q, k, v, w, mask, causal)
    for name, g, r in zip(("o", "dq", "dk", "dv"), got, want, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5, err_msg=name)


def test_all_masked_rows_average_all_values_with_gradients(rng):
    """Masked keys score a large finite negative, as HF/PyTorch's added finfo.min: a row
    whose keys are all masked is the mean of v over all S keys (not NaN) and passes no
    gradient to q. Causal with T > S: queries 0..T-S-1 see no key at all; batch row 0
    masks every key; row 1 whole key blocks."""
    t, s = 45, 20
    q, k, v, w, mask = _inputs(rng, t, s, masked=True)
    want = _value_and_grads("full", q, k, v, w, mask, causal=True)
    got = _value_and_grads("chunked", q, k, v, w, mask, causal=True)
    for name, g, r in zip(("o", "dq", "dk", "dv"), got, want, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5, err_msg=name)
    o, dq = got[:2]
    v_mean = np.asarray(v).mean(1)
    np.testing.assert_allclose(o[0], np.broadcast_to(v_mean[0], (t, H, D)), atol=1e-6)
    np.testing.assert_allclose(o[2, : t - s], np.broadcast_to(v_mean[2], (t - s, H, D)), atol=1e-6)
    assert not np.any(dq[0]) and not np.any(dq[2, : t - s])


@pytest.mark.parametrize("t, s, masked", [(37, 37, False), (20, 45, True)])
def test_xla_matches_full(rng, t, s, masked):
    q, k, v, _, mask = _inputs(rng, t, s, masked)
    want, got = (
        jax.jit(dot_product_attention, static_argnames=("causal", "impl"))(
            q, k, v, causal=True, kv_mask_BxS=mask, impl=impl
        )
        for impl in ("full", "xla")
    )
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_bfloat16_inputs_close_to_float32(rng):
    q, k, v, _, mask = _inputs(rng, 37, 37, masked=True)
    attend = jax.jit(dot_product_attention, static_argnames=("causal", "impl", *BLOCKS))
    want = attend(q, k, v, causal=True, kv_mask_BxS=mask, impl="full")
    bf16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    got = attend(*bf16, causal=True, kv_mask_BxS=mask, impl="chunked", **BLOCKS)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), want, atol=3e-2)


def test_auto_picks_full_for_short_and_chunked_for_long_sequences():
    n = attention.CPU_CHUNKED_FROM
    if jax.default_backend() != "cpu":
        assert attention._auto(1, 10 * n) == "xla"
        return
    assert attention._auto(n // 2, n // 2) == "full"
    assert attention._auto(n // 2, 10 * n) == "full"  # a few queries against a long cache
    assert attention._auto(n, n) == "chunked"
    assert attention.block_size(n) == 64 and attention.block_size(10 * n) == 128
