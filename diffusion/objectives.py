"""What the network predicts, and how its output turns back into clean data.

A network can be trained to predict any quantity that, together with x_t, determines x0;
the choice changes which errors the loss emphasises, not the model family. With
x_t = alpha x0 + sigma eps (see `schedules`), the four objectives and their exact
inverses, for any alpha and sigma:

- "epsilon" (DDPM, Ho et al. 2020): target eps; x0 = (x_t - sigma eps) / alpha. Cannot
  be inverted where alpha = 0 (the "flow" schedule's t = 1).
- "v" (Salimans & Ho 2022): target v = alpha eps - sigma x0. Since
  alpha x_t - sigma v = (alpha^2 + sigma^2) x0, x0 = (alpha x_t - sigma v)/(alpha^2 + sigma^2)
  (= alpha x_t - sigma v for variance-preserving schedules). Stable Audio's objective.
- "flow" (rectified flow / flow matching): target u = eps - x0, the velocity dx_t/dt of
  the "flow" schedule (alpha = 1 - t, sigma = t). Substituting eps = u + x0 into x_t gives
  x_t = (alpha + sigma) x0 + sigma u, so x0 = (x_t - sigma u) / (alpha + sigma): exact for
  any schedule, and x_t - t u on the flow schedule.
- "x0": the clean data itself.

Per-example scalars (alpha, sigma, t, weights: shape [B] or scalar) broadcast over the
trailing axes of x.

The loss is the mean squared error of the target, per example, times an optional weight.
Every objective's error is the x0 error times a factor (from the inverses above:
epsilon alpha/sigma, v (alpha^2+sigma^2)/sigma, flow (alpha+sigma)/sigma, x0 1), so a
weighting stated on x0, such as min-SNR-gamma (Hang et al. 2023: min(SNR, gamma) |x0 err|^2)
or EDM's lambda(sigma), converts to any objective by dividing by the factor squared;
`min_snr_weight` does that.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from diffusion.schedules import Schedule

Objective = Literal["epsilon", "v", "flow", "x0"]


def expand(a, x):
    """A per-example scalar (shape [B], or []) reshaped to broadcast over x's trailing axes."""
    a = jnp.asarray(a)
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def diffuse(schedule: Schedule, x0, t, eps):
    """x_t = alpha(t) x0 + sigma(t) eps.

    Args:
      schedule: the noise schedule.
      x0: clean data [B, ...].
      t: times [B] (or a scalar).
      eps: standard normal noise shaped like x0.
    """
    alpha, sigma = schedule.alpha_sigma(t)
    return expand(alpha, x0) * x0 + expand(sigma, x0) * eps


def target(objective: Objective, x0, eps, alpha, sigma):
    """What the network is trained to output for x_t = alpha x0 + sigma eps."""
    alpha, sigma = expand(alpha, x0), expand(sigma, x0)
    if objective == "epsilon":
        return eps
    if objective == "v":
        return alpha * eps - sigma * x0
    if objective == "flow":
        return eps - x0
    if objective == "x0":
        return x0
    raise ValueError(f"unknown objective {objective!r}")


def denoised(objective: Objective, output, x_t, alpha, sigma):
    """x0_hat from the network's output: the exact inverse of `target` (see module doc)."""
    alpha, sigma = expand(alpha, x_t), expand(sigma, x_t)
    if objective == "epsilon":
        return (x_t - sigma * output) / alpha
    if objective == "v":
        return (alpha * x_t - sigma * output) / (alpha**2 + sigma**2)
    if objective == "flow":
        return (x_t - sigma * output) / (alpha + sigma)
    if objective == "x0":
        return output
    raise ValueError(f"unknown objective {objective!r}")


def x0_error_scale(objective: Objective, alpha, sigma):
    """|d target / d x0_hat| at fixed x_t: an error e in x0_hat is an error scale * e in
    the objective's target (the network's output)."""
    alpha, sigma = jnp.asarray(alpha), jnp.asarray(sigma)
    if objective == "epsilon":
        return alpha / sigma
    if objective == "v":
        return (alpha**2 + sigma**2) / sigma
    if objective == "flow":
        return (alpha + sigma) / sigma
    if objective == "x0":
        return jnp.ones_like(alpha * sigma)
    raise ValueError(f"unknown objective {objective!r}")


def min_snr_weight(objective: Objective, alpha, sigma, gamma: float = 5.0):
    """The min-SNR-gamma weight (Hang et al. 2023) for this objective's loss.

    It makes the weighted loss equal to min(SNR, gamma) |x0_hat - x0|^2: for "epsilon"
    min(SNR, gamma) / SNR, for "v" on a variance-preserving schedule
    min(SNR, gamma) / (SNR + 1), for "x0" min(SNR, gamma).
    """
    snr = (jnp.asarray(alpha) / jnp.asarray(sigma)) ** 2
    return jnp.minimum(snr, gamma) / x0_error_scale(objective, alpha, sigma) ** 2


def loss(objective: Objective, output, x0, eps, alpha, sigma, weight=None):
    """Per-example weighted mean squared error of the network's output, shape [B].

    Args:
      objective: what `output` predicts.
      output: the network's output for x_t = alpha x0 + sigma eps, shaped like x0.
      x0, eps: the clean data and the noise that made x_t.
      alpha, sigma: the schedule at each example's time, [B].
      weight: optional per-example weight [B] (e.g. `min_snr_weight`); None: 1.
    """
    error = jnp.square(output - target(objective, x0, eps, alpha, sigma))
    per_example_B = jnp.mean(error, axis=tuple(range(1, error.ndim)))
    if weight is None:
        return per_example_B
    return jnp.asarray(weight) * per_example_B


def training_example(schedule: Schedule, x0, key):
    """(x_t, t, eps) for one batch of clean data: times from `schedule.sample_times`."""
    key_t, key_eps = jax.random.split(key)
    t_B = schedule.sample_times(key_t, x0.shape[:1])
    eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
    return diffuse(schedule, x0, t_B, eps), t_B, eps
