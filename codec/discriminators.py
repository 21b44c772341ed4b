"""GAN discriminators for codec training: DAC's MPD + MRD and EnCodec's MS-STFT-D.

Three families of sub-discriminators, each a small 2-D convolution stack that returns its
logits and the activations of every hidden layer (for the feature-matching loss):

- `PeriodDiscriminator`: HiFi-GAN's multi-period discriminator (Kong et al., 2020) as DAC
  (Kumar et al., 2023, `dac/model/discriminator.py`) configures it. The waveform is folded
  into `[frames, period]` so that a conv with kernel `(k, 1)` compares samples one period
  apart.
- `BandSpectrogramDiscriminator` (from `codec.stft_discriminators`): DAC's multi-resolution
  discriminator (MRD), a complex STFT split into frequency bands with one conv stack each.
- `STFTDiscriminator` (from `codec.stft_discriminators`): EnCodec's multi-scale STFT
  discriminator (Défossez et al., 2022; audiocraft `adversarial/discriminators/msstftd.py`).

`Discriminators(config, rngs=...)` runs every sub-discriminator the config turns on and
returns one `DiscriminatorOutput` per sub-discriminator, in the order MPD (by period), MRD
(by window), MS-STFT-D (by FFT size); `Discriminators.names` labels them for logging.

Layout: activations are channels-last `[batch, time, width, channels]`, where width is
the period (MPD) or the frequency bin (STFT discriminators); kernels are `[kh, kw, in,
out]` with the logical axes `("conv_width", None, "conv_in", "conv_out")`. Flax shards
annotated parameters eagerly at creation, so build these modules either through
`mgcore.sharding.init_sharded` or inside `with nnx.use_eager_sharding(False):`.

Multichannel audio: the anchors' discriminators are mono (audiocraft's `sep_channels`
folds stereo into the batch); here every channel is always folded into the batch, so the
outputs of a `[B, T, C]` input have batch `B * C`, row `b * C + c` holding channel `c` of
item `b`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from codec.stft_discriminators import (
    DAC_BANDS,
    BandSpectrogramDiscriminator,
    Conv2d,
    DiscriminatorOutput,
    STFTDiscriminator,
)

__all__ = [
    "DAC_BANDS",
    "BandSpectrogramDiscriminator",
    "DiscriminatorConfig",
    "DiscriminatorOutput",
    "Discriminators",
    "PeriodDiscriminator",
    "STFTDiscriminator",
    "period_reshape",
]


def period_reshape(x_BxT: jax.Array, period: int) -> jax.Array:
    """Folds a waveform into `[B, frames, period]`: `out[b, t, j] = x_pad[b, t * period + j]`.

    As DAC's `MPD.pad_to_period`, the end is reflect-padded by `period - T % period`
    samples, so a length already divisible by the period still gains one full period
    (HiFi-GAN pads only when needed); kept for parity with DAC.

    Args:
      x_BxT: waveform; needs `T > period` for the reflection.
      period: the fold width.
    """
    b, t = x_BxT.shape
    x_BxT = jnp.pad(x_BxT, ((0, 0), (0, period - t % period)), mode="reflect")
    return x_BxT.reshape(b, -1, period)


class PeriodDiscriminator(nnx.Module):
    """One period of DAC's multi-period discriminator.

    Convs with kernel `(kernel, 1)` and stride `(stride, 1)` (the last hidden one stride 1)
    run along the frames of the folded waveform, never across the period, each followed by
    a leaky ReLU; a `(3, 1)` conv gives the logits. All convs are weight-normed.

    Args:
      period: fold width in samples.
      channels: hidden widths; DAC: (32, 128, 512, 1024, 1024).
      kernel, stride: along the frames; DAC: 5 and 3.
      negative_slope: leaky ReLU slope; DAC: 0.1.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        *,
        kernel: int = 5,
        stride: int = 3,
        negative_slope: float = 0.1,
        rngs: nnx.Rngs,
    ):
        self.period = period
        self.negative_slope = negative_slope
        widths = (1, *channels)
        strides = [stride] * (len(channels) - 1) + [1]
        self.convs = nnx.List(
            [
                Conv2d(c_in, c_out, (kernel, 1), stride=(s, 1), rngs=rngs)
                for c_in, c_out, s in zip(widths[:-1], widths[1:], strides, strict=True)
            ]
        )
        self.post = Conv2d(widths[-1], 1, (3, 1), rngs=rngs)

    def __call__(self, x_BxT: jax.Array) -> DiscriminatorOutput:
        h_BxHxPxC = period_reshape(x_BxT, self.period)[..., None]
        feature_maps = []
        for conv in self.convs:
            h_BxHxPxC = jax.nn.leaky_relu(conv(h_BxHxPxC), self.negative_slope)
            feature_maps.append(h_BxHxPxC)
        logits_BxHxP = self.post(h_BxHxPxC)[..., 0]
        return DiscriminatorOutput(logits_BxHxP, tuple(feature_maps))


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Which sub-discriminators run, and their sizes; an empty tuple turns a family off.

    Attributes:
      periods: MPD periods in samples; DAC: (2, 3, 5, 7, 11).
      period_channels: MPD hidden widths; DAC: (32, 128, 512, 1024, 1024).
      mrd_windows: MRD STFT window lengths (hop = window / 4); DAC: (2048, 1024, 512).
      mrd_bands: MRD frequency bands as fractions of the bins; DAC: `DAC_BANDS`.
      mrd_channels: width of every MRD conv; DAC: 32.
      negative_slope: leaky ReLU slope of MPD and MRD; DAC: 0.1.
      msstft_n_ffts: MS-STFT-D FFT sizes (window = n_fft, hop = n_fft / 4); EnCodec:
        (1024, 2048, 512, 256, 128).
      msstft_filters: width of every MS-STFT-D conv; EnCodec: 32.
      msstft_dilations: time dilations of the strided MS-STFT-D convs; EnCodec: (1, 2, 4).
      msstft_negative_slope: MS-STFT-D leaky ReLU slope; EnCodec's config: 0.3.
      peak_normalize: DAC's `Discriminator.preprocess`: remove the DC offset and scale
        each channel's peak to 0.8 before any sub-discriminator sees it.
    """

    periods: tuple[int, ...] = ()
    period_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    mrd_windows: tuple[int, ...] = ()
    mrd_bands: tuple[tuple[float, float], ...] = DAC_BANDS
    mrd_channels: int = 32
    negative_slope: float = 0.1
    msstft_n_ffts: tuple[int, ...] = ()
    msstft_filters: int = 32
    msstft_dilations: tuple[int, ...] = (1, 2, 4)
    msstft_negative_slope: float = 0.3
    peak_normalize: bool = False

    @property
    def min_length(self) -> int:
        """Fewest input samples: every STFT needs a full window, every fold `period + 1`."""
        sizes = (*self.mrd_windows, *self.msstft_n_ffts, *(p + 1 for p in self.periods))
        return max(sizes, default=1)

    @classmethod
    def dac(cls) -> DiscriminatorConfig:
        """DAC's discriminator: MPD at 5 periods plus MRD at 3 resolutions.

        DAC's optional multi-scale waveform discriminator (`rates`, off in its configs) is
        not implemented.
        """
        return cls(periods=(2, 3, 5, 7, 11), mrd_windows=(2048, 1024, 512), peak_normalize=True)

    @classmethod
    def encodec(cls) -> DiscriminatorConfig:
        """EnCodec's (audiocraft's) MS-STFT discriminator at 5 scales."""
        return cls(msstft_n_ffts=(1024, 2048, 512, 256, 128))

    @classmethod
    def debug(cls) -> DiscriminatorConfig:
        """All three families, tiny: for CPU tests on a few hundred samples."""
        return cls(
            periods=(2, 3),
            period_channels=(4, 8, 8),
            mrd_windows=(128, 64),
            mrd_channels=4,
            msstft_n_ffts=(128, 64),
            msstft_filters=4,
            msstft_dilations=(1, 2),
        )


class Discriminators(nnx.Module):
    """Every sub-discriminator a `DiscriminatorConfig` turns on (DAC's `Discriminator`).

    Args:
      config: which families run and their sizes.
      rngs: parameter RNG.
    """

    def __init__(self, config: DiscriminatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = config
        self.mpd = nnx.List(
            [
                PeriodDiscriminator(
                    p, c.period_channels, negative_slope=c.negative_slope, rngs=rngs
                )
                for p in c.periods
            ]
        )
        self.mrd = nnx.List(
            [
                BandSpectrogramDiscriminator(
                    w, c.mrd_bands, c.mrd_channels, negative_slope=c.negative_slope, rngs=rngs
                )
                for w in c.mrd_windows
            ]
        )
        self.msstft = nnx.List(
            [
                STFTDiscriminator(
                    n,
                    c.msstft_filters,
                    c.msstft_dilations,
                    negative_slope=c.msstft_negative_slope,
                    rngs=rngs,
                )
                for n in c.msstft_n_ffts
            ]
        )

    @property
    def names(self) -> list[str]:
        """One label per output, e.g. `["mpd_2", ..., "mrd_2048", ..., "msstft_1024"]`."""
        c = self.config
        return (
            [f"mpd_{p}" for p in c.periods]
            + [f"mrd_{w}" for w in c.mrd_windows]
            + [f"msstft_{n}" for n in c.msstft_n_ffts]
        )

    def __call__(self, wav_BxTxC: jax.Array) -> list[DiscriminatorOutput]:
        """Scores a batch of waveforms.

        Args:
          wav_BxTxC: audio in [-1, 1], channels last, at least `config.min_length` samples;
            channels are folded into the batch.

        Returns:
          One `DiscriminatorOutput` per sub-discriminator (order of `names`), with batch
          `B * C`.

        Raises:
          ValueError: for an input shorter than `config.min_length`.
        """
        b, t, c = wav_BxTxC.shape
        if t < self.config.min_length:
            raise ValueError(f"{t} samples is shorter than the {self.config.min_length} needed")
        x_BCxT = jnp.swapaxes(wav_BxTxC.astype(jnp.float32), 1, 2).reshape(b * c, t)
        if self.config.peak_normalize:  # per channel, as DAC normalises each [1, T] row
            x_BCxT = x_BCxT - jnp.mean(x_BCxT, axis=-1, keepdims=True)
            peak_BCx1 = jnp.max(jnp.abs(x_BCxT), axis=-1, keepdims=True)
            x_BCxT = 0.8 * x_BCxT / (peak_BCx1 + 1e-9)
        subs = [*self.mpd, *self.mrd, *self.msstft]
        return [d(x_BCxT) for d in subs]
