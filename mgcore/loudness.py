"""Loudness measurement and normalisation in JAX: RMS and ITU-R BS.1770-4 (LUFS).

Integrated loudness follows BS.1770-4 as pyloudnorm implements it: K-weighting
(a +4 dB high shelf at 1500 Hz, then a 38 Hz high-pass, both RBJ biquads
recomputed for the actual sample rate), mean square over 400 ms blocks with 75 %
overlap, an absolute gate at -70 LUFS, a relative gate 10 LU below the
ungated level, and channel weights 1, 1, 1, 1.41, 1.41 (L, R, C, Ls, Rs).

The K-weighting IIR is applied as an FFT convolution with its impulse response
truncated at 0.75 s, where it has decayed by hundreds of orders of magnitude, so
the result equals the recursive filter to float precision while staying parallel
and differentiable (a sample-by-sample recursion would not be).

Audio is `[..., channels, samples]`; the leading axes are independent examples.
Every function follows its input: a JAX array (or a tracer inside `jit`) is
computed with `jax.numpy`, differentiably; a NumPy array with NumPy, so data
loader workers normalise loudness without starting JAX (which on a GPU host
would claim the accelerator in every worker).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

BLOCK_SECONDS = 0.4
BLOCK_OVERLAP = 0.75
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


def _namespace(x):
    """`jax.numpy` for JAX arrays and tracers, NumPy for everything else."""
    return jnp if isinstance(x, jax.Array) else np


def _with_channel_axis(x):
    """Mono `[T]` becomes `[1, T]`; `[..., C, T]` is returned as it is."""
    x = _namespace(x).asarray(x)
    return x[None] if x.ndim == 1 else x


def rms(x: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """Root mean square over channels and samples: `[..., C, T] -> [...]` (float32)."""
    xp = _namespace(x)
    x = _with_channel_axis(x)
    return xp.sqrt(xp.mean(xp.square(x.astype(xp.float32)), axis=(-2, -1)))


def _apply_gain(x, gain):
    xp = _namespace(x)
    if x.ndim > 1:
        gain = gain[..., None, None]
    return (x.astype(xp.float32) * gain).astype(x.dtype)


def normalize_rms(
    x: jax.Array | np.ndarray, target_db: float = -20.0, eps: float = 1e-8
) -> jax.Array | np.ndarray:
    """Scales each example to an RMS of `target_db` dBFS; silence stays silent."""
    xp = _namespace(x)
    x = xp.asarray(x)
    level = rms(x)
    gain = xp.where(level > eps, 10.0 ** (target_db / 20.0) / xp.maximum(level, eps), 1.0)
    return _apply_gain(x, gain.astype(xp.float32))


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: int):
    """RBJ Audio-EQ-Cookbook biquad coefficients `(b, a)`, normalised so a[0] = 1."""
    a_lin = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * fc / rate
    alpha = np.sin(w0) / (2.0 * q)
    cos = np.cos(w0)
    if kind == "high_shelf":
        sq = 2.0 * np.sqrt(a_lin) * alpha
        b = [
            a_lin * ((a_lin + 1) + (a_lin - 1) * cos + sq),
            -2.0 * a_lin * ((a_lin - 1) + (a_lin + 1) * cos),
            a_lin * ((a_lin + 1) + (a_lin - 1) * cos - sq),
        ]
        a = [
            (a_lin + 1) - (a_lin - 1) * cos + sq,
            2.0 * ((a_lin - 1) - (a_lin + 1) * cos),
            (a_lin + 1) - (a_lin - 1) * cos - sq,
        ]
    elif kind == "high_pass":
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2.0 * cos, 1 - alpha]
    else:
        raise ValueError(kind)
    b, a = np.asarray(b), np.asarray(a)
    return b / a[0], a / a[0]


def k_weighting_coefficients(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting stages `[(b, a), (b, a)]` at `rate` Hz (BS.1770-4)."""
    return [
        _biquad("high_shelf", 4.0, 1.0 / np.sqrt(2.0), 1500.0, rate),
        _biquad("high_pass", 0.0, 0.5, 38.0, rate),
    ]


@functools.lru_cache(maxsize=16)
def _k_weighting_impulse_response(rate: int) -> np.ndarray:
    impulse = np.zeros(int(0.75 * rate))
    impulse[0] = 1.0
    for b, a in k_weighting_coefficients(rate):
        impulse = scipy.signal.lfilter(b, a, impulse)
    impulse = impulse.astype(np.float32)
    impulse.setflags(write=False)
    return impulse


