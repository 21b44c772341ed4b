"""The T5 / Flan-T5 encoder in Flax NNX, loaded from a Hugging Face checkpoint.

Follows transformers' `T5EncoderModel` (Raffel et al. 2020; T5 v1.1 and Flan-T5, Chung et
al. 2022): token embeddings without positions, pre-norm layers of self-attention with a
relative position bias (bucketed, computed by the first layer and shared by all) and an
MLP, RMS LayerNorms (no mean, no bias), no biases anywhere and no 1/sqrt(d) attention
scale. `feed_forward_proj` picks the MLP: "relu" (original T5) or "gated-gelu" (v1.1,
Flan-T5: gelu_new(x W0) * (x W1)). MusicGen conditions on T5-base this way.

A folder needs config.json, model.safetensors (or shards with their index) and
tokenizer.json; an encoder-decoder checkpoint (`T5ForConditionalGeneration`) works too,
its decoder tensors left out, and so does a MusicGen folder (its "text_encoder").
`load_t5_encoder_from_state` builds the encoder from a dict of arrays under a prefix, for
MusicGen's checkpoint (prefix "text_encoder."). Names:

    shared.weight (or encoder.embed_tokens.weight)               -> embed.embedding
    encoder.block.0.layer.0.SelfAttention.relative_attention_bias -> relative_bias.embedding
    encoder.block.i.layer.0.layer_norm / SelfAttention.{q,k,v,o}  -> layers.i.attn_norm / q,k,v,o
    encoder.block.i.layer.1.layer_norm / DenseReluDense.{wi,wi_0,wi_1,wo}
                                                                  -> layers.i.mlp_norm / wi,...
    encoder.final_layer_norm.weight                               -> final_norm.scale
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.bounds import within
from mgcore.hf import CONFIG_FILE, Tensors, converting, field, fill, read_config, read_tensors
from musicgen.text.conditioner import TextEncoderError
from musicgen.text.files import check_folder, read_tokenizer

# Float32 matmuls at full precision everywhere (no TF32 on GPUs): the parity tests hold 1e-5.
PRECISION = jax.lax.Precision.HIGHEST
MODEL_TYPES = ("t5", "mt5")
# transformers' ACT2FN names that T5 checkpoints use.
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
    """A T5 encoder's shape (transformers' `T5Config` fields)."""

    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    num_layers: int
    d_ff: int
    feed_forward_proj: str = "relu"
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    pad_token_id: int = 0

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.split("-")[0] == "gated"

    @property
    def activation(self) -> str:
        """The MLP's activation, named as transformers' `T5Config.dense_act_fn`."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]

    def __post_init__(self):
        for name, low, high in (("vocab_size", 1, 1 << 22), ("d_model", 1, 32768),
                                ("d_kv", 1, 4096), ("num_heads", 1, 1024),
                                ("num_layers", 1, 512), ("d_ff", 1, 262144),
                                ("relative_attention_num_buckets", 2, 4096),
                                ("relative_attention_max_distance", 1, 1 << 20),
                                ("pad_token_id", 0, self.vocab_size - 1)):  # fmt: skip
            within(self, name, low, high)
        within(self, "layer_norm_epsilon", 0.0, 1.0, low_open=True)

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> T5Config:
        """Our config of a T5 `config.json` (model_type "t5" or "mt5").

        Args:
          hf: the `config.json` fields.
          source: the file, for messages.

        Raises:
          TextEncoderError: one line naming `source` and the field at fault.
        """
        if not isinstance(hf, dict):
            raise TextEncoderError(f"{source}: the T5 config is not a JSON object")
        if hf.get("model_type", "t5") not in MODEL_TYPES:
            raise TextEncoderError(
                f"{source} has model_type {hf.get('model_type')!r}; the t5 encoder loads "
                f"{MODEL_TYPES} models only"
            )
        with converting(source, TextEncoderError):
            config = cls(
                vocab_size=field(hf, "vocab_size", int),
                d_model=field(hf, "d_model", int),
                d_kv=field(hf, "d_kv", int),
                num_heads=field(hf, "num_heads", int),
                num_layers=field(hf, "num_layers", int),
                d_ff=field(hf, "d_ff", int),
                feed_forward_proj=str(hf.get("feed_forward_proj", "relu")),
                relative_attention_num_buckets=field(hf, "relative_attention_num_buckets", int, 32),
                relative_attention_max_distance=field(
                    hf, "relative_attention_max_distance", int, 128
                ),
                layer_norm_epsilon=field(hf, "layer_norm_epsilon", float, 1e-6),
                pad_token_id=field(hf, "pad_token_id", int, 0),
            )
        parts = config.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and not config.gated):
            raise TextEncoderError(f"feed_forward_proj {config.feed_forward_proj!r} is malformed")
        if config.activation not in ACTIVATIONS:
            raise TextEncoderError(
                f"T5 activation {config.activation!r} is not supported; one of {list(ACTIVATIONS)}"
            )
        return config


