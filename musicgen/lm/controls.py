"""How the LM reads controls (`musicgen.controls`): tokens beside the text, a grid at the input.

- **Global controls** become tokens of the model's width, appended to the projected text
  states that cross-attention reads, each with its own mask bit (0 when not asked):
  the key (an embedding of the tonic plus one of the mode), the tempo (random-free
  Fourier features of log bpm through a linear layer: a continuous embedding, so 126 bpm
  lies between 120 and 132), the metre (embeddings of numerator and denominator) and one
  token per instrument (up to `MAX_INSTRUMENTS`). With `text_sum`, their mean is also
  added to every input step, as the caption's sentence embedding is.
- **Time-aligned controls** (`features.frame_features`: beat and bar phase, chord chroma)
  pass through one linear layer and are added at the input step that predicts their
  frame's first codebook.

A control that is not asked contributes nothing (masked token, zero features), so one
model serves any subset, no controls at all included: classifier-free guidance's
unconditional rows have neither text nor controls (`no_controls_like`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from musicgen.controls.features import FRAME_FEATURES, NOT_ASKED
from musicgen.controls.vocab import (
    BPM_RANGE,
    INSTRUMENTS,
    MAX_INSTRUMENTS,
    MAX_NUMERATOR,
    METER_DENOMINATORS,
    MODES,
)

TEMPO_FREQUENCIES = 16
GLOBAL_TOKENS = 3 + MAX_INSTRUMENTS  # key, tempo, metre, instruments


def tempo_features(bpm_B: jax.Array) -> jax.Array:
    """`[B, 2 * TEMPO_FREQUENCIES]`: sin and cos of pi * k * u, k = 1..16, where u maps log
    bpm over `BPM_RANGE` to [0, 1] (a 4 % step at the top frequency turns 0.9 rad)."""
    lo, hi = BPM_RANGE
    u = jnp.log(jnp.clip(bpm_B, lo, hi) / lo) / math.log(hi / lo)
    angle = math.pi * u[:, None] * jnp.arange(1, TEMPO_FREQUENCIES + 1, dtype=jnp.float32)
    return jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def _embed(n: int, dim: int, rngs: nnx.Rngs) -> nnx.Embed:
    return nnx.Embed(
        n,
        dim,
        embedding_init=nnx.initializers.normal(1.0 / math.sqrt(dim)),
        rngs=rngs,
        embedding_metadata={"out_sharding": (None, "embed")},
    )


def _linear(d_in: int, dim: int, rngs: nnx.Rngs, bias: bool) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        dim,
        use_bias=bias,
        rngs=rngs,
        kernel_metadata={"out_sharding": (None, "embed")},
        bias_metadata={"out_sharding": ("embed",)},
    )


class ControlEncoder(nnx.Module):
    """Control tokens `[B, GLOBAL_TOKENS, D]` with their mask, and the input grid bias."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.tonic = _embed(12, dim, rngs)
        self.mode = _embed(len(MODES), dim, rngs)
        self.tempo = _linear(2 * TEMPO_FREQUENCIES, dim, rngs, bias=True)
        self.numerator = _embed(MAX_NUMERATOR + 1, dim, rngs)
        self.denominator = _embed(max(METER_DENOMINATORS) + 1, dim, rngs)
        self.instrument = _embed(len(INSTRUMENTS), dim, rngs)
        self.frames = _linear(FRAME_FEATURES, dim, rngs, bias=False)

    def tokens(self, controls: dict, dtype) -> tuple[jax.Array, jax.Array]:
        """The global control tokens and their mask (1 where asked)."""
        tonic, mode = controls["tonic"], controls["mode"]
        bpm, meter, instruments = controls["bpm"], controls["meter"], controls["instruments"]
        key = self.tonic(jnp.maximum(tonic, 0)) + self.mode(jnp.maximum(mode, 0))
        tempo = self.tempo(tempo_features(bpm.astype(jnp.float32)))
        metre = self.numerator(jnp.clip(meter[:, 0], 0, MAX_NUMERATOR)) + self.denominator(
            jnp.clip(meter[:, 1], 0, max(METER_DENOMINATORS))
        )
        names = self.instrument(jnp.maximum(instruments, 0))
        tokens = jnp.concatenate([key[:, None], tempo[:, None], metre[:, None], names], axis=1)
        mask = jnp.concatenate(
            [
                (tonic >= 0)[:, None],
                (bpm > 0)[:, None],
                (meter[:, 0] > 0)[:, None],
                instruments >= 0,
            ],
            axis=1,
        )
        tokens = tokens.astype(dtype) * mask[..., None].astype(dtype)
        return tokens, mask

    def frame_bias(self, frames_BxFxC: jax.Array, steps: int, dtype) -> jax.Array:
        """`[B, steps, D]`: the projected frame features of each step's first-codebook
        frame (frames past the given ones repeat the last; the delay pattern's tail)."""
        f = frames_BxFxC.shape[1]
        if f < steps:
            frames_BxFxC = jnp.pad(frames_BxFxC, ((0, 0), (0, steps - f), (0, 0)), mode="edge")
        return self.frames(frames_BxFxC[:, :steps].astype(dtype))


def no_controls_like(controls: dict) -> dict:
    """The same arrays saying "nothing asked" (classifier-free guidance's other rows)."""
    return {k: jnp.full_like(v, NOT_ASKED[k]) for k, v in controls.items()}


def batch_controls(batch: dict) -> dict | None:
    """The `control_*` arrays of a training batch as the model's `controls` (or None)."""
    out = {k[len("control_") :]: v for k, v in batch.items() if k.startswith("control_")}
    return out or None
