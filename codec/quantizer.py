"""Residual quantisation (RVQ): K codebooks of N entries, three flavours, Flax NNX.

The residual scheme is SoundStream's (Algorithm 1): codebook k quantises what codebooks
0..k-1 left over, and the latent is the sum of the K chosen embeddings. Three quantisers:

- `kind="factorized"`, DAC's (descript-audio-codec `dac/nn/quantize.py`, transformers
  `DacVectorQuantize` / `DacResidualVectorQuantizer`; pieces in
  `codec/factorized_codebook.py`): per codebook a weight-normalised
  projection D -> codebook_dim, a lookup by cosine similarity (both sides L2-normalised),
  the *unnormalised* code vector projected back to D. Trained by gradients: commitment
  loss mse(z_e, sg(z_q)) and codebook loss mse(sg(z_e), z_q), averaged per example,
  masked by quantiser dropout, averaged over the batch and summed over codebooks (DAC).
- `kind="ema"`, EnCodec's (transformers `EncodecEuclideanCodebook`, audiocraft
  `core_vq.py`; pieces in `codec/ema_codebook.py`): Euclidean nearest neighbour on a
  codebook [N, D] that gradients never touch, no projection (as EnCodec's checkpoints).
  In training only: k-means on the first batch, then exponential moving averages of
  cluster sizes and sums (Laplace-smoothed), and dead codes (EMA cluster size below a
  threshold) replaced by random rows of the batch. Commitment loss mse(z, sg(z_q)),
  averaged over the codebooks each example used (audiocraft's mean over layers).
- `kind="fsq"`, finite scalar quantisation stacked residually (`codec/fsq_codebook.py`):
  per codebook a projection D -> len(levels), a fixed grid of prod(levels) points, and a
  projection back; no codebook to learn, so none of its entries can die. No losses.

All pass gradients through the lookup unchanged (straight-through, z + sg(q - z)); for
"ema" the gradient of z_q wrt z is the identity, for "factorized" it is that of the
projections. Quantiser dropout follows DAC exactly: in training the first floor(B * p)
examples of the batch use a random number of codebooks n ~ U{1..K}, the others all K;
dropped codebooks add nothing to that example's z_q or losses (or EMA statistics); their
codes are still computed and returned, as in DAC, and `n_codebooks_B` says which are
live. The quantiser computes in float32 whatever the compute dtype: codes are argmaxes
that bfloat16 rounding would flip, and the EMA statistics are float32 state.

Inference mirrors transformers: DAC's score `-(|x|² - 2 x·e) + |e|²` on normalised
vectors and out_proj(z_e + (q - z_e)); EnCodec's argmax of `-(|x|² - 2 x·e + |e|²)` and
residual - embed[code]. Deviations, all in training: k-means, EMA updates and dead-code
resets happen only with `train=True` (audiocraft also k-means-initialises in eval mode);
a dead code's EMA count and sum are reset too, because audiocraft's reset of `embed`
alone is overwritten by the same step's EMA normalisation; `n_codebooks` also caps
training (DAC ignores it there).

Parameters ("factorized", "fsq": `nnx.Param`) and EMA state ("ema", `CodebookState`, not a
Param, so the trainer differentiates nothing of it) are stacked over codebooks (leading
K axis) and the codebooks run under `jax.lax.scan`, so compile time stays flat in K.
Logical axes (mgcore.sharding.DEFAULT_RULES), set as the `out_sharding` metadata that
`nnx.with_partitioning` attaches: codebooks ("codebooks", "vocab", None), so N may split
over `tensor`; projections ("codebooks", "embed", None) / ("codebooks", None, "embed");
per-unit vectors ("codebooks", None); cluster sizes ("codebooks", "vocab"). Flax 0.12
shards annotated variables eagerly at creation, which needs a mesh: build the module
through `mgcore.sharding.init_sharded` or inside `with nnx.use_eager_sharding(False):`.

Weights of the reference implementations map as follows (k = codebook index; torch
convs are [out, in, 1], our dense kernels [in, out]):

| this module | transformers DAC `quantizer.quantizers.{k}.` |
| --- | --- |
| `in_proj_v[k]` [D, C] | `in_proj.weight_v` [C, D, 1] -> `[:, :, 0].T` |
| `in_proj_g[k]` [C] | `in_proj.weight_g` [C, 1, 1] -> `[:, 0, 0]` |
| `in_proj_bias[k]` [C] | `in_proj.bias` |
| `out_proj_v[k]` [C, D] | `out_proj.weight_v` [D, C, 1] -> `[:, :, 0].T` |
| `out_proj_g[k]` [D] | `out_proj.weight_g` [D, 1, 1] -> `[:, 0, 0]` |
| `out_proj_bias[k]` [D] | `out_proj.bias` |
| `codebook[k]` [N, C] | `codebook.weight` |

descript's own checkpoints use the same names; torch's parametrised weight norm calls g
and v `parametrizations.weight.original0` and `original1`; a checkpoint with the norm
removed gives v = weight and g = ||weight|| over the input axis.

| this module | transformers EnCodec `quantizer.layers.{k}.codebook.` |
| --- | --- |
| `embed[k]` [N, D] | `embed` |
| `embed_avg[k]` [N, D] | `embed_avg` |
| `cluster_size[k]` [N] | `cluster_size` |
| `initialized[k]` bool | `inited` [1] -> `inited[0] > 0` |

(audiocraft: `quantizer.vq.layers.{k}._codebook.` with the same four names.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from codec import ema_codebook, factorized_codebook, fsq_codebook

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    """Residual vector quantiser settings; defaults are DAC 44 kHz's.

    Attributes:
      kind: "factorized" (DAC), "ema" (EnCodec) or "fsq" (finite scalar quantisation).
      num_codebooks: K.
      codebook_size: N entries per codebook; prod(levels) for "fsq".
      dim: latent width D.
      codebook_dim: lookup width of the factorised quantiser (DAC: 8); unused by "ema".
      decay: EMA decay of cluster sizes and sums ("ema"; EnCodec 0.99).
      epsilon: Laplace smoothing of cluster sizes ("ema").
      kmeans_iters: k-means iterations on the first training batch ("ema"; EnCodec 50);
        0 starts from a random uniform codebook instead.
      dead_code_threshold: EMA cluster size under which a code is replaced by a batch row
        ("ema"; EnCodec 2); 0 turns the reset off.
      commitment_weight: weight of the commitment loss in `QuantizerOutput.loss`
        (DAC 0.25, EnCodec 1.0).
      codebook_weight: weight of the codebook loss ("factorized"; DAC 1.0).
      quantizer_dropout: share of each training batch that uses a random number of
        codebooks (DAC 0.5; 0 = off).
      levels: grid points per projected channel ("fsq"; the FSQ paper's 8,5,5,5 for 1000).
    """

    kind: Literal["factorized", "ema", "fsq"] = "factorized"
    num_codebooks: int = 9
    codebook_size: int = 1024
    dim: int = 1024
    codebook_dim: int = 8
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    dead_code_threshold: float = 2.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    quantizer_dropout: float = 0.0
    levels: tuple[int, ...] = (8, 5, 5, 5)

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(int(x) for x in self.levels))  # JSON lists
        if self.kind not in ("factorized", "ema", "fsq"):
            raise ValueError(f"kind must be 'factorized', 'ema' or 'fsq', got {self.kind!r}")
        if self.kind == "fsq" and (
            min(self.levels, default=0) < 2 or int(np.prod(self.levels)) != self.codebook_size
        ):
            raise ValueError(
                f"fsq levels {tuple(self.levels)} must each be >= 2 and multiply to "
                f"codebook_size {self.codebook_size}"
            )
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")


class QuantizerOutput(NamedTuple):
    """What `ResidualVectorQuantizer.__call__` returns (K: codebooks run, <= num_codebooks).

    Attributes:
      z_q_BxFxD: quantised latent, straight-through (see the module docstring).
      codes_BxKxF: int32 code indices, including those of codebooks dropped for an example.
      n_codebooks_B: int32, codebooks live for each example (K without dropout).
      loss: commitment_weight * commitment_loss + codebook_weight * codebook_loss.
      commitment_loss: scalar.
      codebook_loss: scalar; 0 for "ema" (its codebook learns by EMA, not gradients)
        and "fsq" (it has none; nor a commitment loss).
      perplexity_K: exp(entropy) of each codebook's code histogram over the live
        positions of the batch (1 when a codebook is live nowhere).
      dead_fraction_K: share of the N codes that no live position of the batch chose.
      expired_fraction_K: "ema": share of codes whose EMA cluster size is below
        `dead_code_threshold` (in training, before this step's update: the codes this
        step resets); 0 for "factorized" or a zero threshold.
    """

    z_q_BxFxD: jax.Array
    codes_BxKxF: jax.Array
    n_codebooks_B: jax.Array
    loss: jax.Array
    commitment_loss: jax.Array
    codebook_loss: jax.Array
    perplexity_K: jax.Array
    dead_fraction_K: jax.Array
    expired_fraction_K: jax.Array


class CodebookState(nnx.Variable):
    """Non-gradient state of EMA codebooks; the trainer differentiates `nnx.Param`s only."""


def usage_stats(codes_BxF: jax.Array, live_B: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Perplexity and share of unused codes of one codebook over its live examples.

    Args:
      codes_BxF: codes of one codebook.
      live_B: 1 where the codebook is live for the example, else 0.
      n: codebook size.

    Returns:
      `(perplexity, dead_fraction)`: exp(entropy) (natural log) of the code histogram,
      and the share of the n codes with no live hit; (1, 1) when nothing is live.
    """
    weight_M = jnp.repeat(live_B.astype(F32), codes_BxF.shape[1])
    counts_N = jax.nn.one_hot(codes_BxF.reshape(-1), n, dtype=F32).T @ weight_M
    p_N = counts_N / jnp.maximum(counts_N.sum(), 1.0)
    entropy = -jnp.sum(jnp.where(p_N > 0, p_N * jnp.log(jnp.where(p_N > 0, p_N, 1.0)), 0.0))
    return jnp.exp(entropy), jnp.mean((counts_N == 0).astype(F32))


def dropout_codebooks(rng: jax.Array, batch: int, k: int, p: float) -> jax.Array:
    """DAC's quantiser dropout: the first floor(batch * p) examples get n ~ U{1..k}.

    Args:
      rng: PRNG key.
      batch: B.
      k: codebooks.
      p: share of the batch dropped (a fixed share, not a per-example probability).

    Returns:
      int32 `[B]` codebooks per example.
    """
    random_B = jax.random.randint(rng, (batch,), 1, k + 1, dtype=jnp.int32)
    return jnp.where(jnp.arange(batch) < int(batch * p), random_B, k).astype(jnp.int32)


class ResidualVectorQuantizer(nnx.Module):
    """K-codebook residual vector quantiser, DAC's factorised or EnCodec's EMA flavour.

    The math lives in jitted pure functions of the variables' values (`_forward`,
    `_embed_codes`), so eager calls reuse compiled code; the module reads its variables,
    calls them, and in training writes the new EMA state back.
    """

    def __init__(self, config: QuantizerConfig, *, rngs: nnx.Rngs):
        self.config = config
        values = _initial_values(rngs.params(), config)
        for name in _VARIABLES[config.kind]:
            var_type = CodebookState if config.kind == "ema" else nnx.Param
            # The `out_sharding` metadata is what `nnx.with_partitioning` would attach.
            setattr(self, name, var_type(values[name], out_sharding=_AXES[name]))

    def __call__(
        self,
        z_BxFxD: jax.Array,
        *,
        rng: jax.Array | None = None,
        train: bool = False,
        n_codebooks: int | None = None,
    ) -> QuantizerOutput:
        """Quantises a batch; in training also updates the EMA state ("ema").

        Args:
          z_BxFxD: encoder latents [batch, frames, dim].
          rng: PRNG key for quantiser dropout, k-means seeding and dead-code reset; needed
            in training when any of those is on.
          train: training mode: dropout on, EMA state updated. Off, nothing changes.
          n_codebooks: run only the first n codebooks (static); all K when None. Unlike
            DAC, which ignores it in training, it also caps training (dropout draws in
            [1, n]).

        Returns:
          A `QuantizerOutput`.
        """
        cfg = self.config
        k = self._check_n(n_codebooks)
        needs_rng = cfg.quantizer_dropout > 0 or (
            cfg.kind == "ema" and (cfg.kmeans_iters > 0 or cfg.dead_code_threshold > 0)
        )
        if train and needs_rng and rng is None:
            raise ValueError("training this quantiser needs an explicit `rng` key")
        variables = {name: getattr(self, name)[...] for name in _VARIABLES[cfg.kind]}
        out, new_state = _forward(variables, z_BxFxD, rng, config=cfg, train=train, k=k)
        if new_state is not None:
            for name, value in new_state.items():
                getattr(self, name)[...] = value
        return out

    def encode(self, z_BxFxD: jax.Array, n_codebooks: int | None = None) -> jax.Array:
        """Codes of a batch (inference: no dropout, no state change).

        Args:
          z_BxFxD: latents.
          n_codebooks: how many codebooks to run; all when None.

        Returns:
          int32 `codes_BxKxF` with K = n_codebooks.
        """
        return self(z_BxFxD, train=False, n_codebooks=n_codebooks).codes_BxKxF

    def embed_codes(self, codes_BxKxF: jax.Array) -> jax.Array:
        """Each codebook's contribution to the latent, `[B, K, F, D]` float32.

        For "factorized" this is out_proj(codebook[code]) (DAC `from_codes` per codebook);
        for "ema", embed[code]; for "fsq", out_proj(grid[code]). Summing over K gives
        `decode`. K may be smaller than num_codebooks: the first K codebooks are used.

        Args:
          codes_BxKxF: integer codes.
        """
        self._check_n(codes_BxKxF.shape[1])
        variables = {name: getattr(self, name)[...] for name in _VARIABLES[self.config.kind]}
        return _embed_codes(variables, codes_BxKxF, config=self.config)

    def decode(self, codes_BxKxF: jax.Array) -> jax.Array:
        """Latent from codes: sum of the first K codebooks' embeddings, `[B, F, D]`.

        Args:
          codes_BxKxF: integer codes; K <= num_codebooks.
        """
        return jnp.sum(self.embed_codes(codes_BxKxF), axis=1)

    def _check_n(self, n: int | None) -> int:
        k = self.config.num_codebooks
        if n is None:
            return k
        if not 1 <= n <= k:
            raise ValueError(f"n_codebooks must be in [1, {k}], got {n}")
        return int(n)


_VARIABLES = {
    "factorized": (
        "in_proj_v",
        "in_proj_g",
        "in_proj_bias",
        "out_proj_v",
        "out_proj_g",
        "out_proj_bias",
        "codebook",
    ),
    "ema": ("embed", "embed_avg", "cluster_size", "initialized"),
    "fsq": ("in_proj", "in_bias", "out_proj", "out_bias"),
}

# Logical axes (mgcore.sharding.DEFAULT_RULES) of each variable.
_AXES = {
    "in_proj_v": ("codebooks", "embed", None),
    "in_proj_g": ("codebooks", None),
    "in_proj_bias": ("codebooks", None),
    "out_proj_v": ("codebooks", None, "embed"),
    "out_proj_g": ("codebooks", None),
    "out_proj_bias": ("codebooks", None),
    "codebook": ("codebooks", "vocab", None),
    "embed": ("codebooks", "vocab", None),
    "embed_avg": ("codebooks", "vocab", None),
    "cluster_size": ("codebooks", "vocab"),
    "initialized": ("codebooks",),
    "in_proj": ("codebooks", "embed", None),
    "in_bias": ("codebooks", None),
    "out_proj": ("codebooks", None, "embed"),
    "out_bias": ("codebooks", "embed"),
}


def _initial_values(key: jax.Array, config: QuantizerConfig) -> dict[str, jax.Array]:
    """Initial variables, from one random draw (each distinct random op costs a compile)."""
    k, n, d, c = config.num_codebooks, config.codebook_size, config.dim, config.codebook_dim
    if config.kind == "fsq":
        c = len(config.levels)
        in_w, out_w = jnp.split(jax.random.normal(key, (k, 2 * d * c), F32), 2, axis=1)
        return {  # LeCun normal, zero biases
            "in_proj": in_w.reshape(k, d, c) / np.sqrt(d),
            "in_bias": jnp.zeros((k, c), F32),
            "out_proj": out_w.reshape(k, c, d) / np.sqrt(c),
            "out_bias": jnp.zeros((k, d), F32),
        }
    if config.kind == "factorized":
        shapes = ((k, d, c), (k, c, d), (k, n, c))
        sizes = [int(np.prod(shape)) for shape in shapes]
        flat = jax.random.normal(key, (sum(sizes),), F32)
        parts = jnp.split(flat, np.cumsum(sizes)[:-1])
        in_v, out_v, codebook = (p.reshape(sh) for p, sh in zip(parts, shapes, strict=True))
        # Directions with variance 1/fan_in (LeCun); weight norm starts at g = ||v|| (so
        # weight = v), as torch's weight_norm does. The codebook is torch nn.Embedding's
        # N(0, 1), which DAC keeps.
        in_v, out_v = in_v / np.sqrt(d), out_v / np.sqrt(c)
        return {
            "in_proj_v": in_v,
            "in_proj_g": jnp.linalg.norm(in_v, axis=1),
            "in_proj_bias": jnp.zeros((k, c), F32),
            "out_proj_v": out_v,
            "out_proj_g": jnp.linalg.norm(out_v, axis=1),
            "out_proj_bias": jnp.zeros((k, d), F32),
            "codebook": codebook,
        }
    if config.kmeans_iters > 0:  # zeros until k-means fills them (EnCodec)
        embed = jnp.zeros((k, n, d), F32)
    else:  # torch kaiming_uniform_ on [N, D]: bound sqrt(6 / D)
        bound = float(np.sqrt(6.0 / d))
        embed = jax.random.uniform(key, (k, n, d), F32, -bound, bound)
    return {
        "embed": embed,
        # Its own buffer: a donated train state may not alias two leaves.
        "embed_avg": jnp.copy(embed),
        "cluster_size": jnp.zeros((k, n), F32),
        "initialized": jnp.full((k,), config.kmeans_iters == 0),
    }


@functools.partial(jax.jit, static_argnames=("config", "train", "k"))
def _forward(variables, z_BxFxD, rng, *, config: QuantizerConfig, train: bool, k: int):
    """`__call__` as a pure function: (output, new EMA state or None)."""
    b = z_BxFxD.shape[0]
    if train and config.quantizer_dropout > 0:
        rng, drop_rng = jax.random.split(rng)
        n_B = dropout_codebooks(drop_rng, b, k, config.quantizer_dropout)
    else:
        n_B = jnp.full((b,), k, jnp.int32)
    live_KxB = (jnp.arange(k)[:, None] < n_B[None, :]).astype(F32)
    first_k = {name: value[:k] for name, value in variables.items()}
    z = z_BxFxD.astype(F32)
    new_state = None
    if config.kind == "factorized":
        params = {name: value.astype(F32) for name, value in first_k.items()}
        z_q, codes_KxBxF, commit_KxB, cbl_KxB = factorized_codebook.residual_quantize(
            params, z, live_KxB
        )
        # DAC: per-example means, masked, averaged over the batch, summed over codebooks.
        commitment = jnp.sum(jnp.mean(commit_KxB * live_KxB, axis=1))
        codebook_loss = jnp.sum(jnp.mean(cbl_KxB * live_KxB, axis=1))
        expired_K = jnp.zeros((k,), F32)
    elif config.kind == "fsq":
        params = {name: value.astype(F32) for name, value in first_k.items()}
        z_q, codes_KxBxF = fsq_codebook.residual_quantize(params, z, live_KxB, config.levels)
        commitment = codebook_loss = jnp.zeros((), F32)
        expired_K = jnp.zeros((k,), F32)
    else:
        keys_K = jax.random.split(rng, k) if train and rng is not None else jnp.zeros((k,))
        z_q, codes_KxBxF, commit_KxB, expired_K, state_k = ema_codebook.residual_quantize(
            first_k,
            z,
            live_KxB,
            keys_K,
            train=train,
            kmeans_iters=config.kmeans_iters,
            decay=config.decay,
            epsilon=config.epsilon,
            threshold=config.dead_code_threshold,
        )
        if train:
            new_state = {name: variables[name].at[:k].set(state_k[name]) for name in variables}
        # audiocraft: mean over the codebooks used, here per example.
        commitment = jnp.mean(jnp.sum(commit_KxB * live_KxB, axis=0) / n_B)
        codebook_loss = jnp.zeros((), F32)
    n = config.codebook_size
    perplexity_K, dead_K = jax.vmap(lambda c, live: usage_stats(c, live, n))(codes_KxBxF, live_KxB)
    out = QuantizerOutput(
        z_q_BxFxD=z_q.astype(z_BxFxD.dtype),
        codes_BxKxF=jnp.transpose(codes_KxBxF, (1, 0, 2)),
        n_codebooks_B=n_B,
        loss=config.commitment_weight * commitment + config.codebook_weight * codebook_loss,
        commitment_loss=commitment,
        codebook_loss=codebook_loss,
        perplexity_K=perplexity_K,
        dead_fraction_K=dead_K,
        expired_fraction_K=expired_K,
    )
    return out, new_state


@functools.partial(jax.jit, static_argnames=("config",))
def _embed_codes(variables, codes_BxKxF, *, config: QuantizerConfig):
    """`embed_codes` as a pure function of the variables' values."""
    k = codes_BxKxF.shape[1]
    codes_KxBxF = jnp.transpose(codes_BxKxF, (1, 0, 2))
    v = {name: value[:k].astype(F32) for name, value in variables.items() if name != "initialized"}
    if config.kind == "factorized":
        out_KxBxFxD = factorized_codebook.embed_codes(v, codes_KxBxF)
    elif config.kind == "fsq":
        out_KxBxFxD = fsq_codebook.embed_codes(v, codes_KxBxF, config.levels)
    else:
        out_KxBxFxD = jax.vmap(lambda e_NxD, c_BxF: e_NxD[c_BxF])(v["embed"], codes_KxBxF)
    return jnp.transpose(out_KxBxFxD, (1, 0, 2, 3))
