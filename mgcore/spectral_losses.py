"""Spectral reconstruction losses that neural audio codecs train with.

Two families, each a frozen config plus a pure function:

* `MultiResolutionSTFTLoss`: distances between STFT magnitudes at several
  resolutions. `dac()` is DAC's MultiScaleSTFTLoss (windows 2048 and 512, L1 on
  magnitudes plus L1 on log10 of the clamped power); `parallel_wavegan()` adds
  spectral convergence at the three resolutions of Yamamoto et al. (2020).
* `MultiScaleMelLoss`: distances between mel spectrograms at several window
  sizes. `dac()` follows DAC's 44 kHz recipe (7 windows 32..2048 with 5..320 mels,
  Slaney mels on magnitudes, L1 on log10 of the clamped mel); `encodec()` follows
  audiocraft's msspec loss (windows 2^6..2^10, 64 HTK mels on power, L1 on the
  mel plus sqrt(2^i - 1)-weighted MSE on log10(mel + 1e-5)).

Frames are centred with reflect padding. Inputs are `[..., samples]` (any batch
and channel axes); every term is a mean over all elements, summed over
resolutions, as both anchors do. float32 or bfloat16 in, float32 scalar out.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mgcore import dsp


def _per_scale(values: tuple, n: int, name: str) -> tuple:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries, expected {n} (one per scale)")
    return values


@dataclasses.dataclass(frozen=True)
class MultiResolutionSTFTLoss:
    """Config of `multi_resolution_stft_loss`.

    Attributes:
        fft_sizes: FFT size per resolution.
        hop_sizes: hop per resolution (default fft // 4).
        win_lengths: window per resolution (default the FFT size).
        window: scipy window name.
        mag_weight: weight of L1 between magnitudes.
        log_weight: weight of L1 between log10(max(|S|, eps) ** log_pow).
        sc_weight: weight of spectral convergence ||  |Y| - |X| ||_F / || |X| ||_F.
        log_pow: exponent inside the log (2: log power, 1: log magnitude).
        eps: magnitude floor inside the log.
    """

    fft_sizes: tuple[int, ...] = (2048, 512)
    hop_sizes: tuple[int, ...] | None = None
    win_lengths: tuple[int, ...] | None = None
    window: str = "hann"
    mag_weight: float = 1.0
    log_weight: float = 1.0
    sc_weight: float = 0.0
    log_pow: float = 2.0
    eps: float = 1e-5

    @classmethod
    def dac(cls) -> MultiResolutionSTFTLoss:
        return cls()

    @classmethod
    def parallel_wavegan(cls) -> MultiResolutionSTFTLoss:
        # Log-magnitude L1 in natural log: ln(m) = ln(10) * log10(m).
        return cls(
            fft_sizes=(1024, 2048, 512),
            hop_sizes=(120, 240, 50),
            win_lengths=(600, 1200, 240),
            mag_weight=0.0,
            log_weight=float(np.log(10.0)),
            sc_weight=1.0,
            log_pow=1.0,
            eps=1e-7,
        )

    def resolutions(self) -> list[tuple[int, int, int]]:
        n = len(self.fft_sizes)
        hops = self.hop_sizes or tuple(f // 4 for f in self.fft_sizes)
        wins = self.win_lengths or self.fft_sizes
        return list(
            zip(
                self.fft_sizes,
                _per_scale(hops, n, "hop_sizes"),
                _per_scale(wins, n, "win_lengths"),
                strict=True,
            )
        )


def multi_resolution_stft_loss(
    pred: jax.Array, target: jax.Array, config: MultiResolutionSTFTLoss = MultiResolutionSTFTLoss()
) -> jax.Array:
    """Multi-resolution STFT distance between `pred` and `target`, `[..., samples]`."""
    total = jnp.zeros((), jnp.float32)
    for n_fft, hop, win in config.resolutions():
        mag = [
            dsp.magnitude(dsp.stft(s, n_fft, hop, win, config.window, pad_mode="reflect"))
            for s in (pred, target)
        ]
        if config.mag_weight:
            total += config.mag_weight * jnp.mean(jnp.abs(mag[0] - mag[1]))
        if config.log_weight:
            logs = [config.log_pow * jnp.log10(jnp.maximum(m, config.eps)) for m in mag]
            total += config.log_weight * jnp.mean(jnp.abs(logs[0] - logs[1]))
        if config.sc_weight:
            diff = jnp.sqrt(jnp.sum((mag[1] - mag[0]) ** 2, axis=(-2, -1)))
            ref = jnp.sqrt(jnp.sum(mag[1] ** 2, axis=(-2, -1)))
            total += config.sc_weight * jnp.mean(diff / jnp.maximum(ref, config.eps))
    return total


@dataclasses.dataclass(frozen=True)
class MultiScaleMelLoss:
    """Config of `multi_scale_mel_loss`.

    Attributes:
        sample_rate: of the audio compared.
        window_lengths: FFT size (= window) per scale; the hop is a quarter of it.
        n_mels: mel bands per scale.
        fmin, fmax: mel band edges in Hz (fmax None: Nyquist).
        power: 1 for magnitude mels (DAC), 2 for power mels (EnCodec).
        htk, norm: mel scale and filter normalisation (see `dsp.mel_filterbank`).
        mag_weight: weight of L1 between linear mels.
        log_weight: weight of L1 between log mels.
        log_mse_weight: weight of MSE between log mels, times sqrt(window - 1)
            when `log_mse_alpha` (EnCodec's alphas).
        log_floor: "clamp" takes log10(max(mel, eps)) (DAC); "add" takes
            log10(mel + eps) (EnCodec).
        eps: floor of the log.
    """

    sample_rate: int
    window_lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 1.0
    htk: bool = False
    norm: str | None = "slaney"
    mag_weight: float = 0.0
    log_weight: float = 1.0
    log_mse_weight: float = 0.0
    log_mse_alpha: bool = False
    log_floor: str = "clamp"
    eps: float = 1e-5

    @classmethod
    def dac(cls, sample_rate: int) -> MultiScaleMelLoss:
        return cls(sample_rate)

    @classmethod
    def encodec(cls, sample_rate: int) -> MultiScaleMelLoss:
        return cls(
            sample_rate,
            window_lengths=tuple(2**i for i in range(6, 11)),
            n_mels=(64,) * 5,
            power=2.0,
            htk=True,
            norm=None,
            mag_weight=1.0,
            log_weight=0.0,
            log_mse_weight=1.0,
            log_mse_alpha=True,
            log_floor="add",
        )

    def __post_init__(self):
        _per_scale(self.n_mels, len(self.window_lengths), "n_mels")
        if self.log_floor not in ("clamp", "add"):
            raise ValueError(f"log_floor must be 'clamp' or 'add', got {self.log_floor!r}")


def multi_scale_mel_loss(
    pred: jax.Array, target: jax.Array, config: MultiScaleMelLoss
) -> jax.Array:
    """Multi-scale mel distance between `pred` and `target`, `[..., samples]`."""
    total = jnp.zeros((), jnp.float32)
    for win, n_mels in zip(config.window_lengths, config.n_mels, strict=True):
        mels = [
            dsp.mel_spectrogram(
                s,
                config.sample_rate,
                n_fft=win,
                hop_length=win // 4,
                pad_mode="reflect",
                power=config.power,
                n_mels=n_mels,
                fmin=config.fmin,
                fmax=config.fmax,
                htk=config.htk,
                norm=config.norm,
            )
            for s in (pred, target)
        ]
        if config.mag_weight:
            total += config.mag_weight * jnp.mean(jnp.abs(mels[0] - mels[1]))
        if config.log_weight or config.log_mse_weight:
            if config.log_floor == "clamp":
                logs = [jnp.log10(jnp.maximum(m, config.eps)) for m in mels]
            else:
                logs = [jnp.log10(m + config.eps) for m in mels]
            if config.log_weight:
                total += config.log_weight * jnp.mean(jnp.abs(logs[0] - logs[1]))
            if config.log_mse_weight:
                alpha = np.sqrt(win - 1) if config.log_mse_alpha else 1.0
                total += config.log_mse_weight * alpha * jnp.mean((logs[0] - logs[1]) ** 2)
    return total
