"""Codec losses against NumPy formulas over librosa spectrograms (float64)."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from mgcore import spectral_losses as sl
from tests.helpers import relative_error

TOL = 1e-5


def _pair(rng, *shape):
    target = rng.uniform(-1, 1, shape).astype(np.float32)
    pred = (target + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    return pred, target


def _reference_stft_loss(pred, target, cfg):
    total = 0.0
    for n_fft, hop, win in cfg.resolutions():
        mag = [
            np.abs(
                librosa.stft(
                    s.astype(np.float64),
                    n_fft=n_fft,
                    hop_length=hop,
                    win_length=win,
                    window=cfg.window,
                    pad_mode="reflect",
                )
            )
            for s in (pred, target)
        ]
        total += cfg.mag_weight * np.mean(np.abs(mag[0] - mag[1]))
        logs = [cfg.log_pow * np.log10(np.maximum(m, cfg.eps)) for m in mag]
        total += cfg.log_weight * np.mean(np.abs(logs[0] - logs[1]))
        if cfg.sc_weight:
            sc = np.linalg.norm(mag[1] - mag[0], axis=(-2, -1)) / np.linalg.norm(
                mag[1], axis=(-2, -1)
            )
            total += cfg.sc_weight * np.mean(sc)
    return total


def _reference_mel_loss(pred, target, cfg):
    total = 0.0
    for win, n_mels in zip(cfg.window_lengths, cfg.n_mels, strict=True):
        mels = [
            librosa.feature.melspectrogram(
                y=s.astype(np.float64),
                sr=cfg.sample_rate,
                n_fft=win,
                hop_length=win // 4,
                pad_mode="reflect",
                power=cfg.power,
                n_mels=n_mels,
                fmin=cfg.fmin,
                fmax=cfg.fmax,
                htk=cfg.htk,
                norm=cfg.norm,
            )
            for s in (pred, target)
        ]
        total += cfg.mag_weight * np.mean(np.abs(mels[0] - mels[1]))
        if cfg.log_floor == "clamp":
            logs = [np.log10(np.maximum(m, cfg.eps)) for m in mels]
        else:
            logs = [np.log10(m + cfg.eps) for m in mels]
        total += cfg.log_weight * np.mean(np.abs(logs[0] - logs[1]))
        alpha = np.sqrt(win - 1) if cfg.log_mse_alpha else 1.0
        total += cfg.log_mse_weight * alpha * np.mean((logs[0] - logs[1]) ** 2)
    return total


STFT_CONFIGS = {
    "dac": sl.MultiResolutionSTFTLoss.dac(),
    "parallel_wavegan": sl.MultiResolutionSTFTLoss.parallel_wavegan(),
}
MEL_CONFIGS = {
    "dac": sl.MultiScaleMelLoss.dac(44100),
    "encodec": sl.MultiScaleMelLoss.encodec(32000),
}


@pytest.mark.parametrize("name", STFT_CONFIGS)
def test_stft_loss_matches_reference(rng, name):
    cfg = STFT_CONFIGS[name]
    pred, target = _pair(rng, 2, 1, 6000)
    ours = jax.jit(lambda p, t: sl.multi_resolution_stft_loss(p, t, cfg))(pred, target)
    assert relative_error(ours, _reference_stft_loss(pred, target, cfg)) <= TOL


@pytest.mark.parametrize("name", MEL_CONFIGS)
def test_mel_loss_matches_reference(rng, name):
    cfg = MEL_CONFIGS[name]
    pred, target = _pair(rng, 2, 1, 6000)
    ours = jax.jit(lambda p, t: sl.multi_scale_mel_loss(p, t, cfg))(pred, target)
    assert relative_error(ours, _reference_mel_loss(pred, target, cfg)) <= TOL


def _losses():
    return [("stft", c, sl.multi_resolution_stft_loss) for c in STFT_CONFIGS.values()] + [
        ("mel", c, sl.multi_scale_mel_loss) for c in MEL_CONFIGS.values()
    ]


@pytest.mark.parametrize(("kind", "cfg", "fn"), _losses())
def test_loss_is_zero_on_identity_and_grows_with_error(rng, kind, cfg, fn):
    target = rng.uniform(-1, 1, (2, 4000)).astype(np.float32)
    noise = rng.standard_normal(target.shape).astype(np.float32)
    assert float(fn(target, target, cfg)) == 0.0
    small, large = (float(fn(target + a * noise, target, cfg)) for a in (0.01, 0.3))
    assert 0.0 < small < large


@pytest.mark.parametrize(("kind", "cfg", "fn"), _losses())
def test_loss_gradients_are_finite_even_from_silence(rng, kind, cfg, fn):
    target = jnp.asarray(rng.uniform(-1, 1, (1, 4000)), jnp.float32)
    # From digital silence |S| has a kink (DAC) or a zero derivative (EnCodec's
    # power mels): the gradient must be finite there, not NaN.
    grad_fn = jax.jit(jax.grad(lambda p: fn(p, target, cfg)))
    silent = grad_fn(jnp.zeros_like(target))
    assert bool(jnp.isfinite(silent).all())
    noise = jnp.asarray(0.1 * rng.standard_normal(target.shape), jnp.float32)
    grad = grad_fn(noise)
    assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).max()) > 0


@pytest.mark.parametrize(("kind", "cfg", "fn"), _losses())
def test_bfloat16_inputs_give_a_float32_loss_close_to_float32(rng, kind, cfg, fn):
    pred, target = _pair(rng, 1, 4000)
    full = float(fn(pred, target, cfg))
    half = fn(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16), cfg)
    assert half.dtype == jnp.float32
    assert abs(float(half) - full) <= 0.02 * full


def test_mismatched_scale_lists_are_refused():
    with pytest.raises(ValueError, match="n_mels has 2 entries, expected 3"):
        sl.MultiScaleMelLoss(16000, window_lengths=(64, 128, 256), n_mels=(10, 20))
