"""Building blocks of the SEANet codec family: padded 1-D convolutions, Snake/ELU, LSTM.

Channels-last Flax NNX ports of the layers that Hugging Face transformers uses in EnCodec
(`modeling_encodec.py`: `EncodecConv1d`, `EncodecConvTranspose1d`, `EncodecLSTM`) and DAC
(`modeling_dac.py`: `Snake1d` and weight-normed `nn.Conv1d` / `nn.ConvTranspose1d`). They
compute the same functions as the torch layers, padding arithmetic included, so
pretrained weights import 1:1 (see "Parameter layout" below).

Padding (`padding=` of `Conv1d` and `ConvTranspose1d`):

- an int `p`: torch's own `padding=p` (DAC). A conv pads `p` samples on each side with
  `pad_mode`; a transposed conv drops `p` samples from each end of its output.
- `"noncausal"` / `"causal"`: EnCodec's streaming-friendly arithmetic. A conv pads
  `k_eff - stride` samples in total (`k_eff = (k - 1) * dilation + 1`): split with the
  extra sample on the left (non-causal) or all on the left (causal), plus the
  `extra_padding_for_conv1d` samples on the right so that the last window is complete
  (the output has `ceil(T / stride)` frames). A transposed conv trims `k - stride`
  samples: half each (the extra one on the left) or, causal, `ceil(total *
  trim_right_ratio)` on the right and the rest on the left.

Parameter layout. Convolution kernels are `[width, in, out]` (logical axes
`("conv_width", "conv_in", "conv_out")`); biases `[out]`:

- `kernel` (or `v`) `[W, I, O]`: torch `weight` (or `weight_v`); a conv's `[O, I, W]`
  is `.transpose(2, 1, 0)`, a transposed conv's `[I, O, W]` is `.transpose(2, 0, 1)`.
- `g`: torch `weight_g`, reshaped from `[O, 1, 1]` (conv) or `[I, 1, 1]` (transposed).
- `bias` `[O]`: torch `bias`.

torch's newer `parametrizations.weight.original0` / `original1` are `weight_g` /
`weight_v`. Weight norm follows torch `weight_norm(dim=0)`: the norm runs over every axis
but torch's dim 0, which is the *output* channel of a conv and the *input* channel of a
transposed conv, so a transposed conv's `g` has one entry per input channel (logical
axis `"conv_in"`). A checkpoint saved without weight norm (the HF DAC checkpoints) loads
into a weight-normed layer as `v = W`, `g = ||W||` (exact), or into `weight_norm=False`.

`Snake1d.alpha` `[C]` is torch's `alpha` `[1, C, 1]` reshaped. `LSTMLayer` holds torch's
`weight_ih_l{k}` `[4H, I]` as `w_ih` `[I, 4H]` (transposed), `weight_hh_l{k}` as `w_hh`
`[H, 4H]` (transposed), and `bias_ih_l{k}` / `bias_hh_l{k}` as `b_ih` / `b_hh` `[4H]`;
gates are stacked in torch's order i, f, g, o.

Parameters carry logical axis names, so build these modules inside
`mgcore.sharding.init_sharded` or under `with nnx.use_eager_sharding(False):` (Flax
otherwise tries to shard them eagerly and fails without a mesh). Convolutions use JAX's
default precision; on GPUs that may be TF32, so wrap comparisons against float32
references in `jax.default_matmul_precision("highest")`.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

Padding = int | Literal["causal", "noncausal"]
PadMode = Literal["constant", "reflect"]

_DIMS = ("NWC", "WIO", "NWC")
# Uniform in +-1/sqrt(fan_in), fan_in = in * width: torch's default conv init.
_TORCH_UNIFORM = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def extra_padding_for_conv1d(length: int, kernel: int, stride: int, padding_total: int) -> int:
    """Right padding that completes the last window (EnCodec `_get_extra_padding_for_conv1d`).

    Args:
      length: input length T.
      kernel: effective kernel size `(k - 1) * dilation + 1`.
      stride: conv stride.
      padding_total: the fixed padding `kernel - stride`.
    """
    n_frames = -(-(length - kernel + padding_total) // stride) + 1  # ceil, as torch.ceil
    ideal_length = (n_frames - 1) * stride + kernel - padding_total
    return ideal_length - length


def conv_paddings(
    length: int, kernel_size: int, stride: int, dilation: int, padding: Padding
) -> tuple[int, int]:
    """(left, right) padding that `Conv1d` applies to an input of `length` samples."""
    if isinstance(padding, int):
        return padding, padding
    kernel = (kernel_size - 1) * dilation + 1
    total = kernel - stride
    extra = extra_padding_for_conv1d(length, kernel, stride, total)
    if padding == "causal":
        return total, extra
    right = total // 2
    return total - right, right + extra


def conv_output_length(
    length: int, kernel_size: int, stride: int = 1, dilation: int = 1, padding: Padding = 0
) -> int:
    """Output length of `Conv1d` for an input of `length` samples (torch floor semantics)."""
    left, right = conv_paddings(length, kernel_size, stride, dilation, padding)
    kernel = (kernel_size - 1) * dilation + 1
    return (length + left + right - kernel) // stride + 1


def conv_transpose_trims(
    kernel_size: int, stride: int, padding: Padding, trim_right_ratio: float = 1.0
) -> tuple[int, int]:
    """(left, right) samples that `ConvTranspose1d` removes from its full output."""
    if isinstance(padding, int):
        return padding, padding
    total = kernel_size - stride
    if padding == "causal":
        right = math.ceil(total * trim_right_ratio)
    else:
        right = total // 2
    return total - right, right


def conv_transpose_output_length(
    length: int,
    kernel_size: int,
    stride: int,
    padding: Padding = 0,
    trim_right_ratio: float = 1.0,
) -> int:
    """Output length of `ConvTranspose1d`: `(T - 1) * stride + k` less the trims."""
    left, right = conv_transpose_trims(kernel_size, stride, padding, trim_right_ratio)
    return (length - 1) * stride + kernel_size - left - right


def pad1d(x_BxTxC: jax.Array, left: int, right: int, mode: PadMode) -> jax.Array:
    """Pads the time axis like EnCodec's `_pad1d`.

    torch's reflect padding needs more samples than the pad; for shorter inputs EnCodec
    zero-pads the right end first and cuts those zeros off afterwards, and so do we.

    Args:
      x_BxTxC: input.
      left: samples added before the start.
      right: samples added after the end.
      mode: "constant" (zeros) or "reflect" (mirror without repeating the edge).
    """
    if mode == "constant":
        return jnp.pad(x_BxTxC, ((0, 0), (left, right), (0, 0)))
    if mode != "reflect":
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', got {mode!r}")
    length = x_BxTxC.shape[1]
    extra = max(max(left, right) - length + 1, 0)
    x_BxTxC = jnp.pad(x_BxTxC, ((0, 0), (0, extra), (0, 0)))
    padded = jnp.pad(x_BxTxC, ((0, 0), (left, right), (0, 0)), mode="reflect")
    return padded[:, : padded.shape[1] - extra]


def weight_norm(v: jax.Array, g: jax.Array, keep_axis: int) -> jax.Array:
    """torch's `weight_norm`: `v * (g / ||v||)`, the norm over all axes but `keep_axis`.

    Args:
      v: direction, any shape.
      g: magnitude, one entry per index of `v`'s `keep_axis`.
      keep_axis: the axis that keeps a separate norm per entry.
    """
    axes = tuple(a for a in range(v.ndim) if a != keep_axis % v.ndim)
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))
    shape = [1] * v.ndim
    shape[keep_axis] = -1
    return v * (g.reshape(shape) / norm)


def _constant(value: jax.Array):
    """An initialiser that returns a value computed beforehand (g = ||v||)."""
    return lambda key, shape, dtype=jnp.float32: value.astype(dtype)


class _ConvBase(nnx.Module):
    """Kernel (plain or weight-normed) and bias shared by both convolutions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        use_weight_norm: bool,
        g_axis: int,
        rngs: nnx.Rngs,
    ):
        shape = (kernel_size, in_channels, out_channels)
        kernel_axes = ("conv_width", "conv_in", "conv_out")
        init = nnx.with_partitioning(_TORCH_UNIFORM, kernel_axes)
        self.use_weight_norm = use_weight_norm
        self.g_axis = g_axis
        if use_weight_norm:
            self.v = nnx.Param(init(rngs.params(), shape))
            v = self.v[...]
            # g starts as ||v||, so the layer starts equal to the plain initialisation.
            norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(a for a in range(3) if a != g_axis)))
            g_init = nnx.with_partitioning(_constant(norm), (kernel_axes[g_axis],))
            self.g = nnx.Param(g_init(rngs.params(), norm.shape))
        else:
            self.kernel = nnx.Param(init(rngs.params(), shape))
        bias_init = nnx.with_partitioning(nnx.initializers.zeros_init(), ("conv_out",))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_channels,)))

    def effective_kernel(self) -> jax.Array:
        """The `[width, in, out]` kernel the layer applies (`g * v / ||v||` under weight norm)."""
        if self.use_weight_norm:
            return weight_norm(self.v[...], self.g[...], self.g_axis)
        return self.kernel[...]


