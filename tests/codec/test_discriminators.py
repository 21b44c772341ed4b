"""Discriminators: shapes, the period fold, band split, STFT features, sharding, jit."""

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal
from flax import nnx
from jax.sharding import PartitionSpec

from codec import adversarial
from codec.discriminators import (
    DiscriminatorConfig,
    Discriminators,
    period_reshape,
)
from codec.stft_discriminators import (
    DAC_BANDS,
    BandSpectrogramDiscriminator,
    Conv2d,
    band_bins,
    dac_stft_features,
    encodec_stft_features,
)
from mgcore import sharding

# One of each family, as few convs as possible: the CPU compile time grows with them.
TINY = DiscriminatorConfig(
    periods=(3,),
    period_channels=(4, 4),
    mrd_windows=(64,),
    mrd_bands=((0.0, 0.25), (0.25, 1.0)),
    mrd_channels=4,
    msstft_n_ffts=(64,),
    msstft_filters=4,
    msstft_dilations=(1,),
)


@functools.cache
def _tiny():
    """(graphdef, state) of TINY, built once: initialised under jit as in training, with an
    RNG that XLA compiles in a fraction of threefry's time (the draws don't matter here)."""
    mesh = sharding.make_mesh(sharding.MeshConfig())
    key = jax.random.key(0, impl="unsafe_rbg")
    return sharding.init_sharded(lambda: Discriminators(TINY, rngs=nnx.Rngs(key)), mesh)


@pytest.fixture
def tiny():
    return _tiny()


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, wav_BxTxC):
    return nnx.merge(graphdef, state)(wav_BxTxC)


