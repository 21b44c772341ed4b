"""Objective codec quality metrics, as DAC reports them.

- `si_sdr`: scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019),
  higher is better; DAC's table reports it per bitrate.
- `mel_distance`: DAC's multi-scale mel distance (its 44 kHz mel loss: 7 windows,
  L1 of log10 mels), lower is better.
- `stft_distance`: DAC's multi-resolution STFT distance (windows 2048 and 512, L1 of
  magnitudes and of log power), lower is better.

Inputs are `[..., samples]` at one sample rate; every function returns one value per
leading index (e.g. per clip), so callers average as they see fit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mgcore import spectral_losses


def si_sdr(estimate: jax.Array, reference: jax.Array, eps: float = 1e-8) -> jax.Array:
    """SI-SDR in dB of `estimate` against `reference`, over the last axis, per clip.

    Both are made zero-mean first; the reference is scaled by the optimal gain.

    Args:
      estimate: `[B, ..., T]` decoded audio.
      reference: `[B, ..., T]` original audio.

    Returns:
      `[B]`: the mean over any axes between batch and time (channels).
    """
    estimate = estimate - jnp.mean(estimate, axis=-1, keepdims=True)
    reference = reference - jnp.mean(reference, axis=-1, keepdims=True)
    gain = jnp.sum(estimate * reference, -1, keepdims=True) / (
        jnp.sum(reference**2, -1, keepdims=True) + eps
    )
    target = gain * reference
    noise = estimate - target
    ratio = (jnp.sum(target**2, -1) + eps) / (jnp.sum(noise**2, -1) + eps)
    db = 10 * jnp.log10(ratio)
    return db.reshape(db.shape[0], -1).mean(-1)


def mel_distance(estimate: jax.Array, reference: jax.Array, sample_rate: int) -> jax.Array:
    """DAC's multi-scale mel distance per clip (`[B, ..., T]` in, `[B]` out)."""
    config = spectral_losses.MultiScaleMelLoss.dac(sample_rate)
    return jax.vmap(lambda e, r: spectral_losses.multi_scale_mel_loss(e, r, config))(
        estimate, reference
    )


def stft_distance(estimate: jax.Array, reference: jax.Array) -> jax.Array:
    """DAC's multi-resolution STFT distance per clip (`[B, ..., T]` in, `[B]` out)."""
    config = spectral_losses.MultiResolutionSTFTLoss.dac()
    return jax.vmap(lambda e, r: spectral_losses.multi_resolution_stft_loss(e, r, config))(
        estimate, reference
    )
