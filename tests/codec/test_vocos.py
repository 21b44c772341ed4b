"""The frame-rate codec (`architecture="vocos"`): lengths on the frame grid, a shift by one
hop shifts the codes by one frame, what the decoder writes is what its inverse STFT
makes, and one-line errors for configs that cannot work."""

import flax.nnx as nnx
import jax.numpy as jnp
import numpy as np
import pytest

from codec.api import Codec
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.vocos import VocosConfig
from mgcore import dsp
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


def test_a_shift_by_one_hop_shifts_the_latents_by_one_frame(rng):
    model = _model(vocos_config())
    wav = rng.standard_normal((1, 80 * 40, 1)).astype(np.float32) * 0.1
    shifted = np.concatenate([np.zeros((1, 80, 1), np.float32), wav[:, :-80]], axis=1)
    z, z_shifted = (np.asarray(model.latents(jnp.asarray(w))) for w in (wav, shifted))
    # Away from the ends (the STFT window and the convolutions reach a few frames), the
    # encoder is the same function of each frame's neighbourhood.
    np.testing.assert_allclose(z_shifted[:, 11:30], z[:, 10:29], atol=1e-4)


def test_decoder_output_is_the_inverse_stft_of_its_head():
    config = vocos_config()
    model = _model(config)
    z = jnp.asarray(np.random.default_rng(1).standard_normal((1, 12, 8)), jnp.float32)
    dec = model.decoder
    h = dec.norm_in(dec.embed(z))
    for block in dec.blocks:
        h = block(h)
    out = np.asarray(dec.head(dec.norm(h)))[0]  # [F, 2 * bins]
    bins = config.vocos.bins
    spec = np.exp(np.minimum(out[:, :bins], 4.6)) * np.exp(1j * out[:, bins:])
    # Overlap-add of Hann-windowed inverse FFTs, normalised by the summed squared
    # window, trimmed by (n_fft - hop) / 2 on each side: 12 frames give 12 hops.
    full = np.asarray(dsp.istft(jnp.asarray(spec.T), 80, center=False))
    edge = (320 - 80) // 2
    np.testing.assert_allclose(
        np.asarray(dec(z))[0, :, 0], full[edge : edge + 12 * 80], rtol=1e-4, atol=1e-6
    )


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
