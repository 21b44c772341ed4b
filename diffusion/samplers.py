"""Samplers: from noise to data with a denoiser, the whole loop one `lax.scan`.

A sampler only needs the denoiser `denoise_fn(x_t, t_B) -> x0_hat` (a network wrapped
with its objective by `make_denoiser`) and the schedule's alpha and sigma on a grid of
times 1 = t_0 > t_1 > ... > t_n = 0 (`Schedule.timesteps`), so every sampler works with
every schedule. The grid's last point is taken as clean data (alpha 1, sigma 0): for the
cosine, power and flow schedules it already is; for EDM it is Karras's final step to
sigma = 0. Every sampler's last step is then the exact first-order step to sigma = 0,
which lands on the denoiser's estimate x0_hat(x, t_{n-1}); the scan runs the n - 1 steps
before it. Writing q = sigma / alpha (the noise-to-signal ratio) and
eps_hat = (x - alpha x0_hat) / sigma:

- "ddim" (Song et al. 2021), in alpha/sigma form: x' = alpha' x0_hat
  + sqrt(sigma'^2 - c^2) eps_hat + c z, with c = eta sigma' sqrt(1 - (q'/q)^2), the
  posterior's standard deviation times eta (eta 0: deterministic; eta 1: DDPM's
  ancestral step).
- "euler" and "heun" (Karras et al. 2022, Algorithm 1) integrate the probability-flow
  ODE in the scaled variable y = x / alpha against q, dy/dq = (y - x0_hat) / q = eps_hat,
  which is EDM's ODE when alpha = 1 and works for any schedule. Written back in x,
  Euler is x' = alpha' x0_hat + sigma' eps_hat (the same update as DDIM with eta 0); Heun
  averages eps_hat at both ends. Heun's first step, from pure noise, is an Euler step:
  the trapezoid's error grows like q times the change of eps_hat over the step, and q at
  t = 1 is 1/alpha(1) (1800 for the cosine schedule, infinite for flow), while Euler from
  there is exact as long as x0_hat barely moves (it does at such noise; for EDM, skipping
  the correction there changes nothing measurable). So Heun costs 2n - 2 calls.
- "dpmpp_2m" (DPM-Solver++(2M), Lu et al. 2022): data prediction, multistep, in
  lambda = log(alpha / sigma) = -log q with h = lambda' - lambda:
  x' = (sigma'/sigma) x + alpha' (1 - e^{-h}) D, where D = x0_hat on the first step and
  D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev with r = h_prev / h afterwards.
  e^{-h} = q'/q is computed as a ratio, so alpha = 0 (lambda = -inf) is no special case.

Classifier-free guidance combines the two denoisers' x0_hat: uncond + scale (cond -
uncond). At fixed x_t and t, eps and v are affine in x0_hat with the same coefficients
for both, so guiding x0_hat is the same as guiding eps or v.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from diffusion.objectives import Objective, denoised
from diffusion.schedules import Schedule
from mgcore.bounds import within

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]  # (x_t, t_B) -> x0_hat


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How samples are drawn.

    Attributes:
      kind: "ddim", "dpmpp_2m", "euler" or "heun".
      steps: number of steps n (denoiser calls: n, or 2n - 2 for Heun).
      eta: DDIM's stochasticity (0 deterministic, 1 DDPM-like); DDIM only.
      guidance: classifier-free guidance scale (1: the conditional denoiser alone).
    """

    kind: Literal["ddim", "dpmpp_2m", "euler", "heun"] = "dpmpp_2m"
    steps: int = 50
    eta: float = 0.0
    guidance: float = 1.0

    def __post_init__(self):
        within(self, "steps", 1, 10000)
        within(self, "eta", 0.0, 1.0)
        within(self, "guidance", 0.0, 100.0)


def make_denoiser(model_fn: Denoiser, objective: Objective, schedule: Schedule) -> Denoiser:
    """Wraps `model_fn(x_t, t_B) -> output` (predicting `objective`) into x_t, t_B -> x0_hat."""

    def denoise(x_t, t_B):
        alpha_B, sigma_B = schedule.alpha_sigma(t_B)
        return denoised(objective, model_fn(x_t, t_B), x_t, alpha_B, sigma_B)

    return denoise


