"""SEANet-family convolutional encoder and decoder: EnCodec's and DAC's, from one config.

Follows SEANet as used by EnCodec (Défossez et al. 2022; Hugging Face transformers
`modeling_encodec.py`: `EncodecEncoder` / `EncodecDecoder` / `EncodecResnetBlock`) and
the encoder/decoder of the Descript Audio Codec (Kumar et al. 2023; transformers
`modeling_dac.py`: `DacEncoder` / `DacDecoder` / `DacEncoderBlock` / `DacDecoderBlock` /
`DacResidualUnit`). Both are

    encoder: conv_in -> [residual units -> act -> strided conv (k = 2r)] per ratio r
             -> (LSTM + skip) -> act -> conv_out to `dimension`
    decoder: conv_in -> (LSTM + skip) -> [act -> transposed conv (k = 2r) -> residual
             units] per ratio, reversed -> act -> conv_out to `channels` (-> tanh)

with channels doubling at each downsampling (halving at each upsampling). Residual units
are `act -> conv(k, dilation) -> act -> conv(1)` plus the input (through a 1x1 conv when
`true_skip` is False). `style` picks the padding: "encodec" uses EnCodec's causal or
non-causal arithmetic with `pad_mode`; "dac" uses torch's symmetric `padding=` ints
(`(k - 1) * dilation // 2` for stride 1, `ceil(r / 2)` for the strided and transposed
convs). Everything is channels-last: `SEANetEncoder(wav_BxTxC) -> z_BxFxD`,
`SEANetDecoder(z_BxFxD) -> wav_BxTxC`.

Lengths. `ratios` lists the *encoder's* downsampling factors in order (EnCodec's HF
config lists `upsampling_ratios`, the reverse; DAC's `downsampling_ratios` is this).
"encodec" style pads internally, so T samples give `ceil(T / hop_length)` frames. "dac"
style convs floor, so pad the waveform on the right with zeros to a multiple of
`hop_length` first, as DAC's `preprocess` does; then T gives `T / hop_length` frames.
`frames_for` gives the exact count for any T. The decoder returns `F * hop_length`
samples for F frames (both styles, with even ratios; `samples_for` gives the exact
number); trim that to the input length.

Parameter mapping to Hugging Face checkpoints (per-layer layouts in `codec/layers.py`;
b is the block index in encoder order for the encoder and in decoder order for the
decoder, j the residual unit, k the LSTM layer, B = len(ratios), R = n_residual_layers).
EnCodec (`facebook/encodec_*`; torch `conv` means `.conv.weight_g/_v/bias` or
`.conv.parametrizations.weight.original0/1`):

    encoder.conv_in                  <- encoder.layers.0.conv
    encoder.blocks[b].res[j].conv1   <- encoder.layers.{1+b(R+2)+j}.block.1.conv
    encoder.blocks[b].res[j].conv2   <- encoder.layers.{1+b(R+2)+j}.block.3.conv
    encoder.blocks[b].res[j].shortcut <- encoder.layers.{1+b(R+2)+j}.shortcut.conv
    encoder.blocks[b].conv           <- encoder.layers.{1+b(R+2)+R+1}.conv
    encoder.lstm.layers[k]           <- encoder.layers.{1+B(R+2)}.lstm.*_l{k}
    encoder.conv_out                 <- encoder.layers.{3+B(R+2)}.conv
    decoder.conv_in                  <- decoder.layers.0.conv
    decoder.lstm.layers[k]           <- decoder.layers.1.lstm.*_l{k}
    decoder.blocks[b].conv           <- decoder.layers.{3+b(R+2)}.conv (transposed)
    decoder.blocks[b].res[j].conv1   <- decoder.layers.{4+b(R+2)+j}.block.1.conv
    decoder.blocks[b].res[j].conv2   <- decoder.layers.{4+b(R+2)+j}.block.3.conv
    decoder.blocks[b].res[j].shortcut <- decoder.layers.{4+b(R+2)+j}.shortcut.conv
    decoder.conv_out                 <- decoder.layers.{3+B(R+2)}.conv

(32 kHz, B=4, R=1: encoder blocks' units at 1, 4, 7, 10, strided convs at 3, 6, 9, 12,
LSTM 13, conv_out 15; decoder transposed convs at 3, 6, 9, 12, units at 4, 7, 10, 13.)

DAC (`descript/dac_*`; its convs are saved without weight norm: load `weight` as `v` and
`||weight||` as `g`, or build with `weight_norm=False` and load it as `kernel`):

    encoder.conv_in / .act_out / .conv_out  <- encoder.conv1 / .snake1 / .conv2
    encoder.blocks[b].act / .conv           <- encoder.block.{b}.snake1 / .conv1
    encoder.blocks[b].res[j].act1 / .conv1  <- encoder.block.{b}.res_unit{j+1}.snake1 / .conv1
    encoder.blocks[b].res[j].act2 / .conv2  <- encoder.block.{b}.res_unit{j+1}.snake2 / .conv2
    decoder.conv_in / .act_out / .conv_out  <- decoder.conv1 / .snake1 / .conv2
    decoder.blocks[b].act / .conv           <- decoder.block.{b}.snake1 / .conv_t1 (transposed)
    decoder.blocks[b].res[j].*              <- decoder.block.{b}.res_unit{j+1}.* (as above)

Build inside `mgcore.sharding.init_sharded` or under `with nnx.use_eager_sharding(False):`
(every parameter carries logical axis names; see `codec/layers.py`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from codec.layers import (
    LSTM,
    Conv1d,
    ConvTranspose1d,
    Padding,
    conv_output_length,
    conv_transpose_output_length,
    make_activation,
)


@dataclasses.dataclass(frozen=True)
class SEANetConfig:
    """Architecture of a SEANet encoder/decoder pair; defaults are EnCodec 32 kHz (MusicGen).

    Attributes:
      style: "encodec" or "dac": which padding arithmetic (module docstring).
      channels: audio channels (1 mono, 2 stereo).
      dimension: latent width D of `z_BxFxD`.
      n_filters: width after the encoder's first conv; doubles at each downsampling.
      ratios: downsampling factors in encoder order; the decoder upsamples in reverse.
      activation: "elu" (EnCodec, alpha 1) or "snake" (DAC, learned per-channel alpha).
      n_residual_layers: residual units per resolution.
      dilation_base: unit j uses dilation `dilation_base ** j`.
      residual_kernel_size: kernel of each unit's first conv.
      kernel_size: kernel of the encoder's and the decoder's first conv.
      last_kernel_size: kernel of the decoder's last conv (and the encoder's, unless
        `encoder_last_kernel_size` is set).
      encoder_last_kernel_size: kernel of the encoder's last conv when it differs (DAC: 3).
      compress: residual units narrow to `width // compress` inside.
      true_skip: identity skip in residual units; False uses a 1x1 conv (EnCodec's
        `use_conv_shortcut`).
      lstm_layers: LSTM layers (with a skip) at the bottleneck of each side; 0 for none.
      causal: "encodec" style only: pad on the left only, trim transposed convs on the right.
      pad_mode: "reflect" or "constant" (zeros).
      trim_right_ratio: causal only: share of each transposed conv's trim on the right.
      weight_norm: parametrise every conv kernel as `g * v / ||v||`.
      decoder_dim: width after the decoder's first conv; None means `encoder_width`.
      final_tanh: end the decoder with tanh (DAC).
    """

    style: Literal["encodec", "dac"] = "encodec"
    channels: int = 1
    dimension: int = 128
    n_filters: int = 64
    ratios: tuple[int, ...] = (4, 4, 5, 8)
    activation: Literal["elu", "snake"] = "elu"
    n_residual_layers: int = 1
    dilation_base: int = 2
    residual_kernel_size: int = 3
    kernel_size: int = 7
    last_kernel_size: int = 7
    encoder_last_kernel_size: int | None = None
    compress: int = 2
    true_skip: bool = True
    lstm_layers: int = 2
    causal: bool = False
    pad_mode: Literal["constant", "reflect"] = "reflect"
    trim_right_ratio: float = 1.0
    weight_norm: bool = True
    decoder_dim: int | None = None
    final_tanh: bool = False

    def __post_init__(self):
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        if self.style not in ("encodec", "dac"):
            raise ValueError(f"style must be 'encodec' or 'dac', got {self.style!r}")
        if self.style == "dac" and self.causal:
            raise ValueError("the 'dac' style pads symmetrically; it has no causal variant")
        if not self.causal and self.trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense with causal=True")
        if self.pad_mode not in ("constant", "reflect"):
            raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {self.pad_mode!r}")
        if self.activation not in ("elu", "snake"):
            raise ValueError(f"activation must be 'elu' or 'snake', got {self.activation!r}")

    @classmethod
    def encodec(cls, **overrides) -> SEANetConfig:
        """EnCodec 32 kHz (`facebook/encodec_32khz`, MusicGen's codec), with overrides.

        HF config: num_filters 64, upsampling_ratios [8, 5, 4, 4], hidden_size 128,
        num_lstm_layers 2, use_causal_conv False, use_conv_shortcut False, pad_mode
        reflect, weight_norm, kernel 7 / last 7 / residual 3, dilation 2, compress 2.
        The 24 kHz model is `encodec(n_filters=32, ratios=(2, 4, 5, 8), causal=True,
        true_skip=False)`.
        """
        return cls(**overrides)

    @classmethod
    def dac(cls, **overrides) -> SEANetConfig:
        """DAC 44.1 kHz (`descript/dac_44khz`), with overrides.

        HF config: encoder_hidden_size 64, downsampling_ratios [2, 4, 8, 8], hidden_size
        64 * 2**4 = 1024, decoder_hidden_size 1536; residual units k=7, dilations 1, 3, 9.
        """
        fields = dict(
            style="dac",
            channels=1,
            dimension=1024,
            n_filters=64,
            ratios=(2, 4, 8, 8),
            activation="snake",
            n_residual_layers=3,
            dilation_base=3,
            residual_kernel_size=7,
            kernel_size=7,
            last_kernel_size=7,
            encoder_last_kernel_size=3,
            compress=1,
            true_skip=True,
            lstm_layers=0,
            causal=False,
            pad_mode="constant",
            weight_norm=True,
            decoder_dim=1536,
            final_tanh=True,
        )
        return cls(**{**fields, **overrides})

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of `ratios`."""
        return math.prod(self.ratios)

    @property
    def encoder_width(self) -> int:
        """Channels at the encoder's bottleneck: `n_filters * 2 ** len(ratios)`."""
        return self.n_filters * 2 ** len(self.ratios)

    @property
    def decoder_width(self) -> int:
        """Channels after the decoder's first conv."""
        return self.encoder_width if self.decoder_dim is None else self.decoder_dim

    @property
    def dilations(self) -> tuple[int, ...]:
        """Dilation of each residual unit's first conv."""
        return tuple(self.dilation_base**j for j in range(self.n_residual_layers))

    @property
    def latent_kernel_size(self) -> int:
        """Kernel of the encoder's last conv."""
        if self.encoder_last_kernel_size is None:
            return self.last_kernel_size
        return self.encoder_last_kernel_size

    def padding(self, kernel_size: int, dilation: int = 1) -> Padding:
        """Padding of a stride-1 conv in this style."""
        if self.style == "dac":
            return (kernel_size - 1) * dilation // 2
        return "causal" if self.causal else "noncausal"

    def stride_padding(self, stride: int) -> Padding:
        """Padding of a strided conv (kernel `2 * stride`) and its transposed twin."""
        if self.style == "dac":
            return math.ceil(stride / 2)
        return "causal" if self.causal else "noncausal"

    def frames_for(self, num_samples: int) -> int:
        """Latent frames the encoder outputs for `num_samples` input samples.

        Args:
          num_samples: input length T (residual units keep lengths, so only the plain and
            strided convs count).
        """
        n = conv_output_length(
            num_samples, self.kernel_size, padding=self.padding(self.kernel_size)
        )
        for r in self.ratios:
            n = conv_output_length(n, 2 * r, r, padding=self.stride_padding(r))
        k = self.latent_kernel_size
        return conv_output_length(n, k, padding=self.padding(k))

    def samples_for(self, num_frames: int) -> int:
        """Samples the decoder outputs for `num_frames` latent frames.

        Args:
          num_frames: latent length F; `F * hop_length` when every ratio is even (and
            always in "encodec" style).
        """
        k = self.kernel_size
        n = conv_output_length(num_frames, k, padding=self.padding(k))
        for r in reversed(self.ratios):
            n = conv_transpose_output_length(
                n, 2 * r, r, self.stride_padding(r), self.trim_right_ratio
            )
        k = self.last_kernel_size
        return conv_output_length(n, k, padding=self.padding(k))


def _conv(config: SEANetConfig, cin: int, cout: int, kernel_size: int, *, rngs, **kw) -> Conv1d:
    kw.setdefault("padding", config.padding(kernel_size, kw.get("dilation", 1)))
    return Conv1d(
        cin,
        cout,
        kernel_size,
        pad_mode=config.pad_mode,
        use_weight_norm=config.weight_norm,
        rngs=rngs,
        **kw,
    )


class ResidualUnit(nnx.Module):
    """`act -> conv(k, dilation) -> act -> conv(1)` plus a skip (EnCodec resnet block, DAC
    residual unit)."""

    def __init__(self, config: SEANetConfig, dim: int, dilation: int, *, rngs: nnx.Rngs):
        """Args:
        config: the architecture.
        dim: input and output width.
        dilation: dilation of the first conv.
        rngs: random streams; uses `params`.
        """
        hidden = dim // config.compress
        k = config.residual_kernel_size
        self.act1 = make_activation(config.activation, dim, rngs=rngs)
        self.conv1 = _conv(config, dim, hidden, k, dilation=dilation, rngs=rngs)
        self.act2 = make_activation(config.activation, hidden, rngs=rngs)
        self.conv2 = _conv(config, hidden, dim, 1, rngs=rngs)
        self.shortcut = None if config.true_skip else _conv(config, dim, dim, 1, rngs=rngs)

    def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
        y_BxTxC = self.conv2(self.act2(self.conv1(self.act1(x_BxTxC))))
        skip_BxTxC = x_BxTxC if self.shortcut is None else self.shortcut(x_BxTxC)
        # DAC centre-crops the skip when the branch came out shorter (an even effective
        # kernel); with odd ones, as in every released model, both lengths agree.
        crop = (skip_BxTxC.shape[1] - y_BxTxC.shape[1]) // 2
        if crop > 0:
            skip_BxTxC = skip_BxTxC[:, crop:-crop]
        return skip_BxTxC + y_BxTxC


class EncoderBlock(nnx.Module):
    """Residual units, then `act -> conv(k=2r, stride r)` doubling the width."""

    def __init__(self, config: SEANetConfig, dim: int, ratio: int, *, rngs: nnx.Rngs):
        """Args:
        config: the architecture.
        dim: input width; the output has `2 * dim`.
        ratio: downsampling factor r.
        rngs: random streams; uses `params`.
        """
        self.res = nnx.List([ResidualUnit(config, dim, d, rngs=rngs) for d in config.dilations])
        self.act = make_activation(config.activation, dim, rngs=rngs)
        self.conv = _conv(
            config,
            dim,
            2 * dim,
            2 * ratio,
            stride=ratio,
            padding=config.stride_padding(ratio),
            rngs=rngs,
        )

    def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
        for unit in self.res:
            x_BxTxC = unit(x_BxTxC)
        return self.conv(self.act(x_BxTxC))


class DecoderBlock(nnx.Module):
    """`act -> transposed conv(k=2r, stride r)` to `out_dim`, then residual units."""

    def __init__(
        self, config: SEANetConfig, in_dim: int, out_dim: int, ratio: int, *, rngs: nnx.Rngs
    ):
        """Args:
        config: the architecture.
        in_dim: input width.
        out_dim: output width.
        ratio: upsampling factor r.
        rngs: random streams; uses `params`.
        """
        self.act = make_activation(config.activation, in_dim, rngs=rngs)
        self.conv = ConvTranspose1d(
            in_dim,
            out_dim,
            2 * ratio,
            stride=ratio,
            padding=config.stride_padding(ratio),
            trim_right_ratio=config.trim_right_ratio,
            use_weight_norm=config.weight_norm,
            rngs=rngs,
        )
        self.res = nnx.List([ResidualUnit(config, out_dim, d, rngs=rngs) for d in config.dilations])

    def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
        x_BxTxC = self.conv(self.act(x_BxTxC))
        for unit in self.res:
            x_BxTxC = unit(x_BxTxC)
        return x_BxTxC


class SEANetEncoder(nnx.Module):
    """Waveform `[B, T, channels]` to latents `[B, frames_for(T), dimension]`."""

    def __init__(self, config: SEANetConfig, *, rngs: nnx.Rngs):
        """Args:
        config: the architecture.
        rngs: random streams; uses `params`.
        """
        self.config = config
        width = config.n_filters
        self.conv_in = _conv(config, config.channels, width, config.kernel_size, rngs=rngs)
        blocks = []
        for ratio in config.ratios:
            blocks.append(EncoderBlock(config, width, ratio, rngs=rngs))
            width *= 2
        self.blocks = nnx.List(blocks)
        self.lstm = LSTM(width, config.lstm_layers, rngs=rngs) if config.lstm_layers else None
        self.act_out = make_activation(config.activation, width, rngs=rngs)
        self.conv_out = _conv(config, width, config.dimension, config.latent_kernel_size, rngs=rngs)

    def __call__(self, wav_BxTxC: jax.Array) -> jax.Array:
        if wav_BxTxC.ndim != 3 or wav_BxTxC.shape[-1] != self.config.channels:
            raise ValueError(
                f"expected [batch, time, {self.config.channels}] audio, got {wav_BxTxC.shape}"
            )
        x_BxTxC = self.conv_in(wav_BxTxC)
        for block in self.blocks:
            x_BxTxC = block(x_BxTxC)
        if self.lstm is not None:
            x_BxTxC = self.lstm(x_BxTxC)
        return self.conv_out(self.act_out(x_BxTxC))


class SEANetDecoder(nnx.Module):
    """Latents `[B, F, dimension]` to a waveform `[B, samples_for(F), channels]`."""

    def __init__(self, config: SEANetConfig, *, rngs: nnx.Rngs):
        """Args:
        config: the architecture.
        rngs: random streams; uses `params`.
        """
        self.config = config
        top = config.decoder_width
        self.conv_in = _conv(config, config.dimension, top, config.kernel_size, rngs=rngs)
        self.lstm = LSTM(top, config.lstm_layers, rngs=rngs) if config.lstm_layers else None
        blocks = []
        # Widths as DAC computes them, `decoder_dim // 2**i`, which EnCodec's halving equals.
        for i, ratio in enumerate(reversed(config.ratios)):
            in_dim, out_dim = top // 2**i, top // 2 ** (i + 1)
            blocks.append(DecoderBlock(config, in_dim, out_dim, ratio, rngs=rngs))
        self.blocks = nnx.List(blocks)
        width = top // 2 ** len(config.ratios)
        self.act_out = make_activation(config.activation, width, rngs=rngs)
        self.conv_out = _conv(config, width, config.channels, config.last_kernel_size, rngs=rngs)

    def __call__(self, z_BxFxD: jax.Array) -> jax.Array:
        if z_BxFxD.ndim != 3 or z_BxFxD.shape[-1] != self.config.dimension:
            raise ValueError(
                f"expected [batch, frames, {self.config.dimension}] latents, got {z_BxFxD.shape}"
            )
        x_BxTxC = self.conv_in(z_BxFxD)
        if self.lstm is not None:
            x_BxTxC = self.lstm(x_BxTxC)
        for block in self.blocks:
            x_BxTxC = block(x_BxTxC)
        wav_BxTxC = self.conv_out(self.act_out(x_BxTxC))
        return jnp.tanh(wav_BxTxC) if self.config.final_tanh else wav_BxTxC
