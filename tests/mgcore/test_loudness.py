"""Loudness against pyloudnorm (BS.1770-4), librosa's RMS and the standard's coefficients."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from mgcore import loudness
from tests.helpers import relative_error

TOL = 1e-5


def _music_like(rng, channels, seconds, sr):
    """Noise with a loud and a near-silent stretch, so both gates matter."""
    x = 0.2 * rng.standard_normal((channels, int(seconds * sr)))
    x[:, : x.shape[1] // 3] *= 1e-3
    x[:, -x.shape[1] // 5 :] *= 0.05
    return x.astype(np.float32)


@pytest.mark.parametrize(
    ("sr", "channels", "seconds"),
    [(44100, 2, 3.3), (48000, 1, 1.0), (16000, 5, 2.05), (32000, 2, 0.41)],
)
def test_integrated_loudness_matches_pyloudnorm(rng, sr, channels, seconds):
    x = _music_like(rng, channels, seconds, sr)
    ref = pyloudnorm.Meter(sr).integrated_loudness(x.T.astype(np.float64).squeeze())
    ours = jax.jit(lambda a: loudness.integrated_loudness(a, sr))(x)
    assert relative_error(ours, ref) <= TOL


def test_k_weighting_matches_recursive_filter(rng):
    x = rng.standard_normal((2, 44100)).astype(np.float32)
    ref = x.astype(np.float64)
    for b, a in loudness.k_weighting_coefficients(44100):
        ref = scipy.signal.lfilter(b, a, ref, axis=-1)
    assert relative_error(loudness.k_weight(x, 44100), ref) <= TOL


def test_k_weighting_coefficients_match_bs1770_at_48k():
    (b1, a1), (_, a2) = loudness.k_weighting_coefficients(48000)
    # ITU-R BS.1770-4, tables 1 and 2 (the high-pass numerator there is not
    # normalised to unit gain, so only its poles are comparable).
    np.testing.assert_allclose(
        b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=2e-4
    )
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=2e-4)
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=2e-4)


def test_rms_matches_librosa(rng):
    x = rng.uniform(-1, 1, (2, 5000)).astype(np.float32)
    ref = librosa.feature.rms(
        y=x.reshape(-1).astype(np.float64), frame_length=x.size, hop_length=x.size, center=False
    )[0, 0]
    assert relative_error(loudness.rms(x), ref) <= TOL


def test_normalisation_reaches_each_target_per_example(rng):
    batch = np.stack([_music_like(rng, 2, 2.0, 32000), 0.01 * _music_like(rng, 2, 2.0, 32000)])
    out = loudness.normalize_loudness(batch, 32000, target_lufs=-23.0)
    np.testing.assert_allclose(loudness.integrated_loudness(out, 32000), [-23.0, -23.0], atol=1e-3)
    out = loudness.normalize_rms(batch, target_db=-20.0)
    np.testing.assert_allclose(20 * np.log10(loudness.rms(out)), [-20.0, -20.0], atol=1e-4)


def test_silence_is_left_alone():
    silence = np.zeros((2, 16000), np.float32)
    assert float(loudness.integrated_loudness(silence, 16000)) == -np.inf
    np.testing.assert_array_equal(loudness.normalize_loudness(silence, 16000), silence)
    np.testing.assert_array_equal(loudness.normalize_rms(silence), silence)


def test_bfloat16_in_bfloat16_out(rng):
    x = jnp.asarray(_music_like(rng, 2, 1.0, 16000), jnp.bfloat16)
    out = loudness.normalize_loudness(x, 16000, -14.0)
    assert out.dtype == jnp.bfloat16
    assert abs(float(loudness.integrated_loudness(out.astype(jnp.float32), 16000)) + 14.0) < 0.1


def test_gain_is_differentiable(rng):
    x = jnp.asarray(_music_like(rng, 1, 1.0, 16000))
    grad = jax.grad(lambda g: loudness.integrated_loudness(g * x, 16000).sum())(1.0)
    # d LUFS / d gain = 20 / (ln 10 * gain): 8.686 at gain 1.
    assert abs(float(grad) - 20 / np.log(10)) < 1e-3


def test_too_short_for_a_block_is_refused():
    with pytest.raises(ValueError, match=r"at least 0\.4 s"):
        loudness.integrated_loudness(np.zeros((1, 1000), np.float32), 16000)


def test_numpy_in_numpy_out_equals_the_jax_path(rng):
    # Data workers call these on NumPy arrays and must not start JAX.
    x = _music_like(rng, 2, 1.5, 22050)
    on_host = loudness.integrated_loudness(x, 22050)
    on_jax = loudness.integrated_loudness(jnp.asarray(x), 22050)
    assert isinstance(on_host, (np.ndarray, np.generic)) and not isinstance(on_host, jax.Array)
    assert relative_error(on_host, np.asarray(on_jax)) <= TOL
    normed = loudness.normalize_loudness(x, 22050, -20.0)
    assert isinstance(normed, np.ndarray) and normed.dtype == np.float32
    np.testing.assert_allclose(
        normed, loudness.normalize_loudness(jnp.asarray(x), 22050, -20.0), rtol=1e-5, atol=1e-7
    )
