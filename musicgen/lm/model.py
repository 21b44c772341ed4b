"""The token LM: MusicGen's decoder (Copet et al., 2023) in Flax NNX.

A pre-norm transformer over the interleaved codebook sequence (`patterns.py`):

- input: the K codebook embeddings of each step, summed (each table has `card + 1`
  rows; row `card` is the special token of delays and of the start step), plus
  sinusoidal positions (cos then sin, period 10000, as audiocraft and transformers);
- each block: LayerNorm -> causal self-attention -> residual, LayerNorm ->
  cross-attention to the text -> residual, LayerNorm -> MLP (GELU) -> residual; no biases
  in attention or MLP, as MusicGen;
- the text's token states pass through `text_proj` (Linear with bias) and are zeroed
  where the text mask is 0, so a dropped caption (all mask 0) contributes nothing
  (classifier-free guidance's unconditional branch);
- optionally (`text_sum`), the caption's sentence embedding (the masked mean of the text
  states, L2-normalised: all-MiniLM's pooling) through `text_sum_proj` is added to every
  input step, as audiocraft's "sum" fuser does for global conditions: a direct path from
  the caption to every position, which a small model on a short budget learns much faster
  than cross-attention alone (MusicGen's checkpoints do not have it);
- optionally (`controls`), tempo and beat grid, metre, key, instruments and chords
  (`controls.py`): tokens appended to the text that cross-attention reads, and a
  per-step grid added at the input;
- a final LayerNorm and K linear heads give logits `[B, K, S, card]`.

Sizes (`LMConfig.size`): `tiny` for CPU runs, and MusicGen's `small` (24 layers, 1024
wide, 16 heads, about 300M without the text encoder), `medium` (48/1536/24) and `large`
(48/2048/32). The module names follow the transformers `MusicgenForCausalLM` layout
closely so `hf_import.py` maps checkpoints one to one.

Decoding is split into `cross_kv` (the keys and values of the text and controls, their
mask and the input bias, once per window) and
`decode_step` (one step against a KV cache of one keys and one values array per
layer, written in place), so `sampling.py` can run the whole generation inside one
`lax.scan`. `weights="int8"` builds every dense kernel as int8 with a float scale per
output unit, multiplied by int8 activations (for sampling: `dense.py`), and `lora`
(`lora.py`) adds low-rank adapters beside the projections it targets.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from mgcore.bounds import within
from mgcore.config_types import ConfigError
from musicgen.lm.attention import dot_product_attention
from musicgen.lm.controls import ControlEncoder
from musicgen.lm.dense import Dense
from musicgen.lm.lora import LoRAConfig
from musicgen.lm.patterns import PatternConfig

SIZES = {
    # name: (layers, dim, heads)
    "tiny": (4, 256, 4),
    "small": (24, 1024, 16),
    "medium": (48, 1536, 24),
    "large": (48, 2048, 32),
}


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """The decoder's shape.

    Attributes:
      num_codebooks, card: K codebooks of `card` entries (the codec's).
      size: a preset of `SIZES`; `num_layers`, `dim`, `num_heads` override it when set.
      ffn_dim: MLP hidden width (None: 4 x dim, MusicGen's).
      text_dim: width of the text encoder's states (MiniLM 384, T5-base 768).
      pattern: codebook interleaving (`patterns.py`).
      attention: `musicgen.lm.attention` implementation for the full-sequence passes.
      norm_eps: LayerNorm epsilon (transformers' MusicGen: 1e-5).
      weights: "float" or "int8" (int8 dense kernels and per-row int8 activations, for
        sampling).
      panels: the dense kernels of the blocks and heads stored in panels (`dense.py`), for
        sampling: `LanguageModel.with_weights` builds its models so.
      text_sum: also add the projected sentence embedding of the caption to every input
        step (see the module docstring); off for MusicGen's own architecture.
      dropout: rate of dropout on each sublayer's output (self-attention, cross-attention,
        MLP) before its residual add, in training only (`__call__` given a `dropout_rng`);
        MusicGen's published models use 0, small data needs it.
      controls: also read controls (tempo and beat grid, metre, key, instruments, chords;
        `musicgen/lm/controls.py`); off for MusicGen's own architecture.
      lora: low-rank adapters on the projections it targets (rank 0: none).
    """

    num_codebooks: int = 4
    card: int = 2048
    size: Literal["tiny", "small", "medium", "large"] = "small"
    num_layers: int | None = None
    dim: int | None = None
    num_heads: int | None = None
    ffn_dim: int | None = None
    text_dim: int = 384
    pattern: PatternConfig = dataclasses.field(default_factory=PatternConfig)
    attention: Literal["auto", "full", "chunked", "xla"] = "auto"
    norm_eps: float = 1e-5
    weights: Literal["float", "int8"] = "float"
    panels: bool = False
    text_sum: bool = False
    dropout: float = 0.0
    controls: bool = False
    lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)

    def __post_init__(self):
        # Bounds well past MusicGen-large (48 layers, 2048 wide, 32 heads), checked
        # before a model of 100000 layers is traced.
        if self.size not in SIZES:
            raise ConfigError(f"LMConfig.size must be one of {list(SIZES)}, got {self.size!r}")
        within(self, "num_codebooks", 1, 64)
        within(self, "card", 2, 1 << 20)
        within(self, "num_layers", 1, 512, optional=True)
        within(self, "dim", 1, 32768, optional=True)
        within(self, "num_heads", 1, 1024, optional=True)
        within(self, "ffn_dim", 1, 262144, optional=True)
        within(self, "text_dim", 1, 32768)
        within(self, "norm_eps", 0.0, 1.0, low_open=True)
        within(self, "dropout", 0.0, 1.0, high_open=True)
        if self.width % self.heads:
            raise ConfigError(f"LMConfig: dim {self.width} is not a multiple of {self.heads} heads")
        if self.lora.rank and (self.weights == "int8" or self.panels):
            raise ConfigError(
                "LMConfig: LoRA adapters need float weights in rows; merge them first"
            )
        delays = self.pattern.delays
        if self.pattern.kind == "delay" and delays is not None:
            if len(delays) != self.num_codebooks:
                raise ConfigError(
                    f"LMConfig.pattern.delays has {len(delays)} delays for "
                    f"{self.num_codebooks} codebooks"
                )
            within(self, "pattern.delays", 0, 1024)

    @property
    def layers(self) -> int:
        return self.num_layers or SIZES[self.size][0]

    @property
    def width(self) -> int:
        return self.dim or SIZES[self.size][1]

    @property
    def heads(self) -> int:
        return self.num_heads or SIZES[self.size][2]

    @property
    def hidden(self) -> int:
        return self.ffn_dim or 4 * self.width

    @property
    def special(self) -> int:
        """The token id of delays, padding and the start step."""
        return self.card


def _layer_norm(dim: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        dim,
        epsilon=eps,
        use_fast_variance=False,
        rngs=rngs,
        scale_metadata={"out_sharding": ("norm",)},
        bias_metadata={"out_sharding": ("norm",)},
    )


class Attention(nnx.Module):
    """Multi-head attention without biases (queries from x, keys/values from x or text)."""

    def __init__(self, dim: int, heads: int, kv_dim: int, *, int8: bool, rngs: nnx.Rngs,
                 name: str = "", lora: LoRAConfig | None = None,
                 panels: bool = False):  # fmt: skip
        self.heads = heads
        lora = lora or LoRAConfig()

        def dense(proj: str, d_in: int, d_out: int, axes: tuple[str, str]) -> Dense:
            adapter = lora.on(f"{name}.{proj}")
            return Dense(d_in, d_out, axes, int8=int8, panels=panels, lora=adapter,
                         rngs=rngs)  # fmt: skip

        self.q_proj = dense("q_proj", dim, dim, ("embed", "heads"))
        self.k_proj = dense("k_proj", kv_dim, dim, ("embed", "heads"))
        self.v_proj = dense("v_proj", kv_dim, dim, ("embed", "heads"))
        self.out_proj = dense("out_proj", dim, dim, ("heads", "embed"))

    def split(self, x_BxTxD: jax.Array) -> jax.Array:
        b, t, d = x_BxTxD.shape
        return x_BxTxD.reshape(b, t, self.heads, d // self.heads)

    def kv(self, x_BxSxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.split(self.k_proj(x_BxSxD)), self.split(self.v_proj(x_BxSxD))

    def merge(self, o_BxTxHxK: jax.Array) -> jax.Array:
        b, t, h, k = o_BxTxHxK.shape
        return self.out_proj(o_BxTxHxK.reshape(b, t, h * k))


def _cached_attention(q_BxHxK, kT_BxHxKxS, v_BxHxSxK, visible_BxS):
    """One query per row against a cache; `visible_BxS` says which keys count. Keys come
    transposed and values head-major, the layouts both products read without a copy (a
    `[B, S, H, Dh]` cache was transposed in full every step)."""
    scale = 1.0 / math.sqrt(q_BxHxK.shape[-1])
    s_BxHxS = (
        jnp.einsum("bhk,bhks->bhs", q_BxHxK, kT_BxHxKxS, preferred_element_type=jnp.float32) * scale
    )
    s_BxHxS = jnp.where(visible_BxS[:, None, :], s_BxHxS, jnp.finfo(jnp.float32).min)
    p_BxHxS = jax.nn.softmax(s_BxHxS, axis=-1).astype(v_BxHxSxK.dtype)
    o_BxHxK = jnp.einsum("bhs,bhsk->bhk", p_BxHxS, v_BxHxSxK, preferred_element_type=jnp.float32)
    return o_BxHxK.astype(v_BxHxSxK.dtype)


def _cache_layout(k_BxSxHxK, v_BxSxHxK):
    """Keys `[B, H, Dh, S]` and values `[B, H, S, Dh]` (`_cached_attention`)."""
    return k_BxSxHxK.transpose(0, 2, 3, 1), v_BxSxHxK.transpose(0, 2, 1, 3)


def _dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    if rng is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class Block(nnx.Module):
    """Pre-norm self-attention, cross-attention and MLP with residuals."""

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs):
        dim, int8, lora = config.width, config.weights == "int8", config.lora
        panels = config.panels
        self.self_attn = Attention(dim, config.heads, dim, int8=int8, rngs=rngs,
                                   name="self_attn", lora=lora, panels=panels)  # fmt: skip
        self.self_attn_layer_norm = _layer_norm(dim, config.norm_eps, rngs)
        self.encoder_attn = Attention(dim, config.heads, dim, int8=int8, rngs=rngs,
                                      name="encoder_attn", lora=lora, panels=panels)  # fmt: skip
        self.encoder_attn_layer_norm = _layer_norm(dim, config.norm_eps, rngs)
        self.fc1 = Dense(dim, config.hidden, ("embed", "mlp"), int8=int8, panels=panels,
                         lora=lora.on("fc1"), rngs=rngs)  # fmt: skip
        self.fc2 = Dense(config.hidden, dim, ("mlp", "embed"), int8=int8, panels=panels,
                         lora=lora.on("fc2"), rngs=rngs)  # fmt: skip
        self.final_layer_norm = _layer_norm(dim, config.norm_eps, rngs)
        self.attention = config.attention
        self.dropout = config.dropout

    def mlp(self, x_BxTxD: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        h = self.final_layer_norm(x_BxTxD)
        y = self.fc2(jax.nn.gelu(self.fc1(h), approximate=False))
        return x_BxTxD + _dropout(y, self.dropout, rng)

    def __call__(self, x_BxTxD, text_k, text_v, text_mask_BxL, return_kv: bool = False, rng=None):
        """The block over a whole sequence; with `return_kv`, also its self-attention keys
        and values (to prefill a decoding cache); with `rng`, dropout (training)."""
        rngs = [None] * 3 if rng is None else list(jax.random.split(rng, 3))
        attn = self.self_attn
        h = self.self_attn_layer_norm(x_BxTxD)
        q, (k, v) = attn.split(attn.q_proj(h)), attn.kv(h)
        y = attn.merge(dot_product_attention(q, k, v, causal=True, impl=self.attention))
        x_BxTxD = x_BxTxD + _dropout(y, self.dropout, rngs[0])
        cross = self.encoder_attn
        h = self.encoder_attn_layer_norm(x_BxTxD)
        q = cross.split(cross.q_proj(h))
        y = cross.merge(
            dot_product_attention(q, text_k, text_v, kv_mask_BxS=text_mask_BxL, impl="full")
        )
        x_BxTxD = self.mlp(x_BxTxD + _dropout(y, self.dropout, rngs[1]), rngs[2])
        return (x_BxTxD, k, v) if return_kv else x_BxTxD

    def step(self, x_BxD, cache_k, cache_v, pos, text_k, text_v, text_mask_BxL):
        """One decoding step: writes this step's key/value at `pos` into the cache (keys
        `[B, H, Dh, S]`, values `[B, H, S, Dh]`; the text's alike)."""
        attn = self.self_attn
        h = self.self_attn_layer_norm(x_BxD)[:, None]
        q, (k, v) = attn.split(attn.q_proj(h)), attn.kv(h)
        k, v = _cache_layout(k.astype(cache_k.dtype), v.astype(cache_v.dtype))
        cache_k = jax.lax.dynamic_update_slice_in_dim(cache_k, k, pos, 3)
        cache_v = jax.lax.dynamic_update_slice_in_dim(cache_v, v, pos, 2)
        visible_BxS = jnp.broadcast_to(
            jnp.arange(cache_v.shape[2]) <= pos, (x_BxD.shape[0], cache_v.shape[2])
        )
        o = _cached_attention(q[:, 0], cache_k, cache_v, visible_BxS)
        x_BxD = x_BxD + attn.merge(o[:, None])[:, 0]
        cross = self.encoder_attn
        h = self.encoder_attn_layer_norm(x_BxD)
        q = cross.split(cross.q_proj(h[:, None]))[:, 0]
        x_BxD = (
            x_BxD + cross.merge(_cached_attention(q, text_k, text_v, text_mask_BxL)[:, None])[:, 0]
        )
        return self.mlp(x_BxD), cache_k, cache_v


def sinusoids(positions_S: jax.Array, dim: int) -> jax.Array:
    """`[S, dim]` sinusoidal embeddings: cos of the first half, sin of the second."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    angle_SxH = positions_S.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(angle_SxH), jnp.sin(angle_SxH)], axis=-1)


class MusicGenLM(nnx.Module):
    """The decoder. Inputs are interleaved sequences that start with the special step."""

    def __init__(self, config: LMConfig, *, rngs: nnx.Rngs):
        self.config = config
        dim = config.width
        embed_init = nnx.initializers.normal(1.0 / math.sqrt(dim))
        self.embed_tokens = nnx.List(
            [
                nnx.Embed(
                    config.card + 1,
                    dim,
                    embedding_init=embed_init,
                    rngs=rngs,
                    embedding_metadata={"out_sharding": ("vocab", "embed")},
                )
                for _ in range(config.num_codebooks)
            ]
        )
        self.text_proj = Dense(config.text_dim, dim, ("embed", "embed"), bias=True, rngs=rngs)
        self.text_sum_proj = (
            Dense(config.text_dim, dim, ("embed", "embed"), rngs=rngs) if config.text_sum else None
        )
        self.controls = ControlEncoder(dim, rngs=rngs) if config.controls else None
        self.layers = nnx.List([Block(config, rngs=rngs) for _ in range(config.layers)])
        self.layer_norm = _layer_norm(dim, config.norm_eps, rngs)
        int8 = config.weights == "int8"
        self.lm_heads = nnx.List(
            [
                Dense(
                    dim, config.card, ("embed", "vocab"), int8=int8, panels=config.panels, rngs=rngs
                )
                for _ in range(config.num_codebooks)
            ]
        )

    def embed(self, tokens_BxKxS: jax.Array, positions_S: jax.Array, dtype) -> jax.Array:
        x = sum(table(tokens_BxKxS[:, k]) for k, table in enumerate(self.embed_tokens))
        return x.astype(dtype) + sinusoids(positions_S, self.config.width).astype(dtype)

    def text_states(self, text_BxLxC: jax.Array, text_mask_BxL: jax.Array) -> jax.Array:
        """Projected text states, zero where the mask is 0."""
        mask = text_mask_BxL.astype(text_BxLxC.dtype)[..., None]
        return self.text_proj(text_BxLxC * mask) * mask

    def text_bias(self, text_BxLxC: jax.Array, text_mask_BxL: jax.Array) -> jax.Array | None:
        """The `text_sum` input bias `[B, D]` (zero for an empty caption), or None."""
        if self.text_sum_proj is None:
            return None
        mask = text_mask_BxL.astype(text_BxLxC.dtype)[..., None]
        mean_BxC = (text_BxLxC * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
        norm = jnp.sqrt((mean_BxC.astype(jnp.float32) ** 2).sum(-1, keepdims=True))
        unit_BxC = mean_BxC / jnp.maximum(norm, 1e-6).astype(mean_BxC.dtype)
        return self.text_sum_proj(unit_BxC)

    def conditioning(self, text_BxLxC, text_mask_BxL, controls, steps: int, dtype):
        """What the decoder reads besides the tokens: `(memory, mask, bias)`.

        `memory` `[B, M, D]` and `mask` `[B, M]` are what cross-attention reads: the
        projected text states, then the control tokens when `controls` are given. `bias`
        is added at the input: None, `[B, D]` (`text_sum`) or `[B, steps, D]` (with the
        controls' frame grid).
        """
        text_BxLxC = text_BxLxC.astype(dtype)
        memory = self.text_states(text_BxLxC, text_mask_BxL)
        bias = self.text_bias(text_BxLxC, text_mask_BxL)
        mask = text_mask_BxL
        if controls is None:
            return memory, mask, bias
        if self.controls is None:
            raise ValueError("this LM was built without controls (LMConfig.controls is False)")
        tokens, asked = self.controls.tokens(controls, dtype)
        memory = jnp.concatenate([memory, tokens], axis=1)
        mask = jnp.concatenate([mask, asked.astype(mask.dtype)], axis=1)
        if bias is not None:  # text_sum: the asked controls' mean joins the caption's
            count = jnp.maximum(asked.sum(1, keepdims=True), 1).astype(dtype)
            bias = bias + tokens.sum(1) / count
        grid = self.controls.frame_bias(controls["frames"], steps, dtype)
        return memory, mask, grid if bias is None else grid + bias[:, None].astype(dtype)

    def _embed(self, tokens_BxKxS, positions_S, bias, dtype) -> jax.Array:
        x = self.embed(tokens_BxKxS, positions_S, dtype)
        if bias is None:
            return x
        if bias.ndim == 3:  # per step: the steps at `positions_S` (contiguous)
            bias = jax.lax.dynamic_slice_in_dim(bias, positions_S[0], positions_S.shape[0], 1)
            return x + bias.astype(dtype)
        return x + bias[:, None].astype(dtype)

    def heads(self, x_BxSxD: jax.Array) -> jax.Array:
        h = self.layer_norm(x_BxSxD)
        return jnp.stack([head(h) for head in self.lm_heads], axis=1).astype(jnp.float32)

    def __call__(
        self,
        tokens_BxKxS,
        text_BxLxC,
        text_mask_BxL,
        dtype=jnp.float32,
        dropout_rng=None,
        controls=None,
    ):
        """Logits `[B, K, S, card]` (float32) for input steps `tokens_BxKxS`; dropout
        (`config.dropout`) only when given `dropout_rng`; `controls`: the arrays of
        `musicgen/lm/controls.py` (None: none asked)."""
        steps = tokens_BxKxS.shape[-1]
        memory, mask, bias = self.conditioning(text_BxLxC, text_mask_BxL, controls, steps, dtype)
        x = self._embed(tokens_BxKxS, jnp.arange(steps), bias, dtype)
        for i, layer in enumerate(self.layers):
            k, v = layer.encoder_attn.kv(memory)
            rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, i)
            x = layer(x, k, v, mask, rng=rng)
        return self.heads(x)

    # -- decoding -------------------------------------------------------------------

    def cross_kv(self, text_BxLxC, text_mask_BxL, dtype=jnp.float32, controls=None, steps=1):
        """What decoding needs of the prompt, once per window: `(keys, values, bias, mask)`.

        Keys `[B, H, Dh, M]` and values `[B, H, M, Dh]` per layer (tuples) over the text
        and the control tokens (the cache's layouts), `mask` `[B, M]` says which
        count; `bias` is the input bias (`conditioning`: None, `[B, D]`, or `[B, steps, D]`
        with controls).
        """
        memory, mask, bias = self.conditioning(text_BxLxC, text_mask_BxL, controls, steps, dtype)
        kv = [_cache_layout(*layer.encoder_attn.kv(memory)) for layer in self.layers]
        return tuple(k for k, _ in kv), tuple(v for _, v in kv), bias, mask

    def prefill(self, tokens_BxKxP, cache, cross, dtype=jnp.float32):
        """The cache with positions `[0, P)` written by one pass over known input steps.

        What P calls of `decode_step` would write, at the cost of one forward pass (an
        audio prompt's steps, the context of each long-form window).
        """
        cache_k, cache_v = cache
        text_kT, text_v, bias, text_mask_BxL = cross
        x = self._embed(tokens_BxKxP, jnp.arange(tokens_BxKxP.shape[-1]), bias, dtype)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):  # the text's keys and values as [B, M, H, Dh]
            text_k, text_v_i = text_kT[i].transpose(0, 3, 1, 2), text_v[i].transpose(0, 2, 1, 3)
            x, k, v = layer(x, text_k, text_v_i, text_mask_BxL, return_kv=True)
            k, v = _cache_layout(k.astype(cache_k[i].dtype), v.astype(cache_v[i].dtype))
            new_k.append(cache_k[i].at[..., : k.shape[-1]].set(k))
            new_v.append(cache_v[i].at[:, :, : v.shape[2]].set(v))
        return tuple(new_k), tuple(new_v)

    def init_cache(self, batch: int, steps: int, dtype=jnp.float32):
        """An empty self-attention cache for `steps` positions: keys `[B, H, Dh, steps]`
        and values `[B, H, steps, Dh]`, one array per layer each (separate arrays, so that
        a decoding loop updates each in place; slicing and restacking one `[layers, ...]`
        array would copy the whole cache every step). On CPU the cache is float32 whatever
        `dtype` is: XLA:CPU's attention products up-cast a bfloat16 cache to float32, in
        full, every step."""
        c = self.config
        dtype = jnp.float32 if jax.default_backend() == "cpu" else dtype
        hd = c.width // c.heads
        keys = tuple(jnp.zeros((batch, c.heads, hd, steps), dtype) for _ in range(c.layers))
        values = tuple(jnp.zeros((batch, c.heads, steps, hd), dtype) for _ in range(c.layers))
        return keys, values

    def decode_step(self, tokens_BxK, pos, cache, cross, dtype=jnp.float32):
        """Logits `[B, K, card]` for one input step at position `pos`; the new cache."""
        cache_k, cache_v = cache
        text_k, text_v, bias, text_mask_BxL = cross
        x = self._embed(tokens_BxK[:, :, None], jnp.reshape(pos, (1,)), bias, dtype)[:, 0]
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer.step(
                x, cache_k[i], cache_v[i], pos, text_k[i], text_v[i], text_mask_BxL
            )
            new_k.append(k)
            new_v.append(v)
        logits = self.heads(x[:, None])[:, :, 0]
        return logits, (tuple(new_k), tuple(new_v))