def relative_position_bucket(
    relative_position: np.ndarray, num_buckets: int = 32, max_distance: int = 128
) -> np.ndarray:
    """T5's bidirectional bucket of each relative position (key - query), as int64.

    Half the buckets hold exact small offsets, the other half log-spaced ones up to
    `max_distance`; the float32 arithmetic follows transformers' step by step, so the
    truncation to an integer lands on the same bucket.

    Args:
      relative_position: integer offsets of any shape.
      num_buckets: buckets for both signs together.
      max_distance: offsets this far or farther share the last bucket.
    """
    num_buckets //= 2
    buckets = (relative_position > 0).astype(np.int64) * num_buckets
    distance = np.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    with np.errstate(divide="ignore"):
        log_ratio = np.log(distance.astype(np.float32) / np.float32(max_exact))
    scaled = log_ratio / np.float32(math.log(max_distance / max_exact))
    scaled = scaled * np.float32(num_buckets - max_exact)
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, distance, large)


class RMSNorm(nnx.Module):
    """T5's LayerNorm: x / sqrt(mean(x²) + eps) * scale, without mean or bias."""

    def __init__(self, dim: int, eps: float, *, rngs: nnx.Rngs):
        del rngs  # the scale starts at one
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        variance_BxLx1 = jnp.mean(jnp.square(x_BxLxD), axis=-1, keepdims=True)
        return self.scale[...] * (x_BxLxD * jax.lax.rsqrt(variance_BxLx1 + self.eps))


def _linear(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=False, precision=PRECISION, rngs=rngs)


class T5Layer(nnx.Module):
    """Pre-norm: x = x + attn(norm(x), bias); x = x + mlp(norm(x))."""

    def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
        d, inner = config.d_model, config.num_heads * config.d_kv
        self.num_heads, self.activation, self.gated = (
            config.num_heads,
            config.activation,
            config.gated,
        )
        self.attn_norm = RMSNorm(d, config.layer_norm_epsilon, rngs=rngs)
        self.q = _linear(d, inner, rngs)
        self.k = _linear(d, inner, rngs)
        self.v = _linear(d, inner, rngs)
        self.o = _linear(inner, d, rngs)
        self.mlp_norm = RMSNorm(d, config.layer_norm_epsilon, rngs=rngs)
        if config.gated:
            self.wi_0 = _linear(d, config.d_ff, rngs)
            self.wi_1 = _linear(d, config.d_ff, rngs)
        else:
            self.wi = _linear(d, config.d_ff, rngs)
        self.wo = _linear(config.d_ff, d, rngs)

    def __call__(self, x_BxLxD: jax.Array, bias_BxHxLxL: jax.Array) -> jax.Array:
        B, L, _ = x_BxLxD.shape
        H = self.num_heads
        y_BxLxD = self.attn_norm(x_BxLxD)
        q_BxLxHxK = self.q(y_BxLxD).reshape(B, L, H, -1)
        k_BxLxHxK = self.k(y_BxLxD).reshape(B, L, H, -1)
        v_BxLxHxK = self.v(y_BxLxD).reshape(B, L, H, -1)
        scores_BxHxLxL = jnp.einsum("blhk,bmhk->bhlm", q_BxLxHxK, k_BxLxHxK, precision=PRECISION)
        weights_BxHxLxL = jax.nn.softmax(scores_BxHxLxL + bias_BxHxLxL, axis=-1)
        out_BxLxHxK = jnp.einsum("bhlm,bmhk->blhk", weights_BxHxLxL, v_BxLxHxK, precision=PRECISION)
        x_BxLxD = x_BxLxD + self.o(out_BxLxHxK.reshape(B, L, -1))

        act = ACTIVATIONS[self.activation]
        y_BxLxD = self.mlp_norm(x_BxLxD)
        if self.gated:
            h_BxLxF = act(self.wi_0(y_BxLxD)) * self.wi_1(y_BxLxD)
        else:
            h_BxLxF = act(self.wi(y_BxLxD))
        return x_BxLxD + self.wo(h_BxLxF)


