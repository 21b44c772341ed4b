"""DSP parity with librosa (float64 references) on fresh random inputs."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from mgcore import dsp
from tests.helpers import relative_error

TOL = 1e-5  # the bound for float32

STFT_CASES = [
    # n_fft, hop, win_length, window, center, pad_mode
    (512, 128, None, "hann", True, "constant"),
    (1024, 256, 800, "hann", True, "reflect"),
    (2048, 512, None, "hann", True, "reflect"),
    (400, 160, None, "hamming", True, "constant"),
    (256, 100, 200, "blackman", False, "constant"),
    (32, 8, None, "hann", True, "reflect"),
]


def _signal(rng, *shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize(("n_fft", "hop", "win", "window", "center", "pad_mode"), STFT_CASES)
def test_stft_matches_librosa(rng, n_fft, hop, win, window, center, pad_mode):
    x = _signal(rng, 2, 3, 4000 + int(rng.integers(0, 300)))
    ours = dsp.stft(x, n_fft, hop, win, window, center, pad_mode)
    ref = librosa.stft(
        x.astype(np.float64),
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window=window,
        center=center,
        pad_mode=pad_mode,
    )
    assert ours.dtype == jnp.complex64
    assert ours.shape[-1] == dsp.num_frames(x.shape[-1], n_fft, hop, center)
    assert relative_error(ours, ref) <= TOL


@pytest.mark.parametrize(("n_fft", "hop", "win", "window", "center", "pad_mode"), STFT_CASES)
def test_istft_matches_librosa(rng, n_fft, hop, win, window, center, pad_mode):
    spec = dsp.stft(_signal(rng, 2, 5000), n_fft, hop, win, window, center, pad_mode)
    ours = dsp.istft(spec, hop, win, window, center, length=5000 if center else None)
    ref = librosa.istft(
        np.asarray(spec).astype(np.complex128),
        hop_length=hop,
        win_length=win,
        n_fft=n_fft,
        window=window,
        center=center,
        length=5000 if center else None,
    )
    if not center:
        # Where the summed window is ~0 (the very first and last samples) both
        # divide rounding noise by ~0; compare where the signal is recoverable.
        ours, ref = np.asarray(ours)[..., n_fft:-n_fft], ref[..., n_fft:-n_fft]
    assert relative_error(ours, ref) <= TOL


@pytest.mark.parametrize(("n_fft", "hop", "win", "window", "center", "pad_mode"), STFT_CASES)
def test_istft_of_stft_reconstructs_the_signal(rng, n_fft, hop, win, window, center, pad_mode):
    x = _signal(rng, 3, 6000)
    y = np.asarray(
        dsp.istft(
            dsp.stft(x, n_fft, hop, win, window, center, pad_mode),
            hop,
            win,
            window,
            center,
            length=x.shape[-1],
        )
    )
    if not center:
        x, y = x[..., n_fft:-n_fft], y[..., n_fft:-n_fft]
    assert relative_error(y, x) <= TOL
    assert np.abs(y - x).max() <= TOL


def test_istft_pads_to_a_longer_length(rng):
    x = _signal(rng, 1000)
    y = dsp.istft(dsp.stft(x, 256, 64), 64, length=1300)
    assert y.shape == (1300,)
    np.testing.assert_allclose(np.asarray(y)[:1000], x, atol=TOL)


@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(44100, 2048, 128, 0.0, None), (16000, 512, 40, 20.0, 7600.0), (32000, 1024, 64, 0.0, None)],
)
def test_mel_filterbank_matches_librosa(htk, norm, sr, n_fft, n_mels, fmin, fmax):
    ours = dsp.mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm)
    ref = librosa.filters.mel(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        htk=htk,
        norm=norm,
        dtype=np.float64,
    )
    assert relative_error(ours, ref) <= TOL


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_matches_librosa_and_inverts(htk):
    hz = np.array([0.0, 20.0, 500.0, 999.0, 1000.0, 1001.0, 8000.0, 22050.0])
    np.testing.assert_allclose(dsp.hz_to_mel(hz, htk), librosa.hz_to_mel(hz, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(
        dsp.mel_to_hz(dsp.hz_to_mel(hz, htk), htk), hz, rtol=1e-12, atol=1e-9
    )


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_mel_spectrogram_matches_librosa(rng, power):
    x = _signal(rng, 2, 8000)
    ours = dsp.mel_spectrogram(x, 16000, 1024, 256, power=power, n_mels=80, fmin=30.0, fmax=7000.0)
    ref = librosa.feature.melspectrogram(
        y=x.astype(np.float64),
        sr=16000,
        n_fft=1024,
        hop_length=256,
        power=power,
        n_mels=80,
        fmin=30.0,
        fmax=7000.0,
    )
    assert relative_error(ours, ref) <= TOL


@pytest.mark.parametrize("top_db", [80.0, None])
def test_log_mel_matches_librosa(rng, top_db):
    x = _signal(rng, 22050)
    x[:5000] *= 1e-4  # a quiet stretch, so the floor and top_db are exercised
    ours = dsp.log_mel_spectrogram(x, 22050, 2048, 512, 128, top_db=top_db)
    mel = librosa.feature.melspectrogram(
        y=x.astype(np.float64), sr=22050, n_fft=2048, hop_length=512, n_mels=128
    )
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db)
    assert relative_error(ours, ref) <= TOL


def test_log_mel_treats_batch_entries_independently(rng):
    loud, quiet = _signal(rng, 8000), 1e-3 * _signal(rng, 8000)
    batch = dsp.log_mel_spectrogram(np.stack([loud, quiet]), 16000, 512, 128, 64)
    alone = dsp.log_mel_spectrogram(quiet, 16000, 512, 128, 64)
    np.testing.assert_allclose(batch[1], alone, rtol=1e-6, atol=1e-4)


def test_jit_matches_eager_and_gradients_are_finite(rng):
    x = jnp.asarray(_signal(rng, 2, 4000))
    eager = dsp.mel_spectrogram(x, 16000, 512, 128, power=1.0, n_mels=40)
    jitted = jax.jit(lambda s: dsp.mel_spectrogram(s, 16000, 512, 128, power=1.0, n_mels=40))(x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    # Magnitude spectrograms have a kink at 0: the gradient there must be 0, not NaN.
    silent = jnp.zeros((4000,), jnp.float32)
    grad = jax.grad(lambda s: dsp.mel_spectrogram(s, 16000, 512, 128, power=1.0).sum())(silent)
    assert bool(jnp.isfinite(grad).all())


def test_stft_gradient_matches_finite_differences(rng):
    x = jnp.asarray(_signal(rng, 600), jnp.float32)
    direction = jnp.asarray(_signal(rng, 600))

    def energy(s):
        return jnp.sum(dsp.magnitude(dsp.stft(s, 128, 32), 2.0))

    analytic = jnp.vdot(jax.grad(energy)(x), direction)
    eps = 1e-2
    numeric = (energy(x + eps * direction) - energy(x - eps * direction)) / (2 * eps)
    # energy is quadratic in x, so the central difference is exact up to rounding.
    assert abs(float(analytic) - float(numeric)) <= 1e-4 * abs(float(numeric))


def test_bfloat16_input_is_computed_in_float32(rng):
    x16 = jnp.asarray(_signal(rng, 2, 4000), jnp.bfloat16)
    from_bf16 = dsp.stft(x16, 512, 128)
    from_f32 = dsp.stft(x16.astype(jnp.float32), 512, 128)
    np.testing.assert_array_equal(from_bf16, from_f32)
    mel = dsp.log_mel_spectrogram(x16, 16000, 512, 128, 40)
    assert mel.dtype == jnp.float32 and bool(jnp.isfinite(mel).all())


@pytest.mark.gpu
def test_stft_on_accelerator_matches_cpu(rng):
    x = _signal(rng, 4, 16000)
    cpu = jax.device_put(x, jax.devices("cpu")[0])
    on_cpu = np.asarray(jax.jit(lambda s: dsp.stft(s, 1024, 256))(cpu))
    on_acc = np.asarray(jax.jit(lambda s: dsp.stft(s, 1024, 256))(jax.device_put(x)))
    assert relative_error(on_acc, on_cpu) <= TOL