def k_weight(x: jax.Array | np.ndarray, sample_rate: int) -> jax.Array | np.ndarray:
    """Applies the K-weighting filter along the last axis (zero initial state)."""
    xp = _namespace(x)
    x = xp.asarray(x).astype(xp.float32)
    h = _k_weighting_impulse_response(sample_rate)
    t = x.shape[-1]
    n = 1 << int(np.ceil(np.log2(t + h.size - 1)))
    spec = xp.fft.rfft(x, n=n, axis=-1) * xp.fft.rfft(xp.asarray(h), n=n)
    return xp.fft.irfft(spec, n=n, axis=-1)[..., :t].astype(xp.float32)


def _block_bounds(num_samples: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    duration = num_samples / rate
    if duration < BLOCK_SECONDS:
        raise ValueError(
            f"integrated loudness needs at least {BLOCK_SECONDS} s of audio, got {duration:.3f} s"
        )
    step = 1.0 - BLOCK_OVERLAP
    n_blocks = int(np.round((duration - BLOCK_SECONDS) / (BLOCK_SECONDS * step))) + 1
    j = np.arange(n_blocks)
    # Same float arithmetic as BS.1770 reference code, so block edges agree exactly.
    lower = np.array([int(BLOCK_SECONDS * (i * step) * rate) for i in j])
    upper = np.array([int(BLOCK_SECONDS * (i * step + 1) * rate) for i in j])
    return lower, np.minimum(upper, num_samples)


def integrated_loudness(x: jax.Array | np.ndarray, sample_rate: int) -> jax.Array | np.ndarray:
    """Gated integrated loudness in LUFS of `[..., C, T]` (or mono `[T]`) audio.

    Returns:
        float32 `[...]`; -inf for digital silence.
    """
    xp = _namespace(x)
    x = _with_channel_axis(x)
    c, t = x.shape[-2], x.shape[-1]
    if c > len(CHANNEL_WEIGHTS):
        raise ValueError(f"BS.1770 weights are defined for up to 5 channels, got {c}")
    lower, upper = _block_bounds(t, sample_rate)
    width = int((upper - lower).max())
    idx_NxW = np.minimum(lower[:, None] + np.arange(width)[None, :], t - 1)
    mask_NxW = (np.arange(width)[None, :] < (upper - lower)[:, None]).astype(np.float32)
    y_BxCxT = k_weight(x, sample_rate)
    energy_BxCxN = xp.sum(xp.square(y_BxCxT[..., idx_NxW]) * mask_NxW, axis=-1)
    z_BxCxN = energy_BxCxN / (BLOCK_SECONDS * sample_rate)
    g_C = xp.asarray(CHANNEL_WEIGHTS[:c], xp.float32)

    def lufs(power):
        with np.errstate(divide="ignore"):  # silence is -inf LUFS, by definition
            return (-0.691 + 10.0 * xp.log10(power)).astype(xp.float32)

    block_lufs_BxN = lufs(xp.einsum("c,...cn->...n", g_C, z_BxCxN))

    def gated_power(keep_BxN):
        keep = keep_BxN.astype(xp.float32)
        count = xp.sum(keep, axis=-1)
        mean_BxC = xp.sum(z_BxCxN * keep[..., None, :], axis=-1) / xp.maximum(count, 1)[..., None]
        return xp.einsum("c,...c->...", g_C, mean_BxC)

    above_abs = block_lufs_BxN >= ABSOLUTE_GATE_LUFS
    relative_gate = lufs(gated_power(above_abs)) + RELATIVE_GATE_LU
    keep = (block_lufs_BxN > relative_gate[..., None]) & (block_lufs_BxN > ABSOLUTE_GATE_LUFS)
    return lufs(gated_power(keep))


def normalize_loudness(
    x: jax.Array | np.ndarray,
    sample_rate: int,
    target_lufs: float = -14.0,
    max_gain_db: float = 40.0,
) -> jax.Array | np.ndarray:
    """Scales each example to `target_lufs` integrated loudness.

    Args:
        x: `[..., C, T]` or mono `[T]` audio.
        sample_rate: its rate.
        target_lufs: the loudness to reach (streaming services use -14; EBU R128 -23).
        max_gain_db: never amplify by more than this, so near-silence is not blown
            up into noise; digital silence is returned unchanged.
    """
    xp = _namespace(x)
    x = xp.asarray(x)
    measured = integrated_loudness(x, sample_rate)
    gain_db = xp.where(xp.isfinite(measured), target_lufs - measured, 0.0)
    gain = (10.0 ** (xp.minimum(gain_db, max_gain_db) / 20.0)).astype(xp.float32)
    return _apply_gain(x, gain)