class T5Encoder(nnx.Module):
    """T5's encoder: last hidden states [B, L, d_model] of token ids and their mask.

    Args:
      config: the shape.
      rngs: initialisers (a checkpoint overwrites them).
    """

    def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
        self.config = config
        self.dim = config.d_model
        self.embed = nnx.Embed(config.vocab_size, config.d_model, rngs=rngs)
        self.relative_bias = nnx.Embed(
            config.relative_attention_num_buckets, config.num_heads, rngs=rngs
        )
        self.layers = nnx.List([T5Layer(config, rngs=rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, rngs=rngs)

    def position_bias(self, length: int) -> jax.Array:
        """The relative position bias [1, H, L, L] every layer adds to its scores."""
        positions_L = np.arange(length)
        buckets_LxL = relative_position_bucket(
            positions_L[None, :] - positions_L[:, None],
            self.config.relative_attention_num_buckets,
            self.config.relative_attention_max_distance,
        )
        return self.relative_bias(jnp.asarray(buckets_LxL)).transpose(2, 0, 1)[None]

    def __call__(self, ids_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
        # transformers' extended mask: (1 - mask) * finfo.min added to the scores.
        mask_bias_BxL = jnp.where(mask_BxL, 0.0, jnp.finfo(jnp.float32).min)
        bias_BxHxLxL = self.position_bias(ids_BxL.shape[1]) + mask_bias_BxL[:, None, None, :]
        x_BxLxD = self.embed(ids_BxL)
        for layer in self.layers:
            x_BxLxD = layer(x_BxLxD, bias_BxHxLxL)
        return self.final_norm(x_BxLxD)


# ---------------------------------------------------------------------------- weights
def _ignored(name: str) -> bool:
    """The decoder half of an encoder-decoder checkpoint, which the encoder leaves out."""
    return name.startswith("decoder.") or name == "lm_head.weight"


def convert_t5_weights(config: T5Config, src: Tensors, prefix: str = "") -> dict:
    """Our flat variables from a transformers T5 state dict (names: module doc).

    Args:
      config: the shape.
      src: the checkpoint's tensors.
      prefix: the encoder's tensors' name prefix (e.g. "text_encoder."); every tensor
        under it must be used, except a decoder's (`decoder.*`, `lm_head.weight`).
    """
    out: dict[str, np.ndarray] = {}
    shared, tied = f"{prefix}shared.weight", f"{prefix}encoder.embed_tokens.weight"
    out["embed.embedding"] = src.take(shared if src.has(shared) else tied)
    if src.has(tied):
        src.take(tied)  # the same tensor as shared.weight when both are saved
    bias = f"{prefix}encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    out["relative_bias.embedding"] = src.take(bias)
    mlp = ("wi_0", "wi_1", "wo") if config.gated else ("wi", "wo")
    for i in range(config.num_layers):
        theirs = f"{prefix}encoder.block.{i}.layer"
        out[f"layers.{i}.attn_norm.scale"] = src.take(f"{theirs}.0.layer_norm.weight")
        for name in ("q", "k", "v", "o"):
            out[f"layers.{i}.{name}.kernel"] = src.take(f"{theirs}.0.SelfAttention.{name}.weight").T
        out[f"layers.{i}.mlp_norm.scale"] = src.take(f"{theirs}.1.layer_norm.weight")
        for name in mlp:
            out[f"layers.{i}.{name}.kernel"] = src.take(
                f"{theirs}.1.DenseReluDense.{name}.weight"
            ).T
    out["final_norm.scale"] = src.take(f"{prefix}encoder.final_layer_norm.weight")
    src.check_all_used(
        lambda name: not name.startswith(prefix) or _ignored(name.removeprefix(prefix))
    )
    return out


def load_t5_encoder_from_state(
    hf_config: dict[str, Any],
    tensors: dict[str, np.ndarray],
    *,
    prefix: str = "",
    source: str = "the T5 weights",
    config_source: str = "config.json",
) -> T5Encoder:
    """Our `T5Encoder` from a T5 `config.json` dict and arrays with transformers' names.

    Strict under `prefix`: every encoder variable must be filled and every tensor under
    the prefix used (a decoder's aside); tensors outside the prefix are not looked at.

    Args:
      hf_config: the T5 `config.json` fields (for MusicGen: its "text_encoder" entry).
      tensors: NumPy arrays by name, e.g. a whole MusicGen state dict.
      prefix: the encoder's name prefix in `tensors` ("text_encoder." for MusicGen).
      source: what the tensors came from, for error messages.
      config_source: where `hf_config` came from, for error messages.
    """
    config = T5Config.from_hf(hf_config, config_source)
    src = Tensors(tensors, source, TextEncoderError)
    flat = convert_t5_weights(config, src, prefix)
    return fill(lambda: T5Encoder(config, rngs=nnx.Rngs(0)), flat, source, TextEncoderError)


def load_t5_encoder(directory: str | os.PathLike) -> tuple[T5Encoder, Any]:
    """The T5 encoder of a Hugging Face folder and its `tokenizers.Tokenizer`.

    Args:
      directory: a folder with config.json, model.safetensors (or shards with
        model.safetensors.index.json) and tokenizer.json; a Hugging Face MusicGen folder
        (model_type "musicgen") gives its "text_encoder" (tensors "text_encoder.*").

    Raises:
      TextEncoderError: missing or unreadable files, an unsupported config, or tensors
        that don't match it.
    """
    directory = check_folder(directory, "the T5 text encoder")
    hf = read_config(directory, TextEncoderError)
    prefix, config_source = "", str(directory / CONFIG_FILE)
    if hf.get("model_type") == "musicgen":  # a MusicGen folder: its text_encoder part
        hf, prefix = hf.get("text_encoder") or {}, "text_encoder."
        config_source += " text_encoder"
    tokenizer = read_tokenizer(directory)
    model = load_t5_encoder_from_state(
        hf,
        read_tensors(directory, TextEncoderError),
        prefix=prefix,
        source=f"the T5 weights in {directory}",
        config_source=config_source,
    )
    return model, tokenizer