class Conv1d(_ConvBase):
    """1-D convolution over `[B, T, C]` with torch or EnCodec padding (module docstring)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        padding: Padding = 0,
        pad_mode: PadMode = "constant",
        use_weight_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        """Args:
        in_channels: input channels I.
        out_channels: output channels O.
        kernel_size: taps W.
        stride: hop between windows.
        dilation: spacing between taps.
        padding: an int (torch), "noncausal" or "causal" (EnCodec).
        pad_mode: "constant" (zeros) or "reflect".
        use_weight_norm: parametrise the kernel as `g * v / ||v||`.
        rngs: random streams; uses `params`.
        """
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            use_weight_norm=use_weight_norm,
            g_axis=2,
            rngs=rngs,
        )
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.padding = padding
        self.pad_mode = pad_mode

    def __call__(self, x_BxTxI: jax.Array) -> jax.Array:
        left, right = conv_paddings(
            x_BxTxI.shape[1], self.kernel_size, self.stride, self.dilation, self.padding
        )
        x_BxTxI = pad1d(x_BxTxI, left, right, self.pad_mode)
        y_BxTxO = jax.lax.conv_general_dilated(
            x_BxTxI,
            self.effective_kernel().astype(x_BxTxI.dtype),
            window_strides=(self.stride,),
            padding=((0, 0),),
            rhs_dilation=(self.dilation,),
            dimension_numbers=_DIMS,
        )
        return y_BxTxO + self.bias[...].astype(y_BxTxO.dtype)


class ConvTranspose1d(_ConvBase):
    """Transposed 1-D convolution over `[B, T, C]` with torch or EnCodec trimming."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: Padding = 0,
        trim_right_ratio: float = 1.0,
        use_weight_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        """Args:
        in_channels: input channels I.
        out_channels: output channels O.
        kernel_size: taps W.
        stride: upsampling factor.
        padding: an int (torch), "noncausal" or "causal" (EnCodec).
        trim_right_ratio: causal only: share of the `W - stride` trim taken on the right.
        use_weight_norm: parametrise the kernel as `g * v / ||v||` (g per input channel).
        rngs: random streams; uses `params`.
        """
        if padding != "causal" and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            use_weight_norm=use_weight_norm,
            g_axis=1,
            rngs=rngs,
        )
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.trim_right_ratio = trim_right_ratio

    def __call__(self, x_BxTxI: jax.Array) -> jax.Array:
        left, right = conv_transpose_trims(
            self.kernel_size, self.stride, self.padding, self.trim_right_ratio
        )
        # A transposed conv is a conv of the stride-dilated input with the flipped kernel;
        # padding W-1 on each side gives torch's full output, and trimming is less padding.
        width = self.kernel_size
        y_BxTxO = jax.lax.conv_general_dilated(
            x_BxTxI,
            self.effective_kernel()[::-1].astype(x_BxTxI.dtype),
            window_strides=(1,),
            padding=((width - 1 - left, width - 1 - right),),
            lhs_dilation=(self.stride,),
            dimension_numbers=_DIMS,
        )
        return y_BxTxO + self.bias[...].astype(y_BxTxO.dtype)


