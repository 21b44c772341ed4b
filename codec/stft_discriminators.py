"""Spectral sub-discriminators: DAC's MRD and EnCodec's MS-STFT-D, plus shared blocks.

- `BandSpectrogramDiscriminator`: one resolution of DAC's multi-resolution discriminator
  (Kumar et al., 2023, `dac/model/discriminator.py`, class `MRD`). The complex STFT, as
  two channels (real, imaginary), is cut into frequency bands; each band has its own conv
  stack, the stacks' outputs are concatenated along frequency and one conv scores them.
- `STFTDiscriminator`: one scale of EnCodec's multi-scale STFT discriminator (Défossez et
  al., 2022; audiocraft `adversarial/discriminators/msstftd.py`, `DiscriminatorSTFT`).

Also the blocks that `codec.discriminators` builds the period discriminator from:
`DiscriminatorOutput` and the weight-normed `Conv2d`. Layout and sharding conventions are
described in `codec.discriminators`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec.layers import weight_norm
from mgcore import dsp

# DAC's MRD bands, as fractions of the STFT bins (low edge, high edge).
DAC_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
# Logical axes of a `[kh, kw, in, out]` kernel; a name may appear once per array, and
# kernel taps are never sharded, so the second tap axis goes unnamed.
KERNEL_AXES = ("conv_width", None, "conv_in", "conv_out")


class DiscriminatorOutput(NamedTuple):
    """What one sub-discriminator says about a batch (a pytree, so it passes through jit).

    Attributes:
      logits: `[B, time, width]` real-vs-fake scores (the final conv's single channel).
      feature_maps: the hidden activations `[B, time, width, channels]`, input side first,
        each after its leaky ReLU; the logits are not among them.
    """

    logits: jax.Array
    feature_maps: tuple[jax.Array, ...]


def _uniform(bound: float) -> nnx.Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv2d(nnx.Module):
    """Channels-last 2-D convolution with "same" padding and optional weight norm.

    Weight norm (Salimans & Kingma, 2016) keeps a direction `v` and a per-output-channel
    gain `g`: `kernel = g * v / ||v||`, the norm taken over all axes but the output
    channel, and `g` starts at `||v||` so the initial kernel is `v`, as PyTorch's
    `weight_norm`. Kernel and bias start from PyTorch's default `Conv2d` initialisation,
    uniform in ±1/sqrt(fan_in), which is what the anchors train from.

    Args:
      in_channels, out_channels: channel counts.
      kernel: `(kh, kw)` taps along time and width.
      stride, dilation: per axis; padding is `(k - 1) * d // 2` on both sides of each axis,
        as every conv in the anchors.
      weight_norm: parametrise the kernel as `(v, g)`; otherwise one `kernel` parameter.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int],
        *,
        stride: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        weight_norm: bool = True,
        rngs: nnx.Rngs,
    ):
        kh, kw = kernel
        bound = 1.0 / math.sqrt(in_channels * kh * kw)
        shape = (kh, kw, in_channels, out_channels)
        kernel_init = nnx.with_partitioning(_uniform(bound), KERNEL_AXES)
        bias_init = nnx.with_partitioning(_uniform(bound), ("conv_out",))
        self.weight_norm = weight_norm
        if weight_norm:
            self.v = nnx.Param(kernel_init(rngs.params(), shape))
            self.g = nnx.Param(_norm_per_output(self.v[...]), out_sharding=("conv_out",))
        else:
            self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_channels,)))
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.padding = tuple(((k - 1) * d // 2,) * 2 for k, d in zip(kernel, dilation, strict=True))

    def weight(self) -> jax.Array:
        """The effective kernel `[kh, kw, in, out]`."""
        if not self.weight_norm:
            return self.kernel[...]
        return weight_norm(self.v[...], self.g[...], keep_axis=3)

    def __call__(self, x_BxHxWxI: jax.Array) -> jax.Array:
        y_BxHxWxO = jax.lax.conv_general_dilated(
            x_BxHxWxI,
            self.weight(),
            window_strides=self.stride,
            padding=self.padding,
            rhs_dilation=self.dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y_BxHxWxO + self.bias[...]


def _norm_per_output(v_KhxKwxIxO: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(v_KhxKwxIxO), axis=(0, 1, 2)))


def dac_stft_features(x_BxT: jax.Array, window_length: int) -> jax.Array:
    """DAC's MRD input: the complex STFT as `[B, frames, bins, 2]` (real, imaginary).

    audiotools' `AudioSignal.stft` with `match_stride=True`: reflect-pad
    `(window - hop) / 2` samples on the left and that plus enough to reach a multiple of
    the hop on the right, take a centred (reflect-padded) periodic-Hann STFT without
    normalisation, and drop the two frames at each end that the padding added, which
    leaves `ceil(T / hop)` frames, one per hop like a strided conv.

    Args:
      x_BxT: waveform.
      window_length: FFT size and window length, a multiple of 8; hop = window / 4.
    """
    hop = window_length // 4
    t = x_BxT.shape[-1]
    right = -(-t // hop) * hop - t
    pad = (window_length - hop) // 2
    x_BxT = jnp.pad(x_BxT, ((0, 0), (pad, pad + right)), mode="reflect")
    spec_BxFxN = dsp.stft(x_BxT, window_length, hop, window="hann", pad_mode="reflect")
    spec_BxNxF = jnp.swapaxes(spec_BxFxN[..., 2:-2], -1, -2)
    return jnp.stack([spec_BxNxF.real, spec_BxNxF.imag], axis=-1)


def encodec_stft_features(x_BxT: jax.Array, n_fft: int, hop_length: int | None = None) -> jax.Array:
    """EnCodec's MS-STFT-D input: the complex STFT as `[B, frames, bins, 2]`.

    torchaudio's `Spectrogram(normalized=True, center=False, power=None)` with a periodic
    Hann window of `n_fft` samples: no padding, so `1 + (T - n_fft) // hop` frames, and
    the spectrum divided by the window's L2 norm.

    Args:
      x_BxT: waveform with at least `n_fft` samples.
      n_fft: FFT size and window length.
      hop_length: default `n_fft // 4`.
    """
    hop_length = hop_length or n_fft // 4
    spec_BxFxN = dsp.stft(x_BxT, n_fft, hop_length, window="hann", center=False)
    window_norm = float(np.sqrt(np.sum(dsp.window_array("hann", n_fft, n_fft) ** 2)))
    spec_BxNxF = jnp.swapaxes(spec_BxFxN, -1, -2) / window_norm
    return jnp.stack([spec_BxNxF.real, spec_BxNxF.imag], axis=-1)


def band_bins(n_bins: int, bands: Sequence[tuple[float, float]]) -> tuple[tuple[int, int], ...]:
    """`[start, stop)` bin ranges of fractional bands, truncated as DAC's `int(f * n_bins)`.

    Args:
      n_bins: STFT bins, `window // 2 + 1`.
      bands: `(low, high)` fractions of the bins.

    Raises:
      ValueError: when a band holds no bin.
    """
    ranges = tuple((int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands)
    if any(stop <= start for start, stop in ranges):
        raise ValueError(f"bands {bands} leave an empty band among {ranges} of {n_bins} bins")
    return ranges


class BandSpectrogramDiscriminator(nnx.Module):
    """One resolution of DAC's multi-resolution (multi-band complex STFT) discriminator.

    Per band: a `(3, 9)` conv from 2 channels, three `(3, 9)` convs with stride 2 along
    frequency, a `(3, 3)` conv, each weight-normed and followed by a leaky ReLU; kernels
    span (frames, bins). The bands' outputs are concatenated along frequency and a
    weight-normed `(3, 3)` conv gives the logits `[B, ceil(T / hop), reduced bins]`.

    Args:
      window_length: STFT window (hop = window / 4); DAC: 2048, 1024, 512.
      bands: fractional frequency bands; DAC: `DAC_BANDS`.
      channels: width of every conv; DAC: 32.
      negative_slope: leaky ReLU slope; DAC: 0.1.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        window_length: int,
        bands: Sequence[tuple[float, float]] = DAC_BANDS,
        channels: int = 32,
        *,
        negative_slope: float = 0.1,
        rngs: nnx.Rngs,
    ):
        if window_length % 8:
            # match_stride's 3/8-window padding must be 1.5 hops for ceil(T / hop) frames
            raise ValueError(f"MRD window {window_length} is not a multiple of 8")
        self.window_length = window_length
        self.bands = band_bins(window_length // 2 + 1, bands)
        self.negative_slope = negative_slope

        def stack() -> nnx.List:
            ch = channels
            return nnx.List(
                [
                    Conv2d(2, ch, (3, 9), rngs=rngs),
                    *(Conv2d(ch, ch, (3, 9), stride=(1, 2), rngs=rngs) for _ in range(3)),
                    Conv2d(ch, ch, (3, 3), rngs=rngs),
                ]
            )

        self.band_convs = nnx.List([stack() for _ in self.bands])
        self.post = Conv2d(channels, 1, (3, 3), rngs=rngs)

    def __call__(self, x_BxT: jax.Array) -> DiscriminatorOutput:
        spec_BxNxFx2 = dac_stft_features(x_BxT, self.window_length)
        feature_maps, band_outs = [], []
        for (start, stop), stack in zip(self.bands, self.band_convs, strict=True):
            h_BxNxFxC = spec_BxNxFx2[:, :, start:stop]
            for conv in stack:
                h_BxNxFxC = jax.nn.leaky_relu(conv(h_BxNxFxC), self.negative_slope)
                feature_maps.append(h_BxNxFxC)
            band_outs.append(h_BxNxFxC)
        logits_BxNxF = self.post(jnp.concatenate(band_outs, axis=2))[..., 0]
        return DiscriminatorOutput(logits_BxNxF, tuple(feature_maps))


class STFTDiscriminator(nnx.Module):
    """One scale of EnCodec's multi-scale STFT discriminator.

    A `(3, 9)` conv from 2 channels, one `(3, 9)` conv with stride 2 along frequency per
    time dilation, a `(3, 3)` conv, each followed by a leaky ReLU, then a `(3, 3)` conv to
    the logits `[B, frames, reduced bins]`. All but the first conv are weight-normed: in
    audiocraft the first `NormConv2d` is built without its `norm` argument, so it has none.

    Args:
      n_fft: FFT size and window (hop = n_fft / 4); EnCodec: 1024, 2048, 512, 256, 128.
      filters: width of every conv; EnCodec: 32.
      dilations: time dilations of the strided convs; EnCodec: (1, 2, 4).
      kernel, stride: of the strided convs, over (frames, bins); EnCodec: (3, 9), (1, 2).
      negative_slope: leaky ReLU slope; EnCodec's config: 0.3.
      rngs: parameter RNG.
    """

    def __init__(
        self,
        n_fft: int,
        filters: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
        *,
        kernel: tuple[int, int] = (3, 9),
        stride: tuple[int, int] = (1, 2),
        negative_slope: float = 0.3,
        rngs: nnx.Rngs,
    ):
        self.n_fft = n_fft
        self.negative_slope = negative_slope
        square = (kernel[0], kernel[0])
        self.convs = nnx.List(
            [
                Conv2d(2, filters, kernel, weight_norm=False, rngs=rngs),
                *(
                    Conv2d(filters, filters, kernel, stride=stride, dilation=(d, 1), rngs=rngs)
                    for d in dilations
                ),
                Conv2d(filters, filters, square, rngs=rngs),
            ]
        )
        self.post = Conv2d(filters, 1, square, rngs=rngs)

    def __call__(self, x_BxT: jax.Array) -> DiscriminatorOutput:
        h_BxNxFxC = encodec_stft_features(x_BxT, self.n_fft)
        feature_maps = []
        for conv in self.convs:
            h_BxNxFxC = jax.nn.leaky_relu(conv(h_BxNxFxC), self.negative_slope)
            feature_maps.append(h_BxNxFxC)
        logits_BxNxF = self.post(h_BxNxFxC)[..., 0]
        return DiscriminatorOutput(logits_BxNxF, tuple(feature_maps))
