"""Noise schedules in one continuous-time form, so objectives and samplers are shared.

Every schedule is a pair of curves over t in [0, 1]:

    x_t = alpha(t) * x0 + sigma(t) * eps,    t = 0 clean data, t = 1 noise,

and everything downstream (training targets, denoising, the samplers' steps) is written
in alpha and sigma alone, so a refiner can switch schedule without touching the sampler.
The four kinds:

- "cosine" (Nichol & Dhariwal 2021, "Improved DDPM"): variance preserving,
  alpha = cos(pi/2 (t+s)/(1+s)) / cos(pi/2 s/(1+s)) with s = 0.008. The formula reaches
  alpha = 0 at t = 1 (where an epsilon-predicting model cannot be inverted, and float32
  cos(pi/2) is even negative), so alpha is clipped from below at the value whose log-SNR
  is `min_log_snr` = -15 (the range of Hoogeboom et al. 2023, "simple diffusion"); the
  clip only touches the last ~4e-4 of t. sigma is computed from the angle, not as
  sqrt(1 - alpha^2), which would cancel catastrophically near t = 0 in float32.
- "edm" (Karras et al. 2022, "Elucidating the design space"): variance exploding,
  alpha = 1, sigma(t) = (s_max^(1/rho) + (1-t)(s_min^(1/rho) - s_max^(1/rho)))^rho with
  sigma 0.002..80 and rho 7, so a uniform grid in t is exactly EDM's sampling grid.
  Training draws ln sigma ~ N(-1.2, 1.2^2) (EDM's P_mean, P_std); the preconditioning
  c_skip, c_out, c_in, c_noise and the loss weight lambda are `edm_preconditioning` and
  `edm_loss_weight`.
- "power" (Multi-Band Diffusion, San Roman et al. 2023; the numbers in ANCHORS.md and
  audiocraft's MBD config): DDPM betas over N = 1000 steps,
  beta_n = (b_min^(1/p) + n/(N-1) (b_max^(1/p) - b_min^(1/p)))^p, n = 0..N-1, with
  b_min 1e-5, b_max 2.9e-2, p 7.5; alpha_bar = cumprod(1 - beta), alpha = sqrt(alpha_bar).
  Discrete step n (1-based, DDPM's x_n) sits at t = n/N and the clean data at t = 0
  (alpha_bar = 1), so t = 0 is clean here as for every other schedule; between the grid
  points log alpha_bar is interpolated linearly in t. The schedule does not reach pure
  noise: alpha(1) is about 0.07, as in MBD.
- "flow" (rectified flow, Liu et al. 2022; flow matching, Lipman et al. 2022):
  alpha = 1 - t, sigma = t, a straight line from data to noise; alpha(1) = 0 exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from mgcore.bounds import within
from mgcore.config_types import ConfigError


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Which noise schedule, and its constants (each kind reads only its own fields).

    Attributes:
      kind: "cosine", "edm", "power" or "flow".
      cosine_s: the cosine schedule's offset s (Nichol & Dhariwal: 0.008).
      min_log_snr: the cosine schedule's alpha is clipped so log-SNR stays above this.
      sigma_min, sigma_max, rho: EDM's noise range and grid warping.
      p_mean, p_std: EDM's log-normal training distribution of sigma.
      sigma_data: EDM's data standard deviation, for the preconditioning.
      power_steps, power_beta_min, power_beta_max, power_exponent: MBD's power betas.
    """

    kind: Literal["cosine", "edm", "power", "flow"] = "cosine"
    cosine_s: float = 0.008
    min_log_snr: float = -15.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    power_steps: int = 1000
    power_beta_min: float = 1e-5
    power_beta_max: float = 2.9e-2
    power_exponent: float = 7.5

    def __post_init__(self):
        for field, low, high in (
            ("cosine_s", 0.0, 1.0), ("min_log_snr", -100.0, 100.0),
            ("sigma_min", 1e-9, 1e6), ("sigma_max", 1e-9, 1e6), ("rho", 1e-3, 1e3),
            ("p_mean", -100.0, 100.0), ("p_std", 1e-6, 100.0), ("sigma_data", 1e-9, 1e6),
            ("power_steps", 2, 100000), ("power_beta_min", 1e-12, 0.999),
            ("power_beta_max", 1e-12, 0.999), ("power_exponent", 1e-3, 100.0),
        ):  # fmt: skip
            within(self, field, low, high)
        if not self.sigma_min < self.sigma_max:
            raise ConfigError(f"ScheduleConfig: sigma_min {self.sigma_min} >= sigma_max")
        if not self.power_beta_min <= self.power_beta_max:
            raise ConfigError("ScheduleConfig: power_beta_min > power_beta_max")


@functools.cache
def power_log_alpha_bar(steps: int, beta_min: float, beta_max: float, exponent: float):
    """log alpha_bar at t = n/steps, n = 0..steps (float64, n = 0 is clean: 0)."""
    lo, hi = beta_min ** (1 / exponent), beta_max ** (1 / exponent)
    betas = (lo + np.arange(steps) / (steps - 1) * (hi - lo)) ** exponent
    return np.concatenate([[0.0], np.cumsum(np.log1p(-betas))])


