"""Spectral DSP in JAX: STFT, inverse STFT, mel filterbanks, log-mel spectrograms.

Conventions follow librosa so that a spectrogram computed here can be checked
against it number for number: `stft` returns `[..., n_fft // 2 + 1, frames]`, the
window is periodic and centred in the frame, `center=True` pads `n_fft // 2` on both
sides, and `istft` divides the overlap-add by the summed squared window (the
least-squares inverse of Griffin & Lim, 1984). Mel filterbanks reproduce
`librosa.filters.mel` on the Slaney (default) and HTK scales.

Every function is jit-able, takes any number of leading batch axes, is
differentiable, and accepts float32 or bfloat16 input; the transforms themselves
run in float32 because XLA's FFT has no bfloat16 kernel, so bfloat16 input costs
precision only in the input itself. Window and filterbank constants are built in
NumPy at trace time from static arguments.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

# "constant" pads zeros (librosa's default); "reflect" mirrors the signal (torch's).
PadMode = Literal["constant", "reflect"]


@functools.lru_cache(maxsize=64)
def window_array(window: str, win_length: int, n_fft: int) -> np.ndarray:
    """A periodic window of `win_length` samples, zero-padded and centred to `n_fft`."""
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} exceeds n_fft {n_fft}")
    win = scipy.signal.get_window(window, win_length, fftbins=True).astype(np.float64)
    left = (n_fft - win_length) // 2
    win = np.pad(win, (left, n_fft - win_length - left))
    win.setflags(write=False)  # cached: callers share one array
    return win


def _as_float32(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"expected a floating-point signal, got {x.dtype}")
    return x.astype(jnp.float32)


def num_frames(length: int, n_fft: int, hop_length: int, center: bool = True) -> int:
    """How many STFT frames `stft` returns for a signal of `length` samples."""
    if center:
        length += 2 * (n_fft // 2)
    if length < n_fft:
        raise ValueError(f"signal of {length} samples is shorter than n_fft {n_fft}")
    return 1 + (length - n_fft) // hop_length


def stft(
    x: jax.Array,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: PadMode = "constant",
) -> jax.Array:
    """Short-time Fourier transform of the last axis.

    Args:
        x: `[..., samples]` real signal.
        n_fft: FFT size.
        hop_length: samples between frames (default `n_fft // 4`).
        win_length: window length (default `n_fft`).
        window: a scipy window name.
        center: pad `n_fft // 2` on both sides so frame t is centred on sample t * hop.
        pad_mode: "constant" (zeros) or "reflect", used when `center`.

    Returns:
        complex64 `[..., n_fft // 2 + 1, frames]`.
    """
    hop_length = hop_length or n_fft // 4
    win_length = win_length or n_fft
    x_BxT = _as_float32(x)
    if center:
        pad = [(0, 0)] * (x_BxT.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x_BxT = jnp.pad(x_BxT, pad, mode=pad_mode)
    n = num_frames(x_BxT.shape[-1], n_fft, hop_length, center=False)
    idx_NxW = np.arange(n)[:, None] * hop_length + np.arange(n_fft)[None, :]
    win_W = jnp.asarray(window_array(window, win_length, n_fft), jnp.float32)
    frames_BxNxW = x_BxT[..., idx_NxW] * win_W
    spec_BxNxF = jnp.fft.rfft(frames_BxNxW, n=n_fft, axis=-1)
    return jnp.swapaxes(spec_BxNxF, -1, -2)


def overlap_add(frames: jax.Array, hop_length: int) -> jax.Array:
    """Sums `[..., frames, width]` frames placed `hop_length` apart: `[..., samples]`.

    Each frame is cut into `ceil(width / hop)` hop-sized chunks; chunk r of frame t
    lands in output chunk t + r, so the overlap-add is a sum of r shifted copies.
    This avoids a scatter, which is slow on accelerators.

    Returns:
        `[..., (frames + ceil(width / hop) - 1) * hop]`.
    """
    *lead, n, width = frames.shape
    r = -(-width // hop_length)
    frames = jnp.pad(frames, [(0, 0)] * (len(lead) + 1) + [(0, r * hop_length - width)])
    chunks_BxNxRxH = frames.reshape(*lead, n, r, hop_length)
    no_pad = [(0, 0)] * len(lead)
    out_BxMxH = sum(
        jnp.pad(chunks_BxNxRxH[..., i, :], [*no_pad, (i, r - 1 - i), (0, 0)]) for i in range(r)
    )
    return out_BxMxH.reshape(*lead, (n + r - 1) * hop_length)


def istft(
    spec: jax.Array,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    length: int | None = None,
) -> jax.Array:
    """Inverse of `stft` by weighted overlap-add; `istft(stft(x), length=len(x)) == x`.

    Args:
        spec: complex `[..., n_fft // 2 + 1, frames]`.
        hop_length, win_length, window, center: as given to `stft`.
        length: trim or zero-pad the output to exactly this many samples.

    Returns:
        float32 `[..., samples]`.
    """
    n_freq, n = spec.shape[-2], spec.shape[-1]
    n_fft = 2 * (n_freq - 1)
    hop_length = hop_length or n_fft // 4
    win_length = win_length or n_fft
    win = window_array(window, win_length, n_fft)
    frames_BxNxW = jnp.fft.irfft(jnp.swapaxes(spec, -1, -2), n=n_fft, axis=-1)
    frames_BxNxW = frames_BxNxW * jnp.asarray(win, jnp.float32)
    total = n_fft + hop_length * (n - 1)
    y_BxT = overlap_add(frames_BxNxW, hop_length)[..., :total]
    # The summed squared window is a constant of the framing; where it is ~0 (the
    # first and last samples of an uncentred signal) nothing can be recovered.
    # (np.bincount, not np.add.at: NumPy 2.4's add.at mis-sums broadcast values.)
    idx_NxW = np.arange(n)[:, None] * hop_length + np.arange(n_fft)[None, :]
    wss = np.bincount(idx_NxW.ravel(), weights=np.tile(win**2, n), minlength=total)
    tiny = np.finfo(np.float32).tiny
    inv_wss = np.where(wss > tiny, 1.0 / np.maximum(wss, tiny), 1.0)
    y_BxT = y_BxT * jnp.asarray(inv_wss, jnp.float32)
    start = n_fft // 2 if center else 0
    if length is None:
        stop = total - start
    else:
        stop = start + length
        if stop > total:
            y_BxT = jnp.pad(y_BxT, [(0, 0)] * (y_BxT.ndim - 1) + [(0, stop - total)])
    return y_BxT[..., start:stop]


def hz_to_mel(freq: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Hertz to mels: HTK's 2595 log10(1 + f / 700), or Slaney's linear-then-log scale."""
    f = np.asarray(freq, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    safe = np.maximum(f, min_log_hz)
    return np.where(f >= min_log_hz, min_log_mel + np.log(safe / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(mel: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=64)
def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters `[n_mels, n_fft // 2 + 1]`, as `librosa.filters.mel`.

    Args:
        sample_rate: of the signal the STFT is taken of.
        n_fft: FFT size.
        n_mels: number of filters.
        fmin, fmax: band edges in Hz (fmax defaults to Nyquist).
        htk: HTK mel scale instead of Slaney's.
        norm: "slaney" scales each filter to unit area (constant energy per band);
            None leaves peaks at 1.
    """
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)  # cached: callers share one array
    return weights


def magnitude(spec: jax.Array, power: float = 1.0) -> jax.Array:
    """`|spec| ** power`, with a zero (not NaN) gradient where the spectrum is exactly 0."""
    pow2 = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    if power == 2.0:
        return pow2
    nonzero = pow2 > 0
    safe = jnp.where(nonzero, pow2, 1.0)
    return jnp.where(nonzero, safe ** (power / 2.0), 0.0)


def mel_spectrogram(
    x: jax.Array,
    sample_rate: int,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: str = "hann",
    center: bool = True,
    pad_mode: PadMode = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> jax.Array:
    """Mel spectrogram `[..., n_mels, frames]` of `[..., samples]`, as librosa's.

    `power` 2 gives power, 1 magnitude; the other arguments are `stft`'s and
    `mel_filterbank`'s.
    """
    spec = stft(x, n_fft, hop_length, win_length, window, center, pad_mode)
    fb_MxF = jnp.asarray(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm))
    return jnp.einsum("mf,...ft->...mt", fb_MxF, magnitude(spec, power))


def power_to_db(
    spec: jax.Array, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0
) -> jax.Array:
    """`10 log10(max(spec, amin) / ref)`, floored `top_db` below each example's maximum.

    The maximum is taken over the last two axes (one spectrogram), so a batch is
    treated as independent examples.
    """
    db = 10.0 * jnp.log10(jnp.maximum(spec, amin)) - 10.0 * np.log10(max(amin, ref))
    if top_db is not None:
        db = jnp.maximum(db, db.max(axis=(-2, -1), keepdims=True) - top_db)
    return db


def log_mel_spectrogram(
    x: jax.Array,
    sample_rate: int,
    n_fft: int = 2048,
    hop_length: int | None = None,
    n_mels: int = 128,
    *,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
    **mel_kwargs,
) -> jax.Array:
    """Log-mel power spectrogram in dB, `[..., n_mels, frames]`: librosa's
    `power_to_db(melspectrogram(...))`. Extra keyword arguments go to `mel_spectrogram`.
    """
    mel = mel_spectrogram(x, sample_rate, n_fft, hop_length, n_mels=n_mels, **mel_kwargs)
    return power_to_db(mel, amin=amin, top_db=top_db)