def guided(denoise_cond: Denoiser, denoise_uncond: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance from two denoisers (two calls a step; scale 1: one).

    Where both are one network with a condition switched off, `guided_stacked` runs them
    as one batch instead.
    """
    if scale == 1.0:
        return denoise_cond

    def denoise(x_t, t_B):
        uncond = denoise_uncond(x_t, t_B)
        return uncond + scale * (denoise_cond(x_t, t_B) - uncond)

    return denoise


def guided_stacked(denoise_both: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance with one call on a doubled batch.

    Args:
      denoise_both: maps x_t, t_B stacked twice ([2B, ...]) to x0_hat [2B, ...], the
        first B rows conditional and the last B unconditional (the caller's network
        closes over the doubled condition, as MusicGen's sampler does).
      scale: guidance scale.
    """

    def denoise(x_t, t_B):
        both = denoise_both(jnp.concatenate([x_t, x_t]), jnp.concatenate([t_B, t_B]))
        cond, uncond = jnp.split(both, 2)
        return uncond + scale * (cond - uncond)

    return denoise


def sample(
    denoise_fn: Denoiser,
    schedule: Schedule,
    x_T_or_shape,
    key,
    config: SamplerConfig,
    *,
    uncond_fn: Denoiser | None = None,
):
    """Draws samples: from x_T down the grid of `config.steps` steps to x0.

    Jit-compatible (the loop is one `lax.scan`; `config` and the shape are static).

    Args:
      denoise_fn: (x_t [B, ...], t_B) -> x0_hat, conditional if guiding.
      schedule: the schedule the denoiser was trained with.
      x_T_or_shape: the starting noise x_T [B, ...], or a shape to draw it as
        sigma(1) * eps (pure noise: the alpha(1) x0 term is dropped).
      key: a `jax.random.key` (initial noise, DDIM's per-step noise).
      config: sampler kind, steps, eta and guidance.
      uncond_fn: the unconditional denoiser, needed when `config.guidance != 1`.
    """
    if config.steps < 1:
        raise ValueError(f"steps must be >= 1, got {config.steps}")
    if config.guidance != 1.0:
        if uncond_fn is None:
            raise ValueError("guidance != 1 needs uncond_fn")
        denoise_fn = guided(denoise_fn, uncond_fn, config.guidance)
    key_init, key_steps = jax.random.split(key)
    if isinstance(x_T_or_shape, tuple):
        x = schedule.sigma(1.0) * jax.random.normal(key_init, x_T_or_shape)
    else:
        x = jnp.asarray(x_T_or_shape)

    t_N = schedule.timesteps(config.steps)
    alpha_N, sigma_N = schedule.alpha_sigma(t_N)
    # The last point is clean data; only EDM (sigma_min) is changed by this.
    alpha_N, sigma_N = alpha_N.at[-1].set(1.0), sigma_N.at[-1].set(0.0)
    lam_N = jnp.log(alpha_N) - jnp.log(sigma_N)  # -inf where alpha = 0, +inf at the end
    batch = x.shape[0]

    def at(i):  # (t_B, alpha, sigma) of grid point i, broadcastable against x
        t_B = jnp.full((batch,), t_N[i], t_N.dtype)
        return t_B, alpha_N[i], sigma_N[i]

    def step(carry, i):
        x, x0_prev = carry
        t_B, a, s = at(i)
        t1_B, a1, s1 = at(i + 1)
        x0_hat = denoise_fn(x, t_B)
        eps_hat = (x - a * x0_hat) / s
        ratio = (s1 * a) / (a1 * s)  # q'/q = e^{-h}; 0 where alpha = 0
        if config.kind == "ddim":
            c = config.eta * s1 * jnp.sqrt(jnp.maximum(1 - ratio**2, 0.0))
            z = jax.random.normal(jax.random.fold_in(key_steps, i), x.shape, x.dtype)
            x = a1 * x0_hat + jnp.sqrt(s1**2 - c**2) * eps_hat + c * z
        elif config.kind == "euler":
            x = a1 * x0_hat + s1 * eps_hat
        elif config.kind == "heun":
            x_euler = a1 * x0_hat + s1 * eps_hat

            def correct():  # y' = y + (q' - q)(eps + eps1)/2: Euler + (q' - q)(eps1 - eps)/2
                eps_hat1 = (x_euler - a1 * denoise_fn(x_euler, t1_B)) / s1
                return x_euler + 0.5 * (s1 - a1 * s / a) * (eps_hat1 - eps_hat)

            x = jax.lax.cond(i > 0, correct, lambda: x_euler)
        elif config.kind == "dpmpp_2m":
            h = lam_N[i + 1] - lam_N[i]
            h_prev = lam_N[i] - lam_N[jnp.maximum(i - 1, 0)]
            half_inv_r = h / (2 * h_prev)  # 0 after an infinite first step (alpha = 0)
            d = jnp.where(i == 0, x0_hat, x0_hat + half_inv_r * (x0_hat - x0_prev))
            x = (s1 / s) * x + a1 * (1 - ratio) * d
        else:
            raise ValueError(f"unknown sampler kind {config.kind!r}")
        return (x, x0_hat), None

    (x, _), _ = jax.lax.scan(step, (x, jnp.zeros_like(x)), jnp.arange(config.steps - 1))
    t_B, _, _ = at(config.steps - 1)
    return denoise_fn(x, t_B)
