"""Scaled dot-product attention for the token LM, in three formulations.

- "full": the reference. Materialises the `[B, H, T, S]` scores, softmax, then `p @ v`.
- "chunked": FlashAttention-2 (Dao, 2023, arXiv:2307.08691) in plain JAX. Blocks of
  `block_q` queries scan over blocks of `block_k` keys with an online softmax (running
  max and sum), so at most `[B, H, block_q, block_k]` scores exist at once; under causal
  masking the key blocks wholly above the diagonal are never visited (half the FLOPs of
  "full" for self-attention). A `jax.custom_vjp` backward recomputes each block's
  probabilities from the saved logsumexp (FA-2's backward: outer loop over key blocks,
  inner over query blocks), so training keeps no `[T, S]` residual either.
- "xla": `jax.nn.dot_product_attention`: its "xla" implementation (which materialises
  the scores too), or cuDNN's flash kernel on a GPU for half-precision inputs without a
  kv mask.

Semantics shared by all three:

- scores are scaled by `1/sqrt(D)`; softmax runs in float32 whatever the input dtype
  (bfloat16 allowed); the output has the input dtype;
- masked keys get a large *finite* negative score (`MASKED`, not -inf), as PyTorch/HF
  models that add `finfo.min` to the scores: a query row whose keys are all masked gets
  the mean of `v` over all S keys (finite, no NaN) and passes no gradient to q or k;
- `causal=True` lets query i see keys j <= i + (S - T): the queries are the last T
  positions of the keys, so a query chunk can attend to a longer key cache.

Which formulation "auto" picks, and why, is in `dot_product_attention`'s docstring; the
numbers come from `bench/attention.py` (`results/bench_attention.txt`).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Impl = Literal["auto", "full", "chunked", "xla"]

# The score of a masked key. Finite, so that a row with every key masked is a uniform
# average instead of NaN; far below any real score, so exp(MASKED - real max) == 0.
MASKED = -1e30
# Internal padding keys of "chunked" (lengths rounded up to the block size) sit further
# down still: they get zero weight even in a row whose real keys are all masked.
_PAD = 2 * MASKED

# "auto" on CPU: "chunked" where T and S are both at least this, else "full"; and the
# longest sequence that "chunked" splits into blocks of 64 rather than 128 (see
# `dot_product_attention`'s docstring for the measurements).
CPU_CHUNKED_FROM = 192
SMALL_BLOCKS_UNTIL = 384


def dot_product_attention(
    q_BxTxHxD: jax.Array,
    k_BxSxHxD: jax.Array,
    v_BxSxHxD: jax.Array,
    *,
    causal: bool = False,
    kv_mask_BxS: jax.Array | None = None,
    impl: Impl = "auto",
    block_q: int | None = None,
    block_k: int | None = None,
) -> jax.Array:
    """Multi-head attention `softmax(q k^T / sqrt(D) + mask) v`, per head.

    "auto" picks by backend and shape, from `bench/attention.py` on a 2-core AMD EPYC
    (Zen 5) shared with other jobs (load average 4-7 during the run, so absolute times
    are inflated; the contenders ran interleaved), causal self-attention, float32,
    median ms of fwd+bwd / fwd only (`results/bench_attention.txt`):

        (B, T, H, D)       full            chunked        xla              PyTorch SDPA*
        8, 500, 8, 32      196 / 68        75 / 30        236 / 90         114 / 32
        4, 1500, 16, 64    3044 / 1353     1162 / 584     4945 / 1645      1367 / 407
        2, 3000, 16, 64    7716 / 3007     2054 / 959     15392 / 3308     2844 / 782

    (*: the faster of 2 threads and 1; here always 1.) Peak memory added by one fwd+bwd
    at (4, 1500, 16, 64): full 2.3 GiB, chunked 0.3 GiB, xla 3.6 GiB, PyTorch 0.1 GiB.
    Shorter sequences (fwd+bwd, ms, full vs chunked; B, H, D = 8, 8, 32 | 4, 16, 64):
    T = 128: 4.1 vs 5.6 | 13.8 vs 19.9; T = 192: 22.8 vs 24.3 | 72.9 vs 49.9; T = 256:
    83 vs 40 | 82 vs 40. A few queries against a long cache (T = 64, S = 1500): full 207,
    chunked 314. Hence on CPU "chunked" where T and S are both at least
    `CPU_CHUNKED_FROM` (192), else "full"; "xla" (jax.nn's, which materialises the scores
    as "full" does, with more overhead) is never the fastest here. On GPU and TPU, where
    nothing was measured, "auto" takes "xla" (cuDNN's fused kernel for half precision).

    Args:
      q_BxTxHxD: queries.
      k_BxSxHxD: keys.
      v_BxSxHxD: values.
      causal: query i sees keys j <= i + (S - T) only.
      kv_mask_BxS: nonzero/True where a key may be attended to; None: all.
      impl: "full", "chunked", "xla" or "auto" (above).
      block_q: queries per block of "chunked"; None: `block_size(T)`.
      block_k: keys per block of "chunked"; None: `block_size(S)`.

    Returns:
      `[B, T, H, D]` in the dtype of `q_BxTxHxD`.
    """
    if impl == "auto":
        impl = _auto(q_BxTxHxD.shape[1], k_BxSxHxD.shape[1])
    if impl == "full":
        return _full(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS)
    if impl == "chunked":
        block_q = block_q or block_size(q_BxTxHxD.shape[1])
        block_k = block_k or block_size(k_BxSxHxD.shape[1])
        return _chunked(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS, block_q, block_k)
    if impl == "xla":
        return _xla(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS)
    raise ValueError(f"unknown attention impl {impl!r}")


def block_size(length: int) -> int:
    """The block of "chunked" for a sequence of `length`: 64 up to `SMALL_BLOCKS_UNTIL`
    (less padding and less wasted work on the diagonal), 128 above (fewer, larger block
    products). Measured fwd+bwd, causal, 64 vs 128 (ms): T = 320, (8, 8, 32): 64 vs 117;
    T = 500: 163 vs 166 (fwd 48 vs 38); T = 1500 and 3000: 128 fastest of 64, 128, 256 and
    the mixed 64/128 and 128/256 pairs."""
    return 64 if length <= SMALL_BLOCKS_UNTIL else 128


def _auto(t: int, s: int) -> str:
    if jax.default_backend() != "cpu":
        return "xla"
    return "chunked" if min(t, s) >= CPU_CHUNKED_FROM else "full"


def _visible_TxS(t: int, s: int) -> np.ndarray:
    """The causal mask, queries being the last t of s positions."""
    return np.arange(s)[None, :] <= np.arange(t)[:, None] + (s - t)


def _full(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS):
    t, s, d = q_BxTxHxD.shape[1], k_BxSxHxD.shape[1], q_BxTxHxD.shape[-1]
    s_BxHxTxS = jnp.einsum(
        "bthd,bshd->bhts", q_BxTxHxD, k_BxSxHxD, preferred_element_type=jnp.float32
    ) * (1.0 / math.sqrt(d))
    visible = jnp.ones((1, 1, 1, s), bool)
    if kv_mask_BxS is not None:
        visible = visible & kv_mask_BxS.astype(bool)[:, None, None, :]
    if causal:
        visible = visible & _visible_TxS(t, s)
    s_BxHxTxS = jnp.where(visible, s_BxHxTxS, MASKED)
    p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1).astype(v_BxSxHxD.dtype)
    o = jnp.einsum("bhts,bshd->bthd", p_BxHxTxS, v_BxSxHxD, preferred_element_type=jnp.float32)
    return o.astype(q_BxTxHxD.dtype)


def _xla(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS):
    t, s = q_BxTxHxD.shape[1], k_BxSxHxD.shape[1]
    mask = None
    if kv_mask_BxS is not None:
        mask = jnp.broadcast_to(
            kv_mask_BxS.astype(bool)[:, None, None, :], (q_BxTxHxD.shape[0], 1, t, s)
        )
    is_causal = causal and t == s  # jax.nn's causal mask is top-left aligned
    if causal and t != s:
        visible = jnp.asarray(_visible_TxS(t, s))[None, None]
        mask = visible if mask is None else mask & visible
    # cuDNN's flash kernel (GPU, half precision) only without a mask array, whose
    # all-masked rows it may treat otherwise. Not run on a GPU here.
    cudnn = (
        jax.default_backend() == "gpu"
        and q_BxTxHxD.dtype in (jnp.bfloat16, jnp.float16)
        and mask is None
    )
    return jax.nn.dot_product_attention(
        q_BxTxHxD,
        k_BxSxHxD,
        v_BxSxHxD,
        mask=mask,
        is_causal=is_causal,
        implementation="cudnn" if cudnn else None,
    )


# ---------------------------------------------------------------------------------------
# "chunked": FlashAttention-2. Inside `_flash`, lengths are padded to whole blocks and
# split block-major: queries `[Nq, B, H, bq, D]`, keys and values `[Nk, B, H, bk, D]`,
# the per-key bias `[Nk, B, 1, 1, bk]`, so a loop step indexes contiguous blocks.


def _chunked(q_BxTxHxD, k_BxSxHxD, v_BxSxHxD, causal, kv_mask_BxS, block_q, block_k):
    b, t, h, d = q_BxTxHxD.shape
    s = k_BxSxHxD.shape[1]
    st = _Static(t, s, causal, min(block_q, t), min(block_k, s), kv_mask_BxS is not None)
    # Per-key additive bias: 0 visible, MASKED masked, _PAD past the end.
    bias_BxS = jnp.zeros((b, s), jnp.float32)
    if kv_mask_BxS is not None:
        bias_BxS = jnp.where(kv_mask_BxS.astype(bool), bias_BxS, MASKED)
    bias_BxS = jnp.pad(bias_BxS, ((0, 0), (0, st.nk * st.bk - s)), constant_values=_PAD)
    bias_NxBx1x1xK = bias_BxS.reshape(b, st.nk, 1, 1, st.bk).transpose(1, 0, 2, 3, 4)

    def blocks(x_BxLxHxD, n, size):  # [B, L, H, D] -> [N, B, H, size, D], zero-padded
        x = jnp.pad(x_BxLxHxD, ((0, 0), (0, n * size - x_BxLxHxD.shape[1]), (0, 0), (0, 0)))
        return x.reshape(b, n, size, h, d).transpose(1, 0, 3, 2, 4)

    o_NxBxHxQxD = _flash(
        st,
        blocks(q_BxTxHxD, st.nq, st.bq),
        blocks(k_BxSxHxD, st.nk, st.bk),
        blocks(v_BxSxHxD, st.nk, st.bk),
        bias_NxBx1x1xK,
    )
    return o_NxBxHxQxD.transpose(1, 0, 3, 2, 4).reshape(b, st.nq * st.bq, h, d)[:, :t]


class _Static:
    """Shapes and the block schedule (hashable: a `nondiff_argnums` argument).

    visits[i, j]: query block i meets key block j (some query of block i sees some key of
    block j: under causal masking, j * bk <= (i + 1) * bq - 1 + (s - t)); key block 0
    always, so that a row that sees no key at all still gets its (uniform) weights.
    whole[i, j]: every query of block i sees every key of block j (no causal mask needed).
    Both are a prefix of each row and a suffix of each column.
    """

    def __init__(self, t: int, s: int, causal: bool, bq: int, bk: int, kv_masked: bool):
        self.t, self.s, self.causal, self.bq, self.bk = t, s, causal, bq, bk
        self.kv_masked = kv_masked
        self.nq, self.nk = -(-t // bq), -(-s // bk)
        i, j = np.arange(self.nq)[:, None], np.arange(self.nk)[None, :]
        self.visits = np.ones((self.nq, self.nk), bool)
        self.whole = np.ones((self.nq, self.nk), bool)
        if causal:
            self.visits = (j * bk <= (i + 1) * bq - 1 + (s - t)) | (j == 0)
            self.whole = (j + 1) * bk - 1 <= i * bq + (s - t)
        # Bias needed where the causal mask is not applied: kv masks, and (without the
        # causal mask, which already hides them from every real query) padding keys.
        self.bias_in_whole = kv_masked or (not causal and self.nk * bk > s)

    def _key(self):
        return (self.t, self.s, self.causal, self.bq, self.bk, self.kv_masked)

    def __hash__(self):
        return hash(self._key())

    def __eq__(self, other):
        return isinstance(other, _Static) and self._key() == other._key()

    def row_ranges(self):
        """Per query block: key blocks [0, a) whole, [a, b) visited with the causal mask."""
        a, b = self.whole.sum(1), self.visits.sum(1)
        return jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32)

    def column_ranges(self):
        """Per key block: query blocks [a, b) visited with the causal mask, [b, nq) whole."""
        a, b = self.nq - self.visits.sum(0), self.nq - self.whole.sum(0)
        return jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32)

    def scores(self, q_i, k_j, bias_j, i, j, masked: bool):
        """Scaled float32 scores `[B, H, bq, bk]` of query block i against key block j;
        with `masked`, the causal mask and the key bias, else the bias where needed."""
        s_ij = jnp.einsum("bhqd,bhkd->bhqk", q_i, k_j, preferred_element_type=jnp.float32)
        s_ij = s_ij * (1.0 / math.sqrt(q_i.shape[-1]))
        if masked or self.bias_in_whole:
            s_ij = s_ij + bias_j  # MASKED or _PAD swamp any real score
        if masked:
            rows = i * self.bq + jnp.arange(self.bq)[:, None] + (self.s - self.t)
            cols = j * self.bk + jnp.arange(self.bk)[None, :]
            s_ij = jnp.where(cols <= rows, s_ij, jnp.minimum(bias_j, MASKED))
        return s_ij


def _forward(st: _Static, q, k, v, bias):
    """Output `[Nq, B, H, bq, D]` (input dtype) and logsumexp `[Nq, B, H, bq]`."""
    _, b, h, _, d = q.shape
    whole_until, visit_until = st.row_ranges()

    def query_block(_, i):
        q_i = q[i]

        def key_block(masked):
            def body(j, carry):
                m, denom, acc = carry
                s_ij = st.scores(q_i, k[j], bias[j], i, j, masked)
                m_new = jnp.maximum(m, s_ij.max(-1))
                p_ij = jnp.exp(s_ij - m_new[..., None])
                alpha = jnp.exp(m - m_new)
                pv = jnp.einsum(
                    "bhqk,bhkd->bhqd",
                    p_ij.astype(v.dtype),
                    v[j],
                    preferred_element_type=jnp.float32,
                )
                return m_new, alpha * denom + p_ij.sum(-1), alpha[..., None] * acc + pv

            return body

        carry = (
            jnp.full((b, h, st.bq), -jnp.inf, jnp.float32),
            jnp.zeros((b, h, st.bq), jnp.float32),
            jnp.zeros((b, h, st.bq, d), jnp.float32),
        )
        carry = jax.lax.fori_loop(0, whole_until[i], key_block(False), carry)
        if st.causal:
            carry = jax.lax.fori_loop(whole_until[i], visit_until[i], key_block(True), carry)
        m, denom, acc = carry
        return None, (acc / denom[..., None], m + jnp.log(denom))

    _, (o, lse) = jax.lax.scan(query_block, None, jnp.arange(st.nq))
    if st.causal:
        # A row whose keys are all masked (its max stayed at MASKED) averages *all* S
        # values, as "full" does, also those in key blocks the schedule skipped.
        v_mean = v.transpose(1, 2, 0, 3, 4).reshape(b, h, -1, d)[:, :, : st.s]
        v_mean = v_mean.astype(jnp.float32).mean(2)[:, :, None]
        o = jnp.where((lse < 0.5 * MASKED)[..., None], v_mean, o)
    return o.astype(q.dtype), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(st: _Static, q, k, v, bias):
    return _forward(st, q, k, v, bias)[0]


def _flash_fwd(st, q, k, v, bias):
    o, lse = _forward(st, q, k, v, bias)
    return o, (q, k, v, bias, o, lse)


def _flash_bwd(st, residuals, do):
    """FlashAttention-2's backward: per key block j, over the query blocks i that visit it,
    p = exp(s - lse), dv_j += p^T do_i, ds = p (do_i v_j^T - delta_i), dq_i += ds k_j,
    dk_j += ds^T q_i (scaled)."""
    q, k, v, bias, o, lse = residuals
    _, b, h, _, d = q.shape
    scale = 1.0 / math.sqrt(d)
    delta = (do.astype(jnp.float32) * o.astype(jnp.float32)).sum(-1)  # [Nq, B, H, bq]
    all_masked = lse < 0.5 * MASKED
    # An all-masked row spreads weight 1/S over every real key and passes no gradient
    # to its (constant) masked scores; other rows use exp(s - lse) as they are.
    row_weight = jnp.where(all_masked, 1.0 / st.s, 1.0)[..., None]
    row_grad = jnp.where(all_masked, 0.0, scale)[..., None]
    masked_from, whole_from = st.column_ranges()

    def key_block(dq, j):
        k_j, v_j, bias_j = k[j], v[j], bias[j]

        def query_block(masked):
            def body(i, carry):
                dk_j, dv_j, dq = carry
                q_i, do_i = q[i], do[i]
                s_ij = st.scores(q_i, k_j, bias_j, i, j, masked)
                p_ij = jnp.exp(s_ij - lse[i][..., None]) * row_weight[i]
                dv_j = dv_j + jnp.einsum(
                    "bhqk,bhqd->bhkd",
                    p_ij.astype(do.dtype),
                    do_i,
                    preferred_element_type=jnp.float32,
                )
                dp_ij = jnp.einsum("bhqd,bhkd->bhqk", do_i, v_j, preferred_element_type=jnp.float32)
                ds_ij = (p_ij * (dp_ij - delta[i][..., None]) * row_grad[i]).astype(q.dtype)
                dq_i = jnp.einsum("bhqk,bhkd->bhqd", ds_ij, k_j, preferred_element_type=jnp.float32)
                dq = dq.at[i].add(dq_i)
                dk_j = dk_j + jnp.einsum(
                    "bhqk,bhqd->bhkd", ds_ij, q_i, preferred_element_type=jnp.float32
                )
                return dk_j, dv_j, dq

            return body

        zeros = jnp.zeros((b, h, st.bk, d), jnp.float32)
        carry = (zeros, zeros, dq)
        if st.causal:
            carry = jax.lax.fori_loop(masked_from[j], whole_from[j], query_block(True), carry)
        dk_j, dv_j, dq = jax.lax.fori_loop(whole_from[j], st.nq, query_block(False), carry)
        return dq, (dk_j, dv_j)

    dq, (dk, dv) = jax.lax.scan(key_block, jnp.zeros(q.shape, jnp.float32), jnp.arange(st.nk))
    if st.causal:  # all-masked rows' 1/S weights on the key blocks the schedule skipped
        u_NqxBxHxD = (do.astype(jnp.float32) * (all_masked[..., None] / st.s)).sum(3)
        skipped = jnp.asarray(~st.visits, jnp.float32)
        dv = dv + jnp.einsum("ij,ibhd->jbhd", skipped, u_NqxBxHxD)[:, :, :, None]
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_flash.defvjp(_flash_fwd, _flash_bwd)
