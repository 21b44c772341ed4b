"""Audio quality metrics against NumPy formulas and known answers."""

import numpy as np
import pytest
import scipy.signal

from mgcore import audio_metrics


def test_si_sdr_matches_the_numpy_definition_and_ignores_gain(rng):
    ref = rng.standard_normal((3, 1, 4000)).astype(np.float32)
    est = (0.5 * ref + 0.1 * rng.standard_normal(ref.shape)).astype(np.float32)
    got = np.asarray(audio_metrics.si_sdr(est, ref))
    for b in range(3):
        r, e = ref[b, 0] - ref[b, 0].mean(), est[b, 0] - est[b, 0].mean()
        target = (e @ r) / (r @ r) * r
        want = 10 * np.log10((target @ target) / ((e - target) @ (e - target)))
        assert got[b] == pytest.approx(want, rel=1e-4)
    np.testing.assert_allclose(audio_metrics.si_sdr(3.0 * est, ref), got, rtol=1e-4)


def test_log_spectral_distance_of_a_gain_is_the_gain_in_db(rng):
    ref = rng.standard_normal((2, 8000)).astype(np.float32)
    assert np.asarray(audio_metrics.log_spectral_distance(ref, ref, 16000)).max() == 0.0
    louder = ref * 10 ** (3.0 / 20)  # +3 dB everywhere
    got = audio_metrics.log_spectral_distance(louder, ref, 16000, min_hz=2000, n_fft=512)
    np.testing.assert_allclose(got, 3.0, rtol=1e-4)


def test_log_spectral_distance_above_a_cutoff_sees_only_the_high_band(rng):
    sr = 44100
    ref = rng.standard_normal((1, sr)).astype(np.float32)
    sos = scipy.signal.butter(12, 8000, fs=sr, output="sos")
    low = scipy.signal.sosfilt(sos, ref).astype(np.float32)  # nothing left above ~8 kHz
    high = float(audio_metrics.log_spectral_distance(low, ref, sr, min_hz=10000)[0])
    below = float(audio_metrics.log_spectral_distance(low, ref, sr, max_hz=6000)[0])
    assert high > 40 and below < 3, (high, below)
    with pytest.raises(ValueError, match="no FFT bin"):
        audio_metrics.log_spectral_distance(low, ref, sr, min_hz=30000)