class ELU(nnx.Module):
    """ELU, `x` for `x > 0` else `alpha * (exp(x) - 1)` (EnCodec, `nn.ELU()`)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.elu(x, self.alpha)


class Snake1d(nnx.Module):
    """Snake, `x + 1 / (alpha + 1e-9) * sin(alpha * x) ** 2` per channel (DAC `Snake1d`)."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        """Args:
        channels: C; one learned `alpha` per channel, initialised to 1.
        rngs: random streams (unused: the init is constant).
        """
        init = nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",))
        self.alpha = nnx.Param(init(rngs.params(), (channels,)))

    def __call__(self, x_BxTxC: jax.Array) -> jax.Array:
        alpha = self.alpha[...].astype(x_BxTxC.dtype)
        return x_BxTxC + jnp.reciprocal(alpha + 1e-9) * jnp.square(jnp.sin(alpha * x_BxTxC))


def make_activation(name: str, channels: int, *, rngs: nnx.Rngs) -> ELU | Snake1d:
    """ "elu" (alpha 1) or "snake" (per-channel alpha over `channels`)."""
    if name == "elu":
        return ELU()
    if name == "snake":
        return Snake1d(channels, rngs=rngs)
    raise ValueError(f"activation must be 'elu' or 'snake', got {name!r}")


class LSTMLayer(nnx.Module):
    """One unidirectional LSTM layer with torch `nn.LSTM`'s equations and gate order."""

    def __init__(self, in_features: int, hidden: int, *, rngs: nnx.Rngs):
        """Args:
        in_features: I.
        hidden: H.
        rngs: random streams; uses `params`.
        """
        bound = 1.0 / math.sqrt(hidden)  # torch: every LSTM tensor ~ U(-1/sqrt(H), 1/sqrt(H))
        uniform = nnx.initializers.uniform(2 * bound)

        def init(key, shape, dtype=jnp.float32):
            return uniform(key, shape, dtype) - bound

        matrix = nnx.with_partitioning(init, ("embed", "mlp"))
        vector = nnx.with_partitioning(init, ("mlp",))
        self.w_ih = nnx.Param(matrix(rngs.params(), (in_features, 4 * hidden)))
        self.w_hh = nnx.Param(matrix(rngs.params(), (hidden, 4 * hidden)))
        self.b_ih = nnx.Param(vector(rngs.params(), (4 * hidden,)))
        self.b_hh = nnx.Param(vector(rngs.params(), (4 * hidden,)))
        self.hidden = hidden

    def __call__(self, x_BxTxI: jax.Array) -> jax.Array:
        dtype = x_BxTxI.dtype
        w_hh = self.w_hh[...].astype(dtype)
        # The input projection has no recurrence: one matmul for all steps, outside the scan.
        gates_x_TxBx4H = jnp.swapaxes(
            x_BxTxI @ self.w_ih[...].astype(dtype)
            + (self.b_ih[...] + self.b_hh[...]).astype(dtype),
            0,
            1,
        )

        def step(carry, gates_x_Bx4H):
            h_BxH, c_BxH = carry
            gates = gates_x_Bx4H + h_BxH @ w_hh
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
            return (h_BxH, c_BxH), h_BxH

        zeros = jnp.zeros((x_BxTxI.shape[0], self.hidden), dtype)
        _, h_TxBxH = jax.lax.scan(step, (zeros, zeros), gates_x_TxBx4H)
        return jnp.swapaxes(h_TxBxH, 0, 1)


class LSTM(nnx.Module):
    """Stacked LSTM with a skip connection, `y = lstm(x) + x` (EnCodec `EncodecLSTM`)."""

    def __init__(self, dim: int, num_layers: int, *, skip: bool = True, rngs: nnx.Rngs):
        """Args:
        dim: input and hidden width.
        num_layers: stacked layers; layer k holds torch's `*_l{k}` tensors.
        skip: add the input to the output.
        rngs: random streams; uses `params`.
        """
        self.layers = nnx.List([LSTMLayer(dim, dim, rngs=rngs) for _ in range(num_layers)])
        self.skip = skip

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        y_BxTxD = x_BxTxD
        for layer in self.layers:
            y_BxTxD = layer(y_BxTxD)
        return y_BxTxD + x_BxTxD if self.skip else y_BxTxD
