"""Sampling codec tokens from the LM: KV-cached, the whole loop in one compiled program.

`generate_window` runs one window of the interleaved sequence inside a `lax.scan`:
each step feeds the previous step's tokens through `MusicGenLM.decode_step`, applies
classifier-free guidance (the conditional and unconditional rows batched together,
`uncond + cfg * (cond - uncond)`, MusicGen's coefficient 3), then temperature, top-k and
top-p, and samples; steps whose tokens are known (the pattern's special tokens, an audio
prompt's tokens) are forced, so a prompt is kept exactly. The random key of step s is
`fold_in(seed key, s)`, so a seed reproduces the output whatever the batch's other rows.

`generate_codes` is the host loop over windows: generation past the trained context
(MusicGen's "extend", audiocraft `_generate_tokens`) slides a window of `window` frames
by `stride` frames, each new window primed with the last `window - stride` frames of
what came before, so a model trained on 10-second clips can generate 2 minutes with
memory bounded by one window's KV cache.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.bounds import Range, as_number
from mgcore.config_types import ConfigError
from musicgen.controls import Controls
from musicgen.controls.features import frame_features, global_arrays
from musicgen.lm.controls import no_controls_like
from musicgen.lm.model import MusicGenLM
from musicgen.lm.patterns import Pattern


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn (MusicGen's defaults: top-k 250, guidance 3).

    Attributes:
      temperature: softmax temperature; 0 means greedy (argmax).
      top_k: keep the k most likely tokens (0: all).
      top_p: keep the smallest set with this much probability (0: off).
      cfg_coef: classifier-free guidance coefficient (1: no guidance, one pass).
      dtype: compute dtype of the decoder ("float32" or "bfloat16").
      weights: the format of the weights sampled with (`LanguageModel.with_weights`):
        "float32" (the same codes as the trained weights), "bfloat16" or "int8" (about a
        quarter of the bytes per step, the fastest on CPU: `results/sampling_roofline/`).
    """

    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    cfg_coef: float = 3.0
    dtype: str = "float32"
    weights: str = "float32"

    def __post_init__(self):
        # Built from the API, pipeline.json and --set alike: one place refuses NaN (which
        # samples token 0 everywhere), inf and out-of-range values, in one line. Numpy
        # scalars become Python numbers.
        for name, allowed in SAMPLING.items():
            value = getattr(self, name)
            number = as_number(value)
            if allowed.integer and not isinstance(number, int):
                number = None
            if number is None or number not in allowed:
                raise ConfigError(f"sampling {name} must be {allowed.describe()}, got {value!r}")
            object.__setattr__(self, name, number if allowed.integer else float(number))
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"sampling dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.weights not in WEIGHTS:
            raise ConfigError(
                f"sampling weights must be one of {list(WEIGHTS)}, got {self.weights!r}"
            )


WEIGHTS = ("float32", "bfloat16", "int8")

# SamplingConfig's ranges, which the pipeline's and the CLI's arguments share
# (`musicgen.inputs`). The upper bounds are far past any use and keep float32 logits
# from overflowing.
SAMPLING = {
    "temperature": Range(0, 10**6, note="0: greedy"),
    "top_k": Range(0, 2**20, integer=True, note="0: all"),
    "top_p": Range(0, 1, note="0: off"),
    "cfg_coef": Range(0, 10**6, low_open=True, note="1: no guidance"),
}


# Below this temperature sampling is practically the argmax, and a tiny temperature (1e-40)
# overflows the divided logits to inf (NaN after top-p): take the argmax.
GREEDY_BELOW = 1e-4


class SamplingForm(NamedTuple):
    """What of a `SamplingConfig` shapes the compiled sampling loop. Its values
    (temperature, top-p, guidance) are traced arguments, so changing them does not compile
    the loop again; turning one on or off, or another top-k, does."""

    greedy: bool
    top_k: int
    nucleus: bool
    guided: bool
    dtype: str

    @classmethod
    def of(cls, sampling: SamplingConfig) -> SamplingForm:
        return cls(
            greedy=sampling.temperature < GREEDY_BELOW,
            top_k=sampling.top_k,
            nucleus=sampling.top_p > 0.0,
            guided=sampling.cfg_coef != 1.0,
            dtype=sampling.dtype,
        )


