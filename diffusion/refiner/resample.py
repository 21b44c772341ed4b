"""Band-limited resampling inside the graph, by zero-padding or truncating the spectrum.

The refiner moves audio between the codec's rate (16 or 32 kHz) and 44.1 kHz in its
training step (the target is cut to the codec's rate, coded and decoded, and the coarse
audio brought back up) and in every sampling window. Doing that on the host with soxr
would split the step into device and host parts; this function keeps it one jitted
program. It is the ideal (brick-wall) resampler of a periodic signal:

    rfft the segment, keep the bins below the lower of the two Nyquist frequencies,
    pad with zeros (up) or drop the rest (down), irfft to the new length.

The rate ratio reduced to lowest terms, up/down (16 kHz -> 44.1 kHz is 441/160, 32 kHz
-> 44.1 kHz 441/320), fixes which lengths work: the input length must be a multiple of
`down`, so the output length T * up / down is whole and both segments span the same
time exactly. Up then down returns the input to float rounding; down then up returns
its band below the lower Nyquist frequency.

The segment is treated as one period, so a segment whose end does not meet its start
rings a little at both edges (Gibbs); the refiner trains on crops resampled the same
way and samples long inputs in overlapping windows whose edges are cross-faded away.
The baseline the refiner is judged against ("codec decoding resampled to 44.1 kHz")
uses soxr on the host (`mgcore.audio.resample`); on a band-limited signal the two agree
closely away from the segment's edges (tests/diffusion/refiner/test_refiner.py measures it).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def rate_ratio(orig_sr: int, target_sr: int) -> tuple[int, int]:
    """(up, down): target_sr / orig_sr in lowest terms."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    g = math.gcd(int(orig_sr), int(target_sr))
    return int(target_sr) // g, int(orig_sr) // g


def resampled_length(length: int, orig_sr: int, target_sr: int) -> int:
    """The output length of `resample` for `length` input samples (which must fit)."""
    up, down = rate_ratio(orig_sr, target_sr)
    if length % down:
        raise ValueError(
            f"FFT resampling {orig_sr} -> {target_sr} Hz needs a length that is a multiple "
            f"of {down} samples, got {length}"
        )
    return length // down * up


def resample(x: jax.Array, orig_sr: int, target_sr: int) -> jax.Array:
    """Resamples the last axis from `orig_sr` to `target_sr` through the spectrum.

    Args:
      x: `[..., T]` real signal; T must be a multiple of the reduced ratio's denominator
        (`rate_ratio(orig_sr, target_sr)[1]`).
      orig_sr, target_sr: sample rates in Hz (static).

    Returns:
      float32 `[..., T * up / down]`.
    """
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[-1]
    m = resampled_length(n, orig_sr, target_sr)
    if m == n:
        return x
    spec = jnp.fft.rfft(x, axis=-1)
    shorter = min(n, m)
    keep = shorter // 2 + 1
    spec = spec[..., :keep]
    if shorter % 2 == 0:
        # The shorter length's Nyquist bin: going up, its real cosine is split between the
        # +/- frequencies of the longer spectrum (half here, irfft mirrors it); going down,
        # the +/- bins fold onto one real bin (twice the real part).
        nyquist = spec[..., -1]
        nyquist = nyquist.real / 2 if m > n else 2 * nyquist.real
        spec = spec.at[..., -1].set(nyquist.astype(spec.dtype))
    pad = m // 2 + 1 - keep
    spec = jnp.pad(spec, [(0, 0)] * (spec.ndim - 1) + [(0, pad)])
    return jnp.fft.irfft(spec, n=m, axis=-1) * (m / n)
