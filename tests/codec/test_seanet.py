"""Tests of codec.layers and codec.seanet against NumPy references of the torch layers.

The references re-state Hugging Face's EnCodec/DAC arithmetic in NumPy on torch's
channels-first layouts (weights `[out, in, width]` for convs, `[in, out, width]` for
transposed convs, `[4H, in]` for LSTMs), so they also check the parameter mapping the
weight import relies on.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from codec import layers
from codec.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from mgcore.sharding import DEFAULT_RULES

TINY_ENCODEC = SEANetConfig.encodec(n_filters=4, ratios=(2, 3), dimension=8, lstm_layers=2)
# Zero padding keeps it strictly causal: reflect padding would mirror samples from the
# right into the first frames.
TINY_ENCODEC_CAUSAL = SEANetConfig.encodec(
    n_filters=4,
    ratios=(2, 3),
    dimension=8,
    causal=True,
    pad_mode="constant",
    true_skip=False,
    lstm_layers=1,
)
TINY_DAC = SEANetConfig.dac(n_filters=4, ratios=(2, 4), dimension=16, decoder_dim=24)
TINY = {"encodec": TINY_ENCODEC, "encodec_causal": TINY_ENCODEC_CAUSAL, "dac": TINY_DAC}


@functools.cache
def build(cls, config, seed=0):
    """A model whose parameters are drawn with NumPy at the scale of Flax's init.

    The structure comes from `nnx.eval_shape` (tracing only): compiling the random init
    of every tiny model would take most of this file's run time, and weight-norm gains
    and Snake alphas away from their init values make the tests stricter. Cached: tests
    must not change the returned model's parameters.
    """
    with nnx.use_eager_sharding(False):  # logical axis names and no mesh
        abstract = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def draw(path, var):
        name, shape = path[-1].key, var.shape
        if name in ("kernel", "v"):  # [W, I, O]: torch's U(+-1/sqrt(I * W))
            bound = 1 / math.sqrt(shape[0] * shape[1])
            value = rng.uniform(-bound, bound, shape)
        elif name in ("w_ih", "w_hh", "b_ih", "b_hh"):  # last axis 4H
            bound = 1 / math.sqrt(shape[-1] // 4)
            value = rng.uniform(-bound, bound, shape)
        elif name in ("g", "alpha"):
            value = rng.uniform(0.4, 1.2, shape)
        else:  # bias
            value = rng.normal(0, 0.1, shape)
        return var.replace(jnp.asarray(value, jnp.float32))

    state = jax.tree.map_with_path(draw, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state)


@pytest.fixture(autouse=True)
def _float32_matmuls():
    # GPUs may run float32 convs and matmuls in TF32; the references are float64.
    with jax.default_matmul_precision("highest"):
        yield


# In tree mode modules are pytrees, so one jitted function applies any of them; it
# recompiles per module structure and input shape only.
call = jax.jit(lambda module, x: module(x))


# ---------------------------------------------------------------- NumPy references


def np_conv1d(x_BxIxT, w_OxIxW, b_O, stride=1, dilation=1):
    """torch `F.conv1d` with no padding."""
    width = w_OxIxW.shape[-1]
    span = (width - 1) * dilation + 1
    n_out = (x_BxIxT.shape[-1] - span) // stride + 1
    idx = np.arange(n_out)[:, None] * stride + np.arange(width)[None, :] * dilation
    windows_BxIxFxW = x_BxIxT[:, :, idx]
    return np.einsum("bifw,oiw->bof", windows_BxIxFxW, w_OxIxW) + b_O[None, :, None]


def np_conv_transpose1d(x_BxIxT, w_IxOxW, b_O, stride, padding=0):
    """torch `F.conv_transpose1d`: scatter each input sample times the kernel."""
    batch, _, length = x_BxIxT.shape
    width = w_IxOxW.shape[-1]
    full = np.zeros((batch, w_IxOxW.shape[1], (length - 1) * stride + width))
    for t in range(length):
        full[:, :, t * stride : t * stride + width] += np.einsum(
            "bi,iow->bow", x_BxIxT[:, :, t], w_IxOxW
        )
    out = full[:, :, padding : full.shape[-1] - padding]
    return out + b_O[None, :, None]


def np_encodec_pad(x_BxCxT, kernel_size, stride, dilation, causal, mode):
    """EnCodec's `EncodecConv1d` padding, as HF writes it (float division and ceil)."""
    length = x_BxCxT.shape[-1]
    kernel = (kernel_size - 1) * dilation + 1
    total = kernel - stride
    n_frames = (length - kernel + total) / stride + 1
    extra = (math.ceil(n_frames) - 1) * stride + kernel - total - length
    left, right = (total, extra) if causal else (total - total // 2, total // 2 + extra)
    if mode == "constant":
        return np.pad(x_BxCxT, ((0, 0), (0, 0), (left, right)))
    pad_zero = max(left, right) - length + 1 if length <= max(left, right) else 0
    x_BxCxT = np.pad(x_BxCxT, ((0, 0), (0, 0), (0, pad_zero)))
    padded = np.pad(x_BxCxT, ((0, 0), (0, 0), (left, right)), mode="reflect")
    return padded[..., : padded.shape[-1] - pad_zero]


def np_lstm(x_TxBxI, weights, skip=True):
    """torch `nn.LSTM` (zero initial state) on `[T, B, I]`; weights per layer in torch layout."""
    h_seq = x_TxBxI
    for w_ih, w_hh, b_ih, b_hh in weights:
        hidden = w_hh.shape[1]
        h = np.zeros((x_TxBxI.shape[1], hidden))
        c = np.zeros_like(h)
        outs = []
        for x_t in h_seq:
            gates = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = np.split(gates, 4, axis=-1)
            sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        h_seq = np.stack(outs)
    return h_seq + x_TxBxI if skip else h_seq


def to_torch_layout(x_BxTxC):
    return np.asarray(x_BxTxC, np.float64).transpose(0, 2, 1)


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "padding,pad_mode,stride,dilation,length",
    [
        ("noncausal", "reflect", 1, 1, 11),
        ("noncausal", "reflect", 3, 1, 10),
        ("noncausal", "reflect", 1, 2, 3),  # shorter than the reflect pad: EnCodec's zero trick
        ("causal", "reflect", 2, 1, 9),
        ("causal", "constant", 1, 3, 8),
        ("noncausal", "constant", 5, 1, 13),
    ],
)
def test_conv1d_matches_encodec_padding(rng, padding, pad_mode, stride, dilation, length):
    kernel_size = 2 * stride if stride > 1 else 4
    with nnx.use_eager_sharding(False):
        conv = layers.Conv1d(
            3,
            5,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=padding,
            pad_mode=pad_mode,
            rngs=nnx.Rngs(0),
        )
    w_OxIxW = rng.normal(size=(5, 3, kernel_size))
    b_O = rng.normal(size=5)
    conv.kernel[...] = jnp.asarray(w_OxIxW.transpose(2, 1, 0), jnp.float32)
    conv.bias[...] = jnp.asarray(b_O, jnp.float32)
    x_BxTxI = rng.normal(size=(2, length, 3)).astype(np.float32)

    padded = np_encodec_pad(
        to_torch_layout(x_BxTxI), kernel_size, stride, dilation, padding == "causal", pad_mode
    )
    want_BxOxT = np_conv1d(padded, w_OxIxW, b_O, stride, dilation)
    got_BxTxO = np.asarray(call(conv, jnp.asarray(x_BxTxI)))
    np.testing.assert_allclose(got_BxTxO.transpose(0, 2, 1), want_BxOxT, atol=1e-5)
    assert got_BxTxO.shape[1] == math.ceil(length / stride)
    assert got_BxTxO.shape[1] == layers.conv_output_length(
        length, kernel_size, stride, dilation, padding
    )


