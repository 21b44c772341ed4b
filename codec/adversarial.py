"""Adversarial losses for codec training over `DiscriminatorOutput`s: GAN and feature matching.

Pure functions of the discriminators' outputs, as DAC (`dac/nn/loss.py`, `GANLoss`) and
EnCodec (audiocraft `adversarial/losses.py`) define them. With `D_k` the logits of
sub-discriminator k (a mean over all its positions is written `E`):

| kind | discriminator, per k | generator, per k | used by |
| --- | --- | --- | --- |
| `least_squares` | `E[D_k(fake)^2] + E[(1 - D_k(real))^2]` | `E[(1 - D_k(fake))^2]` | DAC |
| `hinge` | `E[relu(1 - D_k(real))] + E[relu(1 + D_k(fake))]` | `-E[D_k(fake)]` | audiocraft |
| `hinge2` | as `hinge` | `E[relu(1 - D_k(fake))]` | EnCodec paper |

The per-k terms are then summed (`reduction="sum"`, DAC) or averaged
(`reduction="mean"`, audiocraft divides by the number of sub-discriminators).

Feature matching compares the hidden feature maps `F_k^l` of real and fake audio:

- DAC: `sum_k sum_l E|F_k^l(fake) - F_k^l(real)|` (`relative=False, reduction="sum"`).
- audiocraft's code: the same L1 averaged over layers, then over sub-discriminators
  (`relative=False, reduction="mean"`); it computes `E|F_k^l(real)|` but never uses it.
- EnCodec paper (eq. 2): each layer's L1 divided by `E|F_k^l(real)|`, averaged over layers
  and sub-discriminators (`relative=True, reduction="mean"`).

`AdversarialLossConfig.dac()` and `.encodec()` bundle these choices. The losses weights
live with the trainer (DAC: 1 for the adversarial term, 2 for feature matching; EnCodec:
4 and 4 through its gradient balancer).

Gradients: the real feature maps are held constant in feature matching (DAC detaches
them); for the discriminator update, pass outputs computed on the generator's audio
under `jax.lax.stop_gradient` or take gradients only with respect to the discriminator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp

from codec.discriminators import DiscriminatorOutput

AdversarialKind = Literal["least_squares", "hinge", "hinge2"]
Reduction = Literal["mean", "sum"]

# Guards the relative feature loss against an all-zero real feature map.
_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class AdversarialLossConfig:
    """How the adversarial and feature-matching losses are formed.

    Attributes:
      kind: logit loss, see the module docstring.
      reduction: "sum" or "mean" over sub-discriminators (and, for features, layers).
      relative_features: divide each layer's L1 by the mean |real feature|.
    """

    kind: AdversarialKind = "hinge"
    reduction: Reduction = "mean"
    relative_features: bool = False

    @classmethod
    def dac(cls) -> AdversarialLossConfig:
        """DAC: least squares, summed over sub-discriminators and layers."""
        return cls(kind="least_squares", reduction="sum", relative_features=False)

    @classmethod
    def encodec(cls) -> AdversarialLossConfig:
        """EnCodec as trained in audiocraft (hinge, averaged), with the paper's relative L1."""
        return cls(kind="hinge", reduction="mean", relative_features=True)


def discriminator_logit_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: AdversarialKind = "hinge"
) -> jax.Array:
    """One sub-discriminator's loss for telling real (high) from fake (low) logits.

    Args:
      real_logits: logits on real audio, any shape.
      fake_logits: logits on generated audio, any shape.
      kind: "least_squares" (targets 1 and 0) or "hinge"/"hinge2" (margins at ±1).

    Returns:
      A float32 scalar.
    """
    real = real_logits.astype(jnp.float32)
    fake = fake_logits.astype(jnp.float32)
    if kind == "least_squares":
        return jnp.mean(jnp.square(1.0 - real)) + jnp.mean(jnp.square(fake))
    if kind in ("hinge", "hinge2"):
        return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
    raise ValueError(f"unknown adversarial loss kind {kind!r}")