@dataclasses.dataclass(frozen=True)
class Schedule:
    """alpha(t) and sigma(t) of one `ScheduleConfig`; hashable, so it can be jit-static.

    Times are float arrays of any shape; results have the same shape.
    """

    config: ScheduleConfig = ScheduleConfig()

    def alpha_sigma(self, t):
        """(alpha(t), sigma(t)), computed together (they share work)."""
        c = self.config
        t = jnp.asarray(t, jnp.result_type(float))
        if c.kind == "cosine":
            scale = 0.5 * np.pi / (1 + c.cosine_s)  # angle phi(t) = scale (t + s)
            cos0 = np.cos(scale * c.cosine_s)
            alpha = jnp.cos(scale * (t + c.cosine_s)) / cos0
            # cos^2 phi(0) - cos^2 phi(t) = sin(phi(t) - phi(0)) sin(phi(t) + phi(0)): no
            # cancellation, and exactly 0 at t = 0.
            sin_prod = jnp.sin(scale * t) * jnp.sin(scale * (t + 2 * c.cosine_s))
            sigma = jnp.sqrt(jnp.maximum(sin_prod, 0.0)) / cos0
            alpha_min = float(np.sqrt(1 / (1 + np.exp(-c.min_log_snr))))  # sqrt(sigmoid)
            clipped = alpha < alpha_min
            alpha = jnp.where(clipped, alpha_min, alpha)
            sigma = jnp.where(clipped, float(np.sqrt(1 - alpha_min**2)), sigma)
            return alpha, sigma
        if c.kind == "edm":
            lo, hi = c.sigma_min ** (1 / c.rho), c.sigma_max ** (1 / c.rho)
            sigma = (hi + (1 - t) * (lo - hi)) ** c.rho
            return jnp.ones_like(t), sigma
        if c.kind == "power":
            table = power_log_alpha_bar(
                c.power_steps, c.power_beta_min, c.power_beta_max, c.power_exponent
            )
            grid = np.linspace(0.0, 1.0, c.power_steps + 1)
            log_alpha_bar = jnp.interp(t, grid.astype(t.dtype), table.astype(t.dtype))
            return jnp.exp(0.5 * log_alpha_bar), jnp.sqrt(-jnp.expm1(log_alpha_bar))
        if c.kind == "flow":
            return 1 - t, t
        raise ValueError(f"unknown schedule kind {c.kind!r}")

    def alpha(self, t):
        """The data's scale at time t."""
        return self.alpha_sigma(t)[0]

    def sigma(self, t):
        """The noise's scale at time t."""
        return self.alpha_sigma(t)[1]

    def log_snr(self, t):
        """log(alpha^2 / sigma^2): +inf at clean data, decreasing in t."""
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (jnp.log(alpha) - jnp.log(sigma))

    def timesteps(self, n: int):
        """The sampling grid: n + 1 times decreasing from 1 to 0 (n steps).

        Uniform in t for every kind: for "edm" that is Karras's rho-warped sigma grid, for
        "power" MBD's evenly respaced DDPM steps, for "cosine" and "flow" the usual grid.
        Samplers treat the last point as clean data (sigma = 0), see `samplers`.
        """
        return jnp.linspace(1.0, 0.0, n + 1)

    def sample_times(self, key, shape):
        """Training times: uniform in [0, 1), or EDM's log-normal sigma for "edm".

        For "edm", ln sigma ~ N(p_mean, p_std^2), clipped to [sigma_min, sigma_max] (a
        fraction ~1e-4 of draws falls below sigma_min) and mapped back to t.
        """
        if self.config.kind != "edm":
            return jax.random.uniform(key, shape)
        c = self.config
        sigma = jnp.exp(c.p_mean + c.p_std * jax.random.normal(key, shape))
        return self.edm_time(jnp.clip(sigma, c.sigma_min, c.sigma_max))

    def edm_time(self, sigma):
        """The inverse of the "edm" sigma(t): the time at which the noise is sigma."""
        c = self.config
        lo, hi = c.sigma_min ** (1 / c.rho), c.sigma_max ** (1 / c.rho)
        return (jnp.asarray(sigma) ** (1 / c.rho) - lo) / (hi - lo)


def edm_preconditioning(sigma, sigma_data: float = 0.5):
    """EDM's (c_skip, c_out, c_in, c_noise) for D(x) = c_skip x + c_out F(c_in x, c_noise).

    With them the network F sees unit-variance inputs and learns a unit-variance target
    at every sigma. (With sigma_data = 1 the target of F is exactly -v of the
    variance-preserving rescaling x / sqrt(1 + sigma^2): EDM's F is v-prediction.)
    """
    sigma = jnp.asarray(sigma)
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / jnp.sqrt(total)
    c_in = 1 / jnp.sqrt(total)
    c_noise = jnp.log(sigma) / 4
    return c_skip, c_out, c_in, c_noise


def edm_loss_weight(sigma, sigma_data: float = 0.5):
    """EDM's lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, the weight of
    the denoiser's squared error |D - x0|^2 (equivalently, weight 1 on F's error)."""
    sigma = jnp.asarray(sigma)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
