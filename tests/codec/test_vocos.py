"""The frame-rate codec (`architecture="vocos"`): lengths on the frame grid, the global
phase convention (a delay by one hop is one frame later, steady latents are not a
frame-rate buzz), what the decoder writes is what its inverse STFT makes, and one-line errors
for configs that cannot work."""

import flax.nnx as nnx
import jax.numpy as jnp
import numpy as np
import pytest

from codec.api import Codec
from codec.family import frame_spectrum_loss
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.vocos import VocosConfig
from mgcore import dsp
from mgcore.config import load_experiment
from mgcore.config_types import ConfigError


def vocos_config(**vocos) -> CodecConfig:
    sizes = dict(hop_length=80, n_fft=320, dim=16, encoder_depth=1, decoder_depth=1, dimension=8)
    return CodecConfig(
        sample_rate=8000,
        architecture="vocos",
        vocos=VocosConfig(**{**sizes, **vocos}),
        quantizer=QuantizerConfig(
            kind="factorized", num_codebooks=2, codebook_size=16, dim=8, codebook_dim=4
        ),
    )


def _model(config: CodecConfig) -> CodecModel:
    with nnx.use_eager_sharding(False):
        return CodecModel(config, rngs=nnx.Rngs(0))


def test_lengths_follow_the_frame_grid(rng):
    config = vocos_config()
    assert config.hop_length == 80 and config.frame_rate == 100.0 and config.latent_dim == 8
    assert config.frames_for(801) == 11
    model = _model(config)
    wav = rng.standard_normal((2, 801, 1)).astype(np.float32) * 0.1
    z = model.latents(jnp.asarray(wav))
    assert z.shape == (2, 11, 8)
    assert model.decode_latents(z).shape == (2, 11 * 80, 1)
    out, q = model(jnp.asarray(wav))
    assert out.shape == wav.shape and q.codes_BxKxF.shape == (2, 2, 11)


def test_a_shift_by_one_hop_is_one_frame_later_in_the_global_phase_convention(rng):
    model = _model(vocos_config())
    wav = rng.standard_normal((1, 80 * 40, 1)).astype(np.float32) * 0.1
    shifted = jnp.asarray(np.concatenate([np.zeros((1, 80, 1), np.float32), wav[:, :-80]], 1))
    z_shifted = np.asarray(model.latents(shifted))
    # Away from the ends (the STFT window and the convolutions reach a few frames), frame
    # j + 1 of the delayed signal is frame j of the original counted from frame 1.
    z_from_1 = np.asarray(model.latents(jnp.asarray(wav), first_frame=1))
    np.testing.assert_allclose(z_shifted[:, 11:30], z_from_1[:, 10:29], atol=1e-4)
    z_from_0 = np.asarray(model.latents(jnp.asarray(wav), first_frame=0))
    assert np.abs(z_shifted[:, 11:30] - z_from_0[:, 10:29]).max() > 1e-2
    # The angle repeats every n_fft / hop = 4 frames.
    z_from_4 = np.asarray(model.latents(jnp.asarray(wav), first_frame=4))
    np.testing.assert_allclose(z_from_4, z_from_0, atol=1e-5)


def test_steady_latents_decode_to_bin_tones_not_a_frame_rate_buzz():
    z = np.broadcast_to(np.random.default_rng(2).standard_normal((1, 1, 8)), (1, 64, 8))
    shares = {}
    for phase in ("global", "frame"):
        model = _model(vocos_config(phase=phase))
        y = np.asarray(model.decode_latents(jnp.asarray(z, jnp.float32)))[0, 640:-640, 0]
        power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
        hz = np.fft.rfftfreq(y.size, 1 / 8000)
        off_frame_rate = np.abs(hz - 100 * np.round(hz / 100)) > 5
        shares[phase] = power[off_frame_rate].sum() / power.sum()
    # Frames written alike every hop repeat every 10 ms: all power at multiples of the
    # 100 Hz frame rate. In the global convention each bin is a steady tone at its
    # centre (multiples of 25 Hz), so most of the power lies between those multiples.
    assert shares["frame"] < 0.05 and shares["global"] > 0.5, shares