def generator_logit_loss(fake_logits: jax.Array, kind: AdversarialKind = "hinge") -> jax.Array:
    """One sub-discriminator's loss for the generator: low when its logits are high.

    Args:
      fake_logits: logits on generated audio, any shape.
      kind: "least_squares" (target 1), "hinge" (`-mean`, unbounded) or "hinge2"
        (`mean(relu(1 - x))`, flat once past the margin).

    Returns:
      A float32 scalar.
    """
    fake = fake_logits.astype(jnp.float32)
    if kind == "least_squares":
        return jnp.mean(jnp.square(1.0 - fake))
    if kind == "hinge":
        return -jnp.mean(fake)
    if kind == "hinge2":
        return jnp.mean(jax.nn.relu(1.0 - fake))
    raise ValueError(f"unknown adversarial loss kind {kind!r}")


def _reduce(terms: Sequence[jax.Array], reduction: Reduction) -> jax.Array:
    if not terms:
        raise ValueError("no discriminator outputs to reduce")
    total = sum(terms[1:], terms[0])
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / len(terms)
    raise ValueError(f"unknown reduction {reduction!r}")


def discriminator_loss(
    real: Sequence[DiscriminatorOutput],
    fake: Sequence[DiscriminatorOutput],
    *,
    kind: AdversarialKind = "hinge",
    reduction: Reduction = "mean",
) -> jax.Array:
    """The discriminators' loss: every sub-discriminator's `discriminator_logit_loss`.

    Args:
      real: outputs on real audio, one per sub-discriminator.
      fake: outputs on generated audio, same order.
      kind: see `discriminator_logit_loss`.
      reduction: "sum" (DAC) or "mean" (audiocraft) over sub-discriminators.

    Returns:
      A float32 scalar.
    """
    _check_pairs(real, fake)
    terms = [
        discriminator_logit_loss(r.logits, f.logits, kind) for r, f in zip(real, fake, strict=True)
    ]
    return _reduce(terms, reduction)


def generator_loss(
    fake: Sequence[DiscriminatorOutput],
    *,
    kind: AdversarialKind = "hinge",
    reduction: Reduction = "mean",
) -> jax.Array:
    """The generator's adversarial loss: every sub-discriminator's `generator_logit_loss`.

    Args:
      fake: discriminator outputs on generated audio.
      kind: see `generator_logit_loss`.
      reduction: "sum" (DAC) or "mean" (audiocraft) over sub-discriminators.

    Returns:
      A float32 scalar.
    """
    return _reduce([generator_logit_loss(f.logits, kind) for f in fake], reduction)


def feature_matching_loss(
    real: Sequence[DiscriminatorOutput],
    fake: Sequence[DiscriminatorOutput],
    *,
    relative: bool = False,
    reduction: Reduction = "mean",
) -> jax.Array:
    """L1 distance between the hidden feature maps on real and on generated audio.

    Args:
      real: outputs on real audio (held constant: no gradient flows through them).
      fake: outputs on generated audio, same order and shapes.
      relative: divide each layer's mean |fake - real| by its mean |real| (EnCodec paper).
      reduction: "sum" over layers and sub-discriminators (DAC), or "mean" over each
        sub-discriminator's layers and then over sub-discriminators (audiocraft).

    Returns:
      A float32 scalar.
    """
    _check_pairs(real, fake)
    per_disc = []
    for r, f in zip(real, fake, strict=True):
        if len(r.feature_maps) != len(f.feature_maps) or not r.feature_maps:
            raise ValueError("real and fake outputs need the same, non-zero number of layers")
        layers = []
        for real_map, fake_map in zip(r.feature_maps, f.feature_maps, strict=True):
            real_map = jax.lax.stop_gradient(real_map.astype(jnp.float32))
            l1 = jnp.mean(jnp.abs(fake_map.astype(jnp.float32) - real_map))
            if relative:
                l1 = l1 / (jnp.mean(jnp.abs(real_map)) + _EPS)
            layers.append(l1)
        per_disc.append(_reduce(layers, reduction))
    return _reduce(per_disc, reduction)


def _check_pairs(real: Sequence[DiscriminatorOutput], fake: Sequence[DiscriminatorOutput]):
    if len(real) != len(fake):
        raise ValueError(f"{len(real)} real outputs but {len(fake)} fake ones")