def sample_logits(logits_BxKxV, rng, temperature, top_k: int, top_p, *, greedy=None, nucleus=None):
    """Tokens `[B, K]` from logits with temperature, top-k and top-p (greedy at T=0).

    `greedy` and `nucleus` (top-p on) default to what the numbers say; given, they decide
    the program and `temperature` and `top_p` may be traced scalars.
    """
    greedy = temperature < GREEDY_BELOW if greedy is None else greedy
    nucleus = top_p > 0.0 if nucleus is None else nucleus
    if greedy:
        return jnp.argmax(logits_BxKxV, axis=-1).astype(jnp.int32)
    logits_BxKxV = logits_BxKxV / temperature
    card = logits_BxKxV.shape[-1]
    k = card if top_k <= 0 or top_k >= card else top_k
    if k == card and not nucleus:
        return jax.random.categorical(rng, logits_BxKxV).astype(jnp.int32)
    values_BxKxk, index_BxKxk = jax.lax.top_k(logits_BxKxV, k)  # sorted, descending
    if nucleus:
        probs = jax.nn.softmax(values_BxKxk, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the more likely tokens
        values_BxKxk = jnp.where(before < top_p, values_BxKxk, -jnp.inf)
    choice_BxK = jax.random.categorical(rng, values_BxKxk)
    return jnp.take_along_axis(index_BxKxk, choice_BxK[..., None], axis=-1)[..., 0].astype(
        jnp.int32
    )


@functools.partial(jax.jit, static_argnames=("graphdef", "form", "prefill", "progress_every"))
def generate_window(
    graphdef,
    state,
    text_BxLxC,
    text_mask_BxL,
    known_BxKxS,
    seed_key,
    values_3,
    controls=None,
    *,
    form: SamplingForm,
    prefill: int = 0,
    progress_every: int = 0,
):
    """One window: the interleaved sequence `[B, K, S]` with every free step sampled.

    Args:
      graphdef, state: the LM (`nnx.split`).
      text_BxLxC, text_mask_BxL: the prompts' text states and mask (conditional rows).
      known_BxKxS: forced tokens, -1 where the step is sampled.
      seed_key: a `jax.random.key`.
      values_3: temperature, top-p and guidance coefficient, float32.
      controls: the rows' control arrays for this window (`musicgen/lm/controls.py`), or
        None.
      form: greedy or not, top-k, top-p on or off, guided or not, dtype.
      prefill: the first `prefill` steps are wholly known: one forward pass writes their
        cache, and the loop starts after them.
      progress_every: call the host's progress callback every this many steps (0: never).
    """
    model: MusicGenLM = nnx.merge(graphdef, state)
    dtype = jnp.dtype(form.dtype)
    batch, _, steps = known_BxKxS.shape
    special = model.config.special
    guided = form.guided
    temperature, top_p, cfg_coef = values_3[0], values_3[1], values_3[2]
    if guided:  # unconditional rows: no text and no controls at all (mask 0)
        text_BxLxC = jnp.concatenate([text_BxLxC, jnp.zeros_like(text_BxLxC)])
        text_mask_BxL = jnp.concatenate([text_mask_BxL, jnp.zeros_like(text_mask_BxL)])
        if controls is not None:
            controls = jax.tree.map(
                lambda a, b: jnp.concatenate([a, b]), controls, no_controls_like(controls)
            )
    rows = text_BxLxC.shape[0]
    cross = model.cross_kv(text_BxLxC, text_mask_BxL, dtype, controls, steps)
    cache = model.init_cache(rows, steps, dtype)

    def step(carry, xs):
        cache, prev_BxK = carry
        s, known_BxK = xs
        inputs = jnp.concatenate([prev_BxK, prev_BxK]) if guided else prev_BxK
        logits, cache = model.decode_step(inputs, s, cache, cross, dtype)
        if guided:
            cond, uncond = logits[:batch], logits[batch:]
            logits = uncond + cfg_coef * (cond - uncond)
        rng = jax.random.fold_in(seed_key, s)
        sampled = sample_logits(
            logits, rng, temperature, form.top_k, top_p, greedy=form.greedy, nucleus=form.nucleus
        )
        tokens_BxK = jnp.where(known_BxK >= 0, known_BxK, sampled)
        if progress_every:
            jax.lax.cond(
                (s + 1) % progress_every == 0,
                lambda: jax.debug.callback(_progress_hook, s + 1, steps),
                lambda: None,
            )
        return (cache, tokens_BxK), tokens_BxK

    prev_BxK = jnp.full((batch, known_BxKxS.shape[1]), special, jnp.int32)
    if prefill:
        inputs_BxKxP = jnp.concatenate([prev_BxK[..., None], known_BxKxS[..., : prefill - 1]], -1)
        if guided:
            inputs_BxKxP = jnp.concatenate([inputs_BxKxP, inputs_BxKxP])
        cache = model.prefill(inputs_BxKxP, cache, cross, dtype)
        prev_BxK = known_BxKxS[..., prefill - 1]
    xs = (jnp.arange(prefill, steps), jnp.moveaxis(known_BxKxS[..., prefill:], 2, 0))
    _, seq_SxBxK = jax.lax.scan(step, (cache, prev_BxK), xs)
    return jnp.concatenate([known_BxKxS[..., :prefill], jnp.moveaxis(seq_SxBxK, 0, 2)], -1)


_PROGRESS: list[Callable[[int, int], None]] = []


def _progress_hook(done, total):
    for callback in _PROGRESS:
        callback(int(done), int(total))


def known_steps(
    pattern: Pattern, prompt_BxKxP: np.ndarray | None, batch: int, frames: int, special: int
) -> np.ndarray:
    """Forced tokens `[B, K, steps(frames)]`: specials of the pattern, then the prompt."""
    k = pattern.num_codebooks
    steps = pattern.steps(frames)
    layout_KxS = pattern.layout(steps)
    known = np.full((batch, k, steps), -1, np.int32)
    known[:, layout_KxS < 0] = special
    known[:, layout_KxS >= frames] = special
    if prompt_BxKxP is not None and prompt_BxKxP.shape[-1]:
        p = prompt_BxKxP.shape[-1]
        seq = pattern.interleave(prompt_BxKxP.astype(np.int32), special, steps)
        from_prompt = (layout_KxS >= 0) & (layout_KxS < p)
        known[:, from_prompt] = seq[:, from_prompt]
    return known


def known_prefix(known_BxKxS: np.ndarray) -> int:
    """How many leading steps are known in every row and codebook (at most S - 1)."""
    free_S = (known_BxKxS < 0).any(axis=(0, 1))
    first_free = int(np.argmax(free_S)) if free_S.any() else known_BxKxS.shape[-1]
    return min(first_free, known_BxKxS.shape[-1] - 1)


def generate_codes(
    model: MusicGenLM,
    text_BxLxC: np.ndarray,
    text_mask_BxL: np.ndarray,
    frames: int,
    *,
    sampling: SamplingConfig,
    seed: int = 0,
    prompt_BxKxP: np.ndarray | None = None,
    window: int,
    stride: int,
    progress: Callable[[int, int], None] | None = None,
    prefill: bool = True,
    controls: Sequence[Controls] | None = None,
    frame_rate: float | None = None,
) -> np.ndarray:
    """Codes `[B, K, frames]` (the prompt's frames first, unchanged) for a batch of prompts.

    Args:
      model: the LM.
      text_BxLxC, text_mask_BxL: conditional text states per row.
      frames: total frames to return, prompt included.
      sampling: temperature, top-k, top-p, guidance, dtype.
      seed: the same seed gives the same codes.
      prompt_BxKxP: codes to continue (kept exactly), or None.
      window: the LM's context in frames (the trained length).
      stride: frames added by each window after the first (MusicGen: 18 s of 30 s).
      progress: called with (frames done, frames total) as generation advances.
      prefill: write the cache of known leading steps (the prompt, each window's context)
        in one forward pass instead of step by step (same result, faster).
      controls: one `Controls` per row (None: the model's control-free path); their grid
        runs on across windows, timed by `frame_rate` (frames a second).
    """
    pattern = Pattern(model.config.pattern, model.config.num_codebooks)
    graphdef, state = nnx.split(model)
    batch = text_BxLxC.shape[0]
    special = model.config.special
    prompt = np.zeros((batch, model.config.num_codebooks, 0), np.int32)
    if prompt_BxKxP is not None:
        prompt = np.asarray(prompt_BxKxP, np.int32)
        if prompt.shape[:2] != (batch, model.config.num_codebooks):
            raise ValueError(
                f"prompt codes {prompt.shape} do not match [batch={batch}, "
                f"K={model.config.num_codebooks}, frames]"
            )
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in (0, window={window}], got {stride}")
    if controls is not None:
        if len(controls) != batch:
            raise ValueError(f"{len(controls)} controls for {batch} rows")
        if frame_rate is None:
            raise ValueError("controls need the codec's frame_rate")
        asked = global_arrays(controls)
    frames = max(frames, prompt.shape[-1])
    codes = prompt
    key = jax.random.key(seed)
    values = jnp.asarray([sampling.temperature, sampling.top_p, sampling.cfg_coef], jnp.float32)
    span = min(frames, window)  # each window's frames: one compiled program for all
    every = max(1, pattern.steps(span) // 50) if progress else 0
    while codes.shape[-1] < frames:
        n = codes.shape[-1]
        context = n if n < span else window - stride
        done = n - context
        known = known_steps(pattern, codes[..., done:], batch, span, special)
        window_controls = None
        if controls is not None:
            grid = [frame_features(c, done / frame_rate, span, frame_rate) for c in controls]
            window_controls = {**asked, "frames": np.stack(grid)}
        hook = None
        if progress is not None:
            hook = _window_progress(progress, pattern, done, frames, span)
            _PROGRESS.append(hook)
        try:
            seq = generate_window(
                graphdef,
                state,
                jnp.asarray(text_BxLxC),
                jnp.asarray(text_mask_BxL),
                jnp.asarray(known),
                jax.random.fold_in(key, done),
                values,
                window_controls,
                form=SamplingForm.of(sampling),
                prefill=known_prefix(known) if prefill else 0,
                progress_every=every,
            )
        finally:
            if hook is not None:
                _PROGRESS.remove(hook)
        window_codes = pattern.deinterleave(np.asarray(seq), span)
        codes = np.concatenate([codes[..., :done], window_codes], axis=-1)
    return codes[..., :frames]


def _window_progress(progress, pattern: Pattern, done: int, total: int, span: int):
    def hook(step: int, steps: int) -> None:
        progress(min(done + math.floor(span * step / steps), total), total)

    return hook