def _ceil_div(a, b):
    return -(-a // b)


def _expected_shapes(config, t):
    """(logits shape without batch, [feature map shapes without batch]) per output."""
    out = []
    for p in config.periods:
        h = (t + p - t % p) // p
        maps = []
        for i, ch in enumerate(config.period_channels):
            h = _ceil_div(h, 3) if i < len(config.period_channels) - 1 else h
            maps.append((h, p, ch))
        out.append(((h, p), maps))
    for w in config.mrd_windows:
        frames, ch, maps, widths = _ceil_div(t, w // 4), config.mrd_channels, [], []
        for start, stop in band_bins(w // 2 + 1, config.mrd_bands):
            f = stop - start
            maps.append((frames, f, ch))
            for _ in range(3):
                f = _ceil_div(f, 2)
                maps.append((frames, f, ch))
            maps.append((frames, f, ch))
            widths.append(f)
        out.append(((frames, sum(widths)), maps))
    for n in config.msstft_n_ffts:
        frames, f, ch = 1 + (t - n) // (n // 4), n // 2 + 1, config.msstft_filters
        maps = [(frames, f, ch)]
        for _ in config.msstft_dilations:
            f = _ceil_div(f, 2)
            maps.append((frames, f, ch))
        maps.append((frames, f, ch))
        out.append(((frames, f), maps))
    return out


@pytest.mark.parametrize(("t", "channels"), [(512, 1), (517, 1), (385, 2)])
def test_output_counts_and_shapes(t, channels):
    config = DiscriminatorConfig.debug()  # DAC's five bands; shapes only, so no compile
    with nnx.use_eager_sharding(False):
        graphdef, state = nnx.split(
            nnx.eval_shape(lambda: Discriminators(config, rngs=nnx.Rngs(0)))
        )
    wav = jax.ShapeDtypeStruct((2, t, channels), jnp.float32)
    outs = jax.eval_shape(lambda s, w: nnx.merge(graphdef, s)(w), state, wav)
    names = nnx.merge(graphdef, state).names
    assert names == ["mpd_2", "mpd_3", "mrd_128", "mrd_64", "msstft_128", "msstft_64"]
    expected = _expected_shapes(config, t)
    assert len(outs) == len(expected) == 6
    for out, (logits_shape, map_shapes) in zip(outs, expected, strict=True):
        assert out.logits.shape == (2 * channels, *logits_shape)
        assert [m.shape for m in out.feature_maps] == [(2 * channels, *s) for s in map_shapes]
    # 3 MPD layers, 5 bands x 5 MRD layers, 2 + 2 MS-STFT-D layers
    assert [len(o.feature_maps) for o in outs] == [3, 3, 25, 25, 4, 4]
    if t == 512:  # the formulas above, written out once
        assert [o.logits.shape[1:] for o in outs] == [
            (29, 2),
            (19, 3),
            (16, 10),
            (32, 6),
            (13, 17),
            (29, 9),
        ]


def test_stereo_folds_channels_into_batch(tiny, rng):
    graphdef, state = tiny
    wav = jnp.asarray(rng.uniform(-1, 1, (2, 300, 2)), jnp.float32)
    # channel 1 of each item must come out at rows 1 and 3 of the fold; one call for both
    outs = _forward(graphdef, state, jnp.concatenate([wav, wav[:, :, ::-1]], axis=0))
    for out in outs:
        logits = np.asarray(out.logits)
        np.testing.assert_allclose(logits[[1, 3]], logits[[4, 6]], atol=1e-6)
        np.testing.assert_allclose(logits[[0, 2]], logits[[5, 7]], atol=1e-6)
        assert np.abs(logits[0] - logits[1]).max() > 0


def test_too_short_input_and_odd_mrd_window_are_refused(tiny):
    graphdef, state = tiny
    assert TINY.min_length == 64 and DiscriminatorConfig.dac().min_length == 2048
    with pytest.raises(ValueError, match="63 samples is shorter than the 64 needed"):
        nnx.merge(graphdef, state)(jnp.zeros((1, 63, 1)))
    with nnx.use_eager_sharding(False), pytest.raises(ValueError, match="multiple of 8"):
        BandSpectrogramDiscriminator(100, rngs=nnx.Rngs(0))


def test_period_reshape_places_sample_t_p_plus_j_at_t_j():
    x = jnp.arange(10.0)[None]
    # T=10, p=3: reflect-pad 2 samples (8, 7), then rows of 3
    np.testing.assert_array_equal(
        period_reshape(x, 3)[0], [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 8, 7]]
    )
    # T divisible by p: DAC still pads a whole period (9 -> 8, 7, 6)
    np.testing.assert_array_equal(period_reshape(x[:, :9], 3)[0, -1], [7, 6, 5])
    x_np = np.random.default_rng(0).normal(size=(2, 101)).astype(np.float32)
    for p in (2, 5, 7, 11):
        folded = np.asarray(period_reshape(jnp.asarray(x_np), p))
        t_idx, j_idx = np.meshgrid(np.arange(101 // p), np.arange(p), indexing="ij")
        np.testing.assert_array_equal(folded[:, t_idx, j_idx], x_np[:, t_idx * p + j_idx])


def test_period_discriminator_sees_one_column_per_phase(tiny, rng):
    """A bump at sample t*p + j moves only column j of the first layer, rows near t."""
    graphdef, state = tiny
    p, t, j = 3, 40, 2
    x = jnp.asarray(rng.normal(size=(1, 300, 1)), jnp.float32)
    outs = _forward(graphdef, state, jnp.concatenate([x, x.at[0, t * p + j].add(1.0)]))
    maps = np.asarray(outs[TINY.periods.index(p)].feature_maps[0])
    rows, cols = np.nonzero(np.abs(maps[1] - maps[0]).max(axis=-1) > 0)
    assert set(cols) == {j}
    # first conv: kernel 5, stride 3, padding 2, so output row r reads rows 3r-2 .. 3r+2
    assert set(rows) == {13, 14}


def test_band_split_covers_every_bin_once():
    assert band_bins(1025, DAC_BANDS) == ((0, 102), (102, 256), (256, 512), (512, 768), (768, 1025))
    assert band_bins(513, DAC_BANDS) == ((0, 51), (51, 128), (128, 256), (256, 384), (384, 513))
    assert band_bins(257, DAC_BANDS) == ((0, 25), (25, 64), (64, 128), (128, 192), (192, 257))
    for window in (2048, 1024, 512, 128, 64):
        n = window // 2 + 1
        covered = np.concatenate([np.arange(a, b) for a, b in band_bins(n, DAC_BANDS)])
        np.testing.assert_array_equal(covered, np.arange(n))
    with pytest.raises(ValueError, match="empty band"):
        band_bins(5, DAC_BANDS)


def test_dac_stft_features_match_numpy_rfft(rng):
    w, hop, t = 64, 16, 300
    x = rng.uniform(-1, 1, (2, t)).astype(np.float32)
    feats = np.asarray(dac_stft_features(jnp.asarray(x), w))
    assert feats.shape == (2, math.ceil(t / hop), w // 2 + 1, 2)
    win = scipy.signal.get_window("hann", w)  # periodic, as torch.hann_window
    # match_stride: frame k covers x[k*hop - 3w/8 : k*hop + 5w/8], centred mid-hop
    for k in (3, 7, 12):
        start = k * hop - 3 * w // 8
        ref = np.fft.rfft(x[:, start : start + w] * win, axis=-1)
        np.testing.assert_allclose(feats[:, k, :, 0], ref.real, atol=2e-5)
        np.testing.assert_allclose(feats[:, k, :, 1], ref.imag, atol=2e-5)
    # frame 0 reaches into audiotools' two reflect paddings
    right = math.ceil(t / hop) * hop - t
    padded = np.pad(x, ((0, 0), (3 * w // 8, 3 * w // 8 + right)), mode="reflect")
    padded = np.pad(padded, ((0, 0), (w // 2, w // 2)), mode="reflect")
    ref0 = np.fft.rfft(padded[:, 2 * hop : 2 * hop + w] * win, axis=-1)
    np.testing.assert_allclose(feats[:, 0, :, 0] + 1j * feats[:, 0, :, 1], ref0, atol=2e-5)


def test_encodec_stft_features_match_numpy_rfft(rng):
    n, hop, t = 128, 32, 500
    x = rng.uniform(-1, 1, (3, t)).astype(np.float32)
    feats = np.asarray(encodec_stft_features(jnp.asarray(x), n))
    assert feats.shape == (3, 1 + (t - n) // hop, n // 2 + 1, 2)
    win = scipy.signal.get_window("hann", n)
    for k in (0, 5, feats.shape[1] - 1):
        ref = np.fft.rfft(x[:, k * hop : k * hop + n] * win, axis=-1) / np.sqrt(np.sum(win**2))
        np.testing.assert_allclose(feats[:, k, :, 0], ref.real, atol=1e-5)
        np.testing.assert_allclose(feats[:, k, :, 1], ref.imag, atol=1e-5)


def test_weight_norm_starts_at_v_and_ignores_the_scale_of_v():
    with nnx.use_eager_sharding(False):
        conv = Conv2d(3, 4, (3, 9), rngs=nnx.Rngs(jax.random.key(0, impl="unsafe_rbg")))
    v = np.asarray(conv.v[...])
    np.testing.assert_allclose(conv.g[...], np.sqrt((v**2).sum(axis=(0, 1, 2))), rtol=1e-6)
    np.testing.assert_allclose(conv.weight(), v, rtol=1e-5, atol=1e-7)
    bound = 1 / math.sqrt(3 * 3 * 9)  # PyTorch's default init range
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound
    conv.v[...] = 7.0 * conv.v[...]
    np.testing.assert_allclose(conv.weight(), v, rtol=1e-5, atol=1e-7)


def _param_count(config):
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Discriminators(config, rngs=nnx.Rngs(0)))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_presets_and_parameter_counts():
    dac, encodec = DiscriminatorConfig.dac(), DiscriminatorConfig.encodec()
    assert dac.periods == (2, 3, 5, 7, 11) and dac.mrd_windows == (2048, 1024, 512)
    assert dac.peak_normalize and not dac.msstft_n_ffts
    assert encodec.msstft_n_ffts == (1024, 2048, 512, 256, 128) and not encodec.periods

    def wn(kh, kw, c_in, c_out):  # v, g, bias
        return kh * kw * c_in * c_out + 2 * c_out

    widths = (1, 32, 128, 512, 1024, 1024)
    mpd = sum(wn(5, 1, a, b) for a, b in itertools.pairwise(widths)) + wn(3, 1, 1024, 1)
    band = wn(3, 9, 2, 32) + 3 * wn(3, 9, 32, 32) + wn(3, 3, 32, 32)
    mrd = 5 * band + wn(3, 3, 32, 1)
    assert _param_count(dac) == 5 * mpd + 3 * mrd == 42_519_760
    scale = (3 * 9 * 2 * 32 + 32) + 3 * wn(3, 9, 32, 32) + wn(3, 3, 32, 32) + wn(3, 3, 32, 1)
    assert _param_count(encodec) == 5 * scale == 472_330


def test_parameters_carry_logical_axes(tiny):
    _, state = tiny
    variables = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    axes = {v.get_metadata().get("out_sharding") for v in variables}
    assert axes == {("conv_width", None, "conv_in", "conv_out"), ("conv_out",)}
    kernel = sharding.logical_to_mesh(("conv_width", None, "conv_in", "conv_out"))
    assert kernel == PartitionSpec(None, None, "fsdp", "tensor")
    # the first MS-STFT-D conv has a plain kernel, every other conv a weight-normed one
    first = state["msstft"][0]["convs"][0]
    assert set(first) == {"kernel", "bias"}
    assert set(state["msstft"][0]["convs"][1]) == {"v", "g", "bias"}


def _sines_and_noise(rng, n=8, t=300):
    """Real: sines of random pitch and phase. Fake: white noise of the same RMS."""
    freq_Bx1 = rng.uniform(0.02, 0.12, (n, 1))
    phase_Bx1 = rng.uniform(0, 2 * np.pi, (n, 1))
    real_BxT = 0.5 * np.sin(2 * np.pi * freq_Bx1 * np.arange(t) + phase_Bx1)
    fake_BxT = 0.5 / np.sqrt(2) * rng.normal(size=(n, t))
    return real_BxT[..., None].astype(np.float32), fake_BxT[..., None].astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _grads(graphdef, params, real, fake):
    """Hinge loss of the discriminator and its parameter gradients; the gradient of the
    generator's adversarial + relative feature-matching loss with respect to `fake`."""

    def d_loss(params):
        disc = nnx.merge(graphdef, params)
        d_fake = disc(jax.lax.stop_gradient(fake))  # the generator is not trained here
        return adversarial.discriminator_loss(disc(real), d_fake, kind="hinge")

    def g_loss(fake):
        disc = nnx.merge(graphdef, jax.lax.stop_gradient(params))
        real_out, fake_out = disc(real), disc(fake)
        adv = adversarial.generator_loss(fake_out, kind="hinge")
        return adv + adversarial.feature_matching_loss(real_out, fake_out, relative=True)

    loss, param_grads = jax.value_and_grad(d_loss)(params)
    return loss, param_grads, jax.grad(g_loss)(fake)


def test_gradients_are_finite(tiny, rng):
    graphdef, params = tiny
    real, fake = _sines_and_noise(rng)
    loss, param_grads, wav_grad = _grads(graphdef, params, real, fake)
    assert abs(float(loss) - 2.0) < 0.05  # logits start near 0: relu(1 - 0) + relu(1 + 0)
    for path, g in jax.tree_util.tree_leaves_with_path(param_grads):
        assert np.isfinite(g).all()
        if "post" in jax.tree_util.keystr(path) and "bias" in jax.tree_util.keystr(path):
            # hinge with every logit inside (-1, 1): a shift of all logits costs nothing
            assert float(jnp.abs(g).max()) == 0
        else:
            assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)
    assert np.isfinite(wav_grad).all() and float(jnp.abs(wav_grad).max()) > 0


def test_jitted_split_merge_round_trip(tiny, rng):
    graphdef, state = tiny
    wav = jnp.asarray(rng.uniform(-1, 1, (2, 300, 1)), jnp.float32)
    first, second = _forward(graphdef, state, wav), _forward(graphdef, state, wav)
    graphdef_again, state_again = nnx.split(nnx.merge(graphdef, state))
    third = _forward(graphdef_again, state_again, wav)
    for a, b, c in zip(first, second, third, strict=True):
        for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c), strict=True):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(first[0].logits).max()) > 0


def test_peak_normalize_is_gain_and_offset_invariant(tiny, rng):
    _, state = tiny  # same parameters, DAC's input normalisation switched on
    config = dataclasses.replace(TINY, peak_normalize=True)
    with nnx.use_eager_sharding(False):
        graphdef = nnx.split(nnx.eval_shape(lambda: Discriminators(config, rngs=nnx.Rngs(0))))[0]
    wav = jnp.asarray(rng.uniform(-1, 1, (1, 300, 1)), jnp.float32)
    outs = _forward(graphdef, state, jnp.concatenate([wav, 0.25 * wav + 0.1]))
    for out in outs:
        np.testing.assert_allclose(out.logits[0], out.logits[1], rtol=1e-4, atol=1e-6)


def test_tiny_discriminator_learns_sines_from_noise(tiny, rng):
    graphdef, params = tiny
    optimizer = optax.adam(3e-2)
    update, apply = jax.jit(optimizer.update), jax.jit(optax.apply_updates)
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(50):  # a fresh batch each step: each loss is on audio not yet trained on
        loss, grads, _ = _grads(graphdef, params, *_sines_and_noise(rng))
        updates, opt_state = update(grads, opt_state, params)
        params = apply(params, updates)
        losses.append(loss)
    losses = np.asarray(losses)
    assert np.isfinite(losses).all()
    assert losses[0] > 1.9
    # from 2.0 to well under a quarter of that (0.2 to 0.4 over data seeds)
    assert losses[-5:].mean() < 0.5, losses