def test_conv1d_int_padding_is_torch_padding(rng):
    with nnx.use_eager_sharding(False):
        conv = layers.Conv1d(2, 4, 8, stride=4, padding=2, rngs=nnx.Rngs(0))  # DAC: k=2s, ceil(s/2)
    w_OxIxW = rng.normal(size=(4, 2, 8))
    conv.kernel[...] = jnp.asarray(w_OxIxW.transpose(2, 1, 0), jnp.float32)
    x_BxTxI = rng.normal(size=(1, 16, 2)).astype(np.float32)
    padded = np.pad(to_torch_layout(x_BxTxI), ((0, 0), (0, 0), (2, 2)))
    want = np_conv1d(padded, w_OxIxW, np.zeros(4), stride=4)
    got = np.asarray(call(conv, jnp.asarray(x_BxTxI))).transpose(0, 2, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.shape[-1] == 4


@pytest.mark.parametrize(
    "padding,stride,trim_right_ratio",
    [(2, 4, 1.0), (2, 3, 1.0), ("noncausal", 3, 1.0), ("causal", 4, 1.0), ("causal", 5, 0.5)],
)
def test_conv_transpose1d_matches_torch(rng, padding, stride, trim_right_ratio):
    kernel_size = 2 * stride
    with nnx.use_eager_sharding(False):
        conv = layers.ConvTranspose1d(
            3,
            2,
            kernel_size,
            stride=stride,
            padding=padding,
            trim_right_ratio=trim_right_ratio,
            rngs=nnx.Rngs(0),
        )
    w_IxOxW = rng.normal(size=(3, 2, kernel_size))
    b_O = rng.normal(size=2)
    conv.kernel[...] = jnp.asarray(w_IxOxW.transpose(2, 0, 1), jnp.float32)
    conv.bias[...] = jnp.asarray(b_O, jnp.float32)
    x_BxTxI = rng.normal(size=(2, 5, 3)).astype(np.float32)

    if isinstance(padding, int):
        want = np_conv_transpose1d(to_torch_layout(x_BxTxI), w_IxOxW, b_O, stride, padding)
    else:  # EnCodec: full output, then trim kernel - stride samples
        full = np_conv_transpose1d(to_torch_layout(x_BxTxI), w_IxOxW, b_O, stride)
        total = kernel_size - stride
        right = math.ceil(total * trim_right_ratio) if padding == "causal" else total // 2
        want = full[..., total - right : full.shape[-1] - right]
    got = np.asarray(call(conv, jnp.asarray(x_BxTxI))).transpose(0, 2, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    if not isinstance(padding, int):
        assert got.shape[-1] == 5 * stride


def test_weight_norm_kernel(rng):
    with nnx.use_eager_sharding(False):
        conv = layers.Conv1d(3, 4, 5, use_weight_norm=True, rngs=nnx.Rngs(0))
        plain = layers.Conv1d(3, 4, 5, rngs=nnx.Rngs(0))
        convt = layers.ConvTranspose1d(3, 4, 6, stride=3, use_weight_norm=True, rngs=nnx.Rngs(0))
    # At init g = ||v||: the effective kernel is the plain layer's initial kernel.
    np.testing.assert_allclose(conv.effective_kernel(), conv.v[...], rtol=1e-6)
    np.testing.assert_allclose(conv.effective_kernel(), plain.kernel[...], rtol=1e-6)
    np.testing.assert_allclose(convt.effective_kernel(), convt.v[...], rtol=1e-6)
    assert conv.g.shape == (4,) and convt.g.shape == (3,)  # torch dim 0: out resp. in channel

    # torch weight_norm(dim=0) from torch-layout weight_v / weight_g.
    v_OxIxW, g_O = rng.normal(size=(4, 3, 5)), rng.uniform(0.5, 2.0, size=4)
    conv.v[...] = jnp.asarray(v_OxIxW.transpose(2, 1, 0), jnp.float32)
    conv.g[...] = jnp.asarray(g_O, jnp.float32)
    w_OxIxW = v_OxIxW * (g_O / np.sqrt((v_OxIxW**2).sum(axis=(1, 2))))[:, None, None]
    np.testing.assert_allclose(conv.effective_kernel(), w_OxIxW.transpose(2, 1, 0), rtol=1e-5)
    # ...and the forward pass applies that kernel.
    x_BxTxI = jnp.asarray(rng.normal(size=(1, 9, 3)), jnp.float32)
    plain.kernel[...] = jnp.asarray(w_OxIxW.transpose(2, 1, 0), jnp.float32)
    np.testing.assert_allclose(call(conv, x_BxTxI), call(plain, x_BxTxI), rtol=1e-5, atol=1e-6)

    v_IxOxW, g_I = rng.normal(size=(3, 4, 6)), rng.uniform(0.5, 2.0, size=3)
    convt.v[...] = jnp.asarray(v_IxOxW.transpose(2, 0, 1), jnp.float32)
    convt.g[...] = jnp.asarray(g_I, jnp.float32)
    w_IxOxW = v_IxOxW * (g_I / np.sqrt((v_IxOxW**2).sum(axis=(1, 2))))[:, None, None]
    np.testing.assert_allclose(convt.effective_kernel(), w_IxOxW.transpose(2, 0, 1), rtol=1e-5)


def test_snake_matches_formula(rng):
    with nnx.use_eager_sharding(False):
        snake = layers.Snake1d(3, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(snake.alpha[...], np.ones(3))
    alpha = np.array([0.5, 1.0, 3.0])
    snake.alpha[...] = jnp.asarray(alpha, jnp.float32)
    x = rng.normal(size=(2, 7, 3)) * 3
    want = x + 1.0 / (alpha + 1e-9) * np.sin(alpha * x) ** 2
    np.testing.assert_allclose(call(snake, jnp.asarray(x, jnp.float32)), want, rtol=1e-5, atol=1e-6)


def test_lstm_matches_torch_equations(rng):
    dim, n_layers = 6, 2
    with nnx.use_eager_sharding(False):
        lstm = layers.LSTM(dim, n_layers, rngs=nnx.Rngs(0))
    weights = []
    for layer in lstm.layers:  # torch layout: weight_ih_l{k} [4H, I], weight_hh_l{k} [4H, H]
        w_ih, w_hh = rng.normal(size=(4 * dim, dim)) * 0.5, rng.normal(size=(4 * dim, dim)) * 0.5
        b_ih, b_hh = rng.normal(size=4 * dim), rng.normal(size=4 * dim)
        layer.w_ih[...] = jnp.asarray(w_ih.T, jnp.float32)
        layer.w_hh[...] = jnp.asarray(w_hh.T, jnp.float32)
        layer.b_ih[...] = jnp.asarray(b_ih, jnp.float32)
        layer.b_hh[...] = jnp.asarray(b_hh, jnp.float32)
        weights.append((w_ih, w_hh, b_ih, b_hh))
    x_BxTxD = rng.normal(size=(3, 9, dim))
    want_TxBxD = np_lstm(x_BxTxD.transpose(1, 0, 2), weights)
    got = call(lstm, jnp.asarray(x_BxTxD, jnp.float32))
    np.testing.assert_allclose(got, want_TxBxD.transpose(1, 0, 2), atol=2e-5)


# ---------------------------------------------------------------- encoder / decoder


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_and_frames_for(rng, name):
    config = TINY[name]
    encoder, decoder = build(SEANetEncoder, config), build(SEANetDecoder, config, seed=1)
    hop, channels = config.hop_length, config.channels
    if config.style == "dac":  # DAC's preprocessing right-pads to a whole number of hops
        lengths = [hop, 3 * hop, 7 * hop]
    else:  # EnCodec pads inside; 1 sample is shorter than the reflect pads
        lengths = [1, hop - 1, 4 * hop + 1, 50, 10 * hop]
    for length in lengths:
        z = jax.eval_shape(call, encoder, jax.ShapeDtypeStruct((2, length, channels), jnp.float32))
        frames = math.ceil(length / hop)
        assert z.shape == (2, frames, config.dimension)
        assert config.frames_for(length) == frames
        out = jax.eval_shape(call, decoder, z)
        assert out.shape == (2, frames * hop, channels)
        assert config.samples_for(frames) == frames * hop

    wav = jnp.asarray(rng.normal(size=(2, lengths[-1], channels)), jnp.float32)
    out = np.asarray(call(decoder, call(encoder, wav)))
    assert np.isfinite(out).all() and out.std() > 1e-4
    if config.final_tanh:
        assert np.abs(out).max() <= 1


def test_frames_for_dac_unpadded_input():
    # Without the caller's padding DAC's convs floor; frames_for follows the encoder.
    encoder = build(SEANetEncoder, TINY_DAC)
    for length in (9, 13, 30, 31):
        wav = jax.ShapeDtypeStruct((1, length, 1), jnp.float32)
        assert jax.eval_shape(call, encoder, wav).shape[1] == TINY_DAC.frames_for(length)
    assert [TINY_DAC.frames_for(n) for n in (7, 8, 9, 15, 16)] == [0, 1, 1, 1, 2]


def test_styles_agree_where_their_padding_does(rng):
    # Odd kernels, even strides, constant padding and whole hops: EnCodec's non-causal
    # arithmetic pads exactly as DAC's torch ints do, so the same weights give the same z.
    as_encodec = dataclasses.replace(TINY_DAC, style="encodec")
    dac, encodec = build(SEANetEncoder, TINY_DAC), build(SEANetEncoder, as_encodec)
    wav = jnp.asarray(rng.normal(size=(2, 7 * TINY_DAC.hop_length, 1)), jnp.float32)
    np.testing.assert_allclose(call(dac, wav), call(encodec, wav), rtol=1e-6, atol=1e-6)
    dec_dac = build(SEANetDecoder, TINY_DAC)
    dec_encodec = build(SEANetDecoder, as_encodec)
    z = call(dac, wav)
    np.testing.assert_allclose(call(dec_dac, z), call(dec_encodec, z), rtol=1e-6, atol=1e-6)
    # Off whole hops they part: EnCodec pads the last frame, DAC drops it.
    assert as_encodec.frames_for(13) == 2 and TINY_DAC.frames_for(13) == 1


def test_causal_encoder_ignores_future_samples(rng):
    config = TINY_ENCODEC_CAUSAL
    encoder = build(SEANetEncoder, config)
    hop, n_frames = config.hop_length, 10
    wav = rng.normal(size=(2, n_frames * hop, 1)).astype(np.float32)
    z = np.asarray(call(encoder, jnp.asarray(wav)))
    for f in (0, 3, 8):
        changed = wav.copy()
        changed[:, (f + 1) * hop :] = rng.normal(size=changed[:, (f + 1) * hop :].shape)
        z2 = np.asarray(call(encoder, jnp.asarray(changed)))
        np.testing.assert_array_equal(z2[:, : f + 1], z[:, : f + 1])
        assert not np.allclose(z2[:, f + 1 :], z[:, f + 1 :])
    # The non-causal encoder looks ahead: the same kind of change moves earlier frames.
    acausal = build(SEANetEncoder, dataclasses.replace(config, causal=False))
    changed = wav.copy()
    changed[:, 4 * hop :] = 0
    before = np.asarray(call(acausal, jnp.asarray(wav)))[:, :4]
    assert not np.allclose(np.asarray(call(acausal, jnp.asarray(changed)))[:, :4], before)


@pytest.mark.parametrize("name", ["encodec_causal", "dac"])
def test_gradients_are_finite(rng, name):
    # One resolution keeps the compile of the backward pass short.
    config = dataclasses.replace(TINY[name], ratios=(4,), n_residual_layers=1)
    encoder, decoder = build(SEANetEncoder, config), build(SEANetDecoder, config, seed=1)
    graphdef, state = nnx.split((encoder, decoder))
    wav = jnp.asarray(rng.normal(size=(2, 4 * config.hop_length, 1)) * 0.3, jnp.float32)

    def loss_fn(state):
        enc, dec = nnx.merge(graphdef, state)
        return jnp.mean((dec(enc(wav)) - wav) ** 2)

    grads = jax.jit(jax.grad(loss_fn))(state)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert sum(float(jnp.abs(g).sum()) > 0 for g in leaves) > 0.9 * len(leaves)


def test_jitted_split_merge_round_trip(rng):
    config = TINY_ENCODEC
    encoder, decoder = build(SEANetEncoder, config), build(SEANetDecoder, config, seed=1)
    graphdef, state = nnx.split((encoder, decoder))
    wav = jnp.asarray(rng.normal(size=(2, 10 * config.hop_length, 1)), jnp.float32)

    @jax.jit
    def run(state, wav):
        enc, dec = nnx.merge(graphdef, state)
        return dec(enc(wav))

    direct = np.asarray(call(decoder, call(encoder, wav)))
    np.testing.assert_array_equal(np.asarray(run(state, wav)), direct)
    # Through a host copy of the state and back (what a checkpoint round trip does).
    restored = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state)
    merged_enc, merged_dec = nnx.merge(graphdef, restored)
    np.testing.assert_array_equal(np.asarray(call(merged_dec, call(merged_enc, wav))), direct)


def _param_shapes(module_cls, config):
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: module_cls(config, rngs=nnx.Rngs(0)))
    return {
        ".".join(str(getattr(k, "key", k)) for k in path): var
        for path, var in jax.tree.leaves_with_path(
            nnx.split(abstract)[1], is_leaf=lambda x: isinstance(x, nnx.Variable)
        )
    }


def test_presets_match_pretrained_layouts():
    encodec = SEANetConfig.encodec()
    assert encodec.hop_length == 640 and encodec.ratios == (4, 4, 5, 8)
    enc = _param_shapes(SEANetEncoder, encodec)
    dec = _param_shapes(SEANetDecoder, encodec)
    assert enc["conv_in.v"].shape == (7, 1, 64)  # torch weight_v [64, 1, 7]
    assert enc["blocks.3.conv.v"].shape == (16, 512, 1024)  # last stride-8 conv
    assert enc["blocks.0.res.0.conv1.v"].shape == (3, 64, 32)
    assert "blocks.0.res.0.shortcut.v" not in enc  # use_conv_shortcut=False
    assert enc["lstm.layers.1.w_ih"].shape == (1024, 4096)
    assert enc["conv_out.v"].shape == (7, 1024, 128)
    assert dec["blocks.0.conv.v"].shape == (16, 1024, 512)
    assert dec["blocks.0.conv.g"].shape == (1024,)  # transposed conv: g per input channel

    dac = SEANetConfig.dac()
    assert dac.hop_length == 512 and dac.encoder_width == 1024
    enc = _param_shapes(SEANetEncoder, dac)
    dec = _param_shapes(SEANetDecoder, dac)
    assert enc["blocks.0.res.2.conv1.v"].shape == (7, 64, 64)
    assert enc["blocks.3.conv.v"].shape == (16, 512, 1024)
    assert enc["conv_out.v"].shape == (3, 1024, 1024)
    assert dec["conv_in.v"].shape == (7, 1024, 1536)
    assert dec["blocks.0.conv.v"].shape == (16, 1536, 768)
    assert dec["blocks.3.res.0.act1.alpha"].shape == (96,)
    assert dec["conv_out.v"].shape == (7, 96, 1)

    known = {name for name, _ in DEFAULT_RULES}
    for params in (enc, dec, _param_shapes(SEANetEncoder, encodec)):
        for name, var in params.items():
            axes = var.get_metadata()["out_sharding"]
            assert len(axes) == len(var.shape) and set(axes) <= known, name