def test_decoder_output_is_the_inverse_stft_of_its_head():
    config = vocos_config()
    model = _model(config)
    z = jnp.asarray(np.random.default_rng(1).standard_normal((1, 12, 8)), jnp.float32)
    first = 3  # these latents start at frame 3 of their file
    dec = model.decoder
    h = dec.norm_in(dec.embed(z))
    for block in dec.blocks:
        h = block(h)
    out = np.asarray(dec.head(dec.norm(h)))[0]  # [F, 2 * bins]
    bins = config.vocos.bins
    f_F = first + np.arange(12)
    turn = np.exp(2j * np.pi * np.arange(bins)[None, :] * f_F[:, None] * 80 / 320)
    spec = np.exp(np.minimum(out[:, :bins], 4.6)) * np.exp(1j * out[:, bins:]) * turn
    # Overlap-add of Hann-windowed inverse FFTs, normalised by the summed squared
    # window, trimmed by (n_fft - hop) / 2 on each side: 12 frames give 12 hops.
    full = np.asarray(dsp.istft(jnp.asarray(spec.T), 80, center=False))
    edge = (320 - 80) // 2
    np.testing.assert_allclose(
        np.asarray(dec(z, first))[0, :, 0], full[edge : edge + 12 * 80], rtol=1e-4, atol=1e-6
    )
    # What it hands the frame-spectrum loss: the same audio and the log magnitudes written.
    wav, log_mag = dec(z, first, with_log_magnitude=True)
    np.testing.assert_array_equal(wav, dec(z, first))
    np.testing.assert_allclose(np.asarray(log_mag)[0, 0], np.minimum(out[:, :bins], 4.6).T)


def test_frame_spectrum_loss_compares_the_decoders_frames_with_the_inputs(rng):
    model = _model(vocos_config())
    wav = jnp.asarray(rng.standard_normal((2, 250, 1)) * 0.1, jnp.float32)  # 3.1 hops
    _, _, log_mag = model(wav, with_log_magnitude=True)
    # The input padded to 4 whole hops, framed as the encoder frames it: Hann windows of
    # 320 centred on f * 80 + 40, turned to the global phase convention.
    edge = (320 - 80) // 2
    framed = np.pad(np.asarray(wav)[:, :, 0], ((0, 0), (edge, 70 + edge)))
    window = np.hanning(321)[:-1]  # periodic Hann
    spec = np.stack([np.fft.rfft(framed[:, f * 80 : f * 80 + 320] * window) for f in range(4)], -1)
    phase = np.exp(-2j * np.pi * np.arange(161)[:, None] * np.arange(4)[None] * 80 / 320)
    target = np.log(np.maximum(np.abs(spec * phase), 1e-5))[:, None]
    assert log_mag.shape == target.shape == (2, 1, 161, 4)
    np.testing.assert_allclose(
        frame_spectrum_loss(model, wav, log_mag),
        np.mean(np.abs(np.asarray(log_mag) - target)),
        rtol=1e-4,
    )
    with pytest.raises(ConfigError, match=r'needs model\.architecture="vocos"'):
        load_experiment("experiments/codec_tiny.py", ["loss.frame_spectrum=1.0"])


def test_saved_vocos_codec_loads_with_its_architecture(tmp_path, rng):
    config = vocos_config()
    codec = Codec(_model(config))
    wav = rng.standard_normal((1, 1, 1600)).astype(np.float32) * 0.1
    codec.save_pretrained(tmp_path / "c")
    loaded = Codec.from_pretrained(tmp_path / "c")
    assert loaded.config == config and loaded.config.architecture == "vocos"
    np.testing.assert_array_equal(loaded.encode(wav), codec.encode(wav))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_fft": 321}, "differ from it by an even number"),
        ({"n_fft": 40}, "must be at least hop_length"),
        ({"kernel_size": 4}, "must be odd"),
        ({"dimension": 12}, "vocos.dimension 12"),
        ({"compress": 0.0}, "compress"),
    ],
)
def test_configs_that_cannot_work_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        vocos_config(**changes)
    assert "\n" not in str(err.value)


def test_magnitude_input_gives_the_encoder_a_bins_loudness_whatever_its_phase():
    """A tone and the same tone a quarter period later: the real and imaginary channels
    differ (a linear layer sees a filter output whose sign turns with the phase); the
    magnitude channels that `encoder_input="magnitude"` adds are the same."""
    t = np.arange(800) / 8000.0
    hz = 1000.0  # bin 40 of 161 at n_fft 320
    a = np.sin(2 * np.pi * hz * t).astype(np.float32)
    b = np.sin(2 * np.pi * hz * t + np.pi / 2).astype(np.float32)
    wav = jnp.asarray(np.stack([a, b])[:, :, None])
    plain = _model(vocos_config(phase="frame")).encoder.features(wav)
    extra = _model(vocos_config(phase="frame", encoder_input="magnitude")).encoder.features(wav)
    bins = 161
    assert plain.shape == (2, 10, 2 * bins) and extra.shape == (2, 10, 3 * bins)
    np.testing.assert_array_equal(extra[..., : 2 * bins], plain)  # the same complex parts
    mid = slice(2, 8)  # frames clear of the padded edges
    complex_gap = float(jnp.abs(plain[0, mid, 40] - plain[1, mid, 40]).max())
    magnitude = extra[:, mid, 2 * bins + 40]
    assert complex_gap > 0.5 * float(magnitude.max())
    np.testing.assert_allclose(magnitude[0], magnitude[1], rtol=1e-3)
