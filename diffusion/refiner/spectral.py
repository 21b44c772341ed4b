"""The refiner's data space: the amplitude-compressed complex STFT of 44.1 kHz audio.

Diffusing waveform samples directly spends the network on 44,100 values a second whose
scale spans orders of magnitude between bass and cymbals. Score-based speech enhancement
(SGMSE+, Richter et al. 2023) diffuses the complex STFT instead, with the magnitude
compressed so that quiet high bins and loud low bins have comparable size:

    c = beta * |X|^alpha * exp(i angle(X)),    alpha 0.5, beta 0.33 (SGMSE+'s values),

and decompresses after sampling, X = (|c| / beta)^(1/alpha) exp(i angle(c)). Phase is
kept, so the inverse is exact and no vocoder or phase retrieval is needed (the network's
frames map back to audio by `mgcore.dsp.istft`).

STFT: n_fft 1024, hop 256 (about 172 frames a second at 44.1 kHz), periodic Hann,
centred, as `mgcore.dsp` computes it. A frame becomes one vector of 2 * 513 = 1026
real features, the real parts of the 513 bins then their imaginary parts; the network
treats frequency as channels and convolves over frames (a Vocos-style 1-D backbone).

Shapes: audio `[..., T]`, features `[..., N, S]` with N frames and S = n_fft + 2.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mgcore import dsp
from mgcore.bounds import within


@dataclasses.dataclass(frozen=True)
class SpectralConfig:
    """The STFT and its compression.

    Attributes:
      n_fft: FFT size (window length).
      hop_length: samples between frames.
      alpha: magnitude exponent (SGMSE+: 0.5).
      beta: scale after compression (SGMSE+: 0.33).
    """

    n_fft: int = 1024
    hop_length: int = 256
    alpha: float = 0.5
    beta: float = 0.33

    def __post_init__(self):
        within(self, "n_fft", 16, 65536)
        within(self, "hop_length", 1, self.n_fft)
        within(self, "alpha", 0.0, 4.0, low_open=True)
        within(self, "beta", 0.0, 1e3, low_open=True)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def features(self) -> int:
        """Real features per frame: real and imaginary part of every bin."""
        return 2 * self.bins

    def frames(self, num_samples: int) -> int:
        """STFT frames of `num_samples` samples."""
        return dsp.num_frames(num_samples, self.n_fft, self.hop_length)


def compress(spec: jax.Array, config: SpectralConfig) -> jax.Array:
    """beta |X|^alpha exp(i angle X) of a complex spectrogram (0 where X is 0)."""
    mag = jnp.abs(spec)
    safe = jnp.where(mag > 0, mag, 1.0)
    gain = jnp.where(mag > 0, config.beta * safe ** (config.alpha - 1.0), 0.0)
    return spec * gain


def decompress(spec: jax.Array, config: SpectralConfig) -> jax.Array:
    """The inverse of `compress`: (|c| / beta)^(1/alpha) exp(i angle c)."""
    mag = jnp.abs(spec) / config.beta
    safe = jnp.where(mag > 0, mag, 1.0)
    gain = jnp.where(mag > 0, safe ** (1.0 / config.alpha - 1.0) / config.beta, 0.0)
    return spec * gain


def to_features(spec_BxFxN: jax.Array) -> jax.Array:
    """Complex `[..., F, N]` -> real `[..., N, 2F]` (real parts, then imaginary parts)."""
    spec_BxNxF = jnp.swapaxes(spec_BxFxN, -1, -2)
    return jnp.concatenate([spec_BxNxF.real, spec_BxNxF.imag], axis=-1)


def from_features(x_BxNxS: jax.Array) -> jax.Array:
    """Real `[..., N, 2F]` -> complex `[..., F, N]` (the inverse of `to_features`)."""
    real, imag = jnp.split(x_BxNxS.astype(jnp.float32), 2, axis=-1)
    return jnp.swapaxes(jax.lax.complex(real, imag), -1, -2)


def analyze(wav_BxT: jax.Array, config: SpectralConfig) -> jax.Array:
    """Audio `[..., T]` -> compressed STFT features `[..., N, S]` (float32)."""
    spec = dsp.stft(wav_BxT, config.n_fft, config.hop_length)
    return to_features(compress(spec, config))


def synthesize(x_BxNxS: jax.Array, num_samples: int, config: SpectralConfig) -> jax.Array:
    """Compressed STFT features `[..., N, S]` -> audio `[..., num_samples]` (float32)."""
    spec = decompress(from_features(x_BxNxS), config)
    return dsp.istft(spec, config.hop_length, length=num_samples)
