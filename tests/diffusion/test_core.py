"""Diffusion core: schedules match their papers' formulas, objectives invert exactly, and
every sampler with the exact denoiser of a known 1-D Gaussian mixture recovers it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion.objectives import (
    denoised,
    diffuse,
    loss,
    min_snr_weight,
    target,
)
from diffusion.samplers import SamplerConfig, guided, guided_stacked, make_denoiser, sample
from diffusion.schedules import Schedule, ScheduleConfig, edm_preconditioning

KINDS = ("cosine", "edm", "power", "flow")
OBJECTIVES = ("epsilon", "v", "flow", "x0")

# The test distribution: 0.3 N(-2, 0.3^2) + 0.7 N(1.5, 0.3^2).
WEIGHTS, MEANS, STD = (0.3, 0.7), (-2.0, 1.5), 0.3
BOUNDARY = -0.25  # halfway between the modes
N_SAMPLES = 4000


def _reference(kind, t):
    """alpha, sigma from the papers' formulas, in float64 numpy."""
    t = np.asarray(t, np.float64)
    if kind == "cosine":
        f = lambda u: np.cos(0.5 * np.pi * (u + 0.008) / 1.008)  # noqa: E731
        alpha = f(t) / f(0.0)
        return alpha, np.sqrt(1 - alpha**2)
    if kind == "edm":
        lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
        return np.ones_like(t), (hi + (1 - t) * (lo - hi)) ** 7
    if kind == "power":
        n = np.arange(1000)
        lo, hi = 1e-5 ** (1 / 7.5), 2.9e-2 ** (1 / 7.5)
        alpha_bar = np.cumprod(1 - (lo + n / 999 * (hi - lo)) ** 7.5)
        alpha_bar = np.concatenate([[1.0], alpha_bar])  # t = n / 1000, t = 0 clean
        alpha = np.sqrt(alpha_bar[np.round(t * 1000).astype(int)])
        return alpha, np.sqrt(1 - alpha**2)
    return 1 - t, t


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_matches_formula(kind):
    t = np.array([0.1, 0.25, 0.5, 0.9])  # on the power schedule's grid of 1000 steps
    alpha, sigma = Schedule(ScheduleConfig(kind)).alpha_sigma(t)
    want_alpha, want_sigma = _reference(kind, t)
    np.testing.assert_allclose(alpha, want_alpha, rtol=2e-5)
    np.testing.assert_allclose(sigma, want_sigma, rtol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_endpoints_and_monotonicity(kind):
    schedule = Schedule(ScheduleConfig(kind))
    t = np.linspace(0.0, 1.0, 101)
    alpha, sigma = map(np.asarray, schedule.alpha_sigma(t))
    log_snr = np.asarray(schedule.log_snr(t))
    assert np.all(np.diff(sigma) > 0)
    assert np.all(np.diff(log_snr) < 0)
    assert np.all(np.isfinite(log_snr[1:-1]))
    if kind == "edm":
        np.testing.assert_allclose([sigma[0], sigma[-1]], [0.002, 80.0], rtol=1e-5)
        assert np.all(alpha == 1)
    else:  # variance preserving (cosine, power) or flow: clean at t = 0
        assert alpha[0] == pytest.approx(1.0, abs=1e-6) and sigma[0] == pytest.approx(0.0)
        assert np.all(np.diff(alpha) < 0)
    if kind in ("cosine", "power"):
        np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
    if kind == "cosine":  # clipped to the minimum log-SNR, not the formula's alpha = 0
        assert log_snr[-1] == pytest.approx(-15.0, abs=1e-3)
    if kind == "power":  # MBD's schedule stops short of pure noise
        assert alpha[-1] == pytest.approx(_reference("power", 1.0)[0], rel=1e-4)
        assert 0.05 < alpha[-1] < 0.1
    # Between the power schedule's grid points log alpha^2 is linear in t.
    if kind == "power":
        a0, a1 = _reference("power", np.array([0.25, 0.251]))[0]
        mid = np.exp(0.5 * (np.log(a0**2) + np.log(a1**2)) / 2)
        assert float(schedule.alpha(0.2505)) == pytest.approx(mid, rel=1e-6)


def test_training_times():
    key = jax.random.key(0)
    t_uniform = np.asarray(Schedule(ScheduleConfig("cosine")).sample_times(key, (N_SAMPLES,)))
    assert t_uniform.min() >= 0 and t_uniform.max() < 1
    assert t_uniform.mean() == pytest.approx(0.5, abs=0.02)
    edm = Schedule(ScheduleConfig("edm"))
    log_sigma = np.log(np.asarray(edm.sigma(edm.sample_times(key, (N_SAMPLES,)))))
    assert log_sigma.mean() == pytest.approx(-1.2, abs=0.06)  # EDM's P_mean, P_std
    assert log_sigma.std() == pytest.approx(1.2, abs=0.06)


def test_edm_preconditioning():
    c_skip, c_out, c_in, c_noise = edm_preconditioning(0.5, sigma_data=0.5)
    np.testing.assert_allclose(
        [c_skip, c_out, c_in, c_noise], [0.5, 0.5 / 2**0.5, 2**0.5, np.log(0.5) / 4], rtol=1e-6
    )
    # With sigma_data = 1, F's target (x0 - c_skip x) / c_out is -v of x / sqrt(1 + sigma^2).
    rng = np.random.default_rng(0)
    x0, eps, sigma = rng.normal(size=(3, 16))
    sigma = np.abs(sigma) + 0.1
    c_skip, c_out, _, _ = edm_preconditioning(sigma, sigma_data=1.0)
    f_target = (x0 - c_skip * (x0 + sigma * eps)) / c_out
    norm = np.sqrt(1 + sigma**2)
    np.testing.assert_allclose(f_target, -target("v", x0, eps, 1 / norm, sigma / norm), atol=1e-5)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_objectives_invert_exactly(objective, rng):
    x0, eps = rng.normal(size=(2, 8, 3, 5)).astype(np.float32)
    alpha_B = rng.uniform(0.2, 1.0, 8).astype(np.float32)
    sigma_B = rng.uniform(0.05, 1.5, 8).astype(np.float32)
    x_t = alpha_B[:, None, None] * x0 + sigma_B[:, None, None] * eps
    output = target(objective, x0, eps, alpha_B, sigma_B)
    np.testing.assert_allclose(denoised(objective, output, x_t, alpha_B, sigma_B), x0, atol=1e-5)
    # Through make_denoiser and diffuse, on each schedule's own alpha and sigma.
    for kind in KINDS:
        schedule = Schedule(ScheduleConfig(kind))
        t_B = rng.uniform(0.05, 0.95, 8).astype(np.float32)
        a_B, s_B = schedule.alpha_sigma(t_B)
        model_fn = lambda x_t, t: target(objective, x0, eps, a_B, s_B)  # noqa: B023, E731
        x_t = diffuse(schedule, x0, t_B, eps)
        x0_hat = make_denoiser(model_fn, objective, schedule)(x_t, t_B)
        np.testing.assert_allclose(x0_hat, x0, atol=5e-5, err_msg=kind)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_min_snr_weight_is_a_weight_on_the_x0_error(objective, rng):
    x0, eps, error = rng.normal(size=(3, 6, 10)).astype(np.float32)
    alpha_B, sigma_B = rng.uniform(0.1, 1.0, (2, 6)).astype(np.float32)
    x_t = alpha_B[:, None] * x0 + sigma_B[:, None] * eps
    x0_hat = x0 + 0.1 * error
    eps_hat = (x_t - alpha_B[:, None] * x0_hat) / sigma_B[:, None]
    output = target(objective, x0_hat, eps_hat, alpha_B, sigma_B)  # the output giving x0_hat
    weight_B = min_snr_weight(objective, alpha_B, sigma_B, gamma=5.0)
    got_B = loss(objective, output, x0, eps, alpha_B, sigma_B, weight_B)
    snr_B = (alpha_B / sigma_B) ** 2
    want_B = np.minimum(snr_B, 5.0) * np.mean((0.1 * error) ** 2, axis=1)
    np.testing.assert_allclose(got_B, want_B, rtol=1e-4)


def mixture_denoiser(schedule, weights=WEIGHTS):
    """The exact E[x0 | x_t] of the Gaussian mixture, for 1-D samples x_N."""
    log_w, mu = jnp.log(jnp.asarray(weights)), jnp.asarray(MEANS)

    def denoise(x_N, t_N):
        a, s = (v[:, None] for v in schedule.alpha_sigma(t_N))
        x = x_N[:, None]
        var = a**2 * STD**2 + s**2  # x_t | component k ~ N(a mu_k, a^2 std^2 + s^2)
        log_p = log_w - 0.5 * (x - a * mu) ** 2 / var - 0.5 * jnp.log(var)
        mean_k = mu + a * STD**2 / var * (x - a * mu)
        return jnp.sum(jax.nn.softmax(log_p, axis=1) * mean_k, axis=1)

    return denoise


@functools.cache
def _draw(kind, schedule_kind, steps, eta=0.0, n=N_SAMPLES, weights=WEIGHTS, guidance=1.0):
    schedule = Schedule(ScheduleConfig(schedule_kind))
    config = SamplerConfig(kind, steps, eta=eta, guidance=guidance)
    cond = mixture_denoiser(schedule, weights)
    uncond = mixture_denoiser(schedule, (0.5, 0.5))
    run = jax.jit(lambda key: sample(cond, schedule, (n,), key, config, uncond_fn=uncond))
    return np.asarray(run(jax.random.key(1)))


@pytest.mark.parametrize(
    ("kind", "schedule_kind", "steps", "eta"),
    [
        ("ddim", "cosine", 48, 0.0),
        ("ddim", "cosine", 96, 1.0),
        ("dpmpp_2m", "cosine", 16, 0.0),
        ("dpmpp_2m", "power", 16, 0.0),
        ("euler", "edm", 48, 0.0),
        ("heun", "edm", 16, 0.0),
        ("heun", "cosine", 16, 0.0),
        ("euler", "flow", 48, 0.0),
        ("heun", "flow", 16, 0.0),
        ("ddim", "flow", 48, 0.0),
    ],
)
def test_sampler_recovers_mixture(kind, schedule_kind, steps, eta):
    x = _draw(kind, schedule_kind, steps, eta)
    assert np.all(np.isfinite(x))
    upper = x > BOUNDARY
    assert upper.mean() == pytest.approx(WEIGHTS[1], abs=0.03)
    assert x[~upper].mean() == pytest.approx(MEANS[0], abs=0.1)
    assert x[upper].mean() == pytest.approx(MEANS[1], abs=0.1)
    assert x[~upper].std() == pytest.approx(STD, abs=0.05)  # modes neither collapse nor blur
    assert x[upper].std() == pytest.approx(STD, abs=0.05)
    mixture_std = np.sqrt(
        sum(w * (STD**2 + m**2) for w, m in zip(WEIGHTS, MEANS, strict=True))
        - sum(w * m for w, m in zip(WEIGHTS, MEANS, strict=True)) ** 2
    )
    assert x.std() == pytest.approx(mixture_std, rel=0.05)


@pytest.mark.parametrize(
    ("objective", "schedule_kind", "kind"),
    [("v", "cosine", "dpmpp_2m"), ("epsilon", "power", "ddim"), ("flow", "flow", "heun")],
)
def test_sampler_through_network_objective(objective, schedule_kind, kind):
    """A "network" predicting `objective` on [B, C, T] data, wrapped by make_denoiser."""
    schedule = Schedule(ScheduleConfig(schedule_kind))
    exact = mixture_denoiser(schedule)

    def model_fn(x_BxCxT, t_B):  # the exact output: the mixture posterior, per element
        t = jnp.broadcast_to(t_B[:, None, None], x_BxCxT.shape).reshape(-1)
        x0_BxCxT = exact(x_BxCxT.reshape(-1), t).reshape(x_BxCxT.shape)
        a_B, s_B = schedule.alpha_sigma(t_B)
        eps_BxCxT = (x_BxCxT - a_B[:, None, None] * x0_BxCxT) / s_B[:, None, None]
        return target(objective, x0_BxCxT, eps_BxCxT, a_B, s_B)

    denoise = make_denoiser(model_fn, objective, schedule)
    config = SamplerConfig(kind, 24)
    run = jax.jit(lambda key: sample(denoise, schedule, (250, 2, 4), key, config))
    x_BxCxT = np.asarray(run(jax.random.key(2)))
    assert x_BxCxT.shape == (250, 2, 4)
    assert (x_BxCxT > BOUNDARY).mean() == pytest.approx(WEIGHTS[1], abs=0.03)
    assert x_BxCxT[x_BxCxT > BOUNDARY].mean() == pytest.approx(MEANS[1], abs=0.1)


def test_dpmpp_2m_beats_ddim_at_few_steps():
    """Same noise, same ODE: the second-order solver is nearer the converged solution, and
    its error falls ~4x per doubling of steps where DDIM's (first order) falls ~2x."""
    reference = _draw("dpmpp_2m", "cosine", 200, n=1000)
    ddim_200 = _draw("ddim", "cosine", 200, n=1000)
    err = {
        (kind, steps): np.abs(_draw(kind, "cosine", steps, n=1000) - reference).mean()
        for kind in ("ddim", "dpmpp_2m")
        for steps in (10, 20)
    }
    # Both solvers converge to the same solution (DDIM's error ~ 1/steps).
    assert np.abs(ddim_200 - reference).mean() < 0.1 * err["ddim", 10]
    assert err["dpmpp_2m", 10] < 0.75 * err["ddim", 10]
    assert 1.6 < err["ddim", 10] / err["ddim", 20] < 2.5
    assert err["dpmpp_2m", 10] / err["dpmpp_2m", 20] > 3.0


def test_guidance():
    schedule = Schedule(ScheduleConfig("cosine"))
    cond = mixture_denoiser(schedule, (0.2, 0.8))
    uncond = mixture_denoiser(schedule, (0.5, 0.5))
    x_N = jnp.linspace(-4.0, 4.0, 64)
    t_N = jnp.full((64,), 0.6)
    assert guided(cond, uncond, 1.0) is cond
    both = lambda x, t: jnp.concatenate([cond(x[:64], t[:64]), uncond(x[64:], t[64:])])  # noqa: E731
    np.testing.assert_allclose(
        guided_stacked(both, 3.0)(x_N, t_N), guided(cond, uncond, 3.0)(x_N, t_N), atol=1e-6
    )
    plain = _draw("dpmpp_2m", "cosine", 16, weights=(0.2, 0.8))
    strong = _draw("dpmpp_2m", "cosine", 16, weights=(0.2, 0.8), guidance=3.0)
    assert (plain > BOUNDARY).mean() == pytest.approx(0.8, abs=0.03)
    assert (strong > BOUNDARY).mean() > 0.95
