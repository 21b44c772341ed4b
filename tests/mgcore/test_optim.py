"""Optimiser chain: schedules hit their stated values; NaN updates are skipped and counted."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgcore.optim import (
    OptimizerConfig,
    ema_update,
    make_optimizer,
    make_schedule,
    nonfinite_counts,
)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # step:            0     50    100   550     1000
        ("constant", [0.0, 0.5, 1.0, 1.0, 1.0]),
        ("cosine", [0.0, 0.5, 1.0, 0.5 * (1 + np.cos(np.pi * 0.5)), 0.0]),
        ("linear", [0.0, 0.5, 1.0, 0.5, 0.0]),
        ("inverse_sqrt", [0.0, 0.5, 1.0, np.sqrt(100 / 550), np.sqrt(100 / 1000)]),
    ],
)
def test_schedules_warm_up_then_decay(schedule, expected):
    cfg = OptimizerConfig(learning_rate=1.0, schedule=schedule, warmup_steps=100)
    lr = make_schedule(cfg, total_steps=1000)
    got = [float(lr(s)) for s in (0, 50, 100, 550, 1000)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_exponential_decay_is_dacs():
    lr = make_schedule(OptimizerConfig(learning_rate=1e-4, schedule="exponential"), 10**6)
    assert float(lr(100_000)) == pytest.approx(1e-4 * 0.999996**100_000, rel=1e-5)


def _quadratic_steps(cfg, grads_seq):
    params = {"w": jnp.ones(3)}
    opt = make_optimizer(cfg, total_steps=100)
    state = opt.init(params)
    for g in grads_seq:
        updates, state = opt.update({"w": g}, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def test_nonfinite_updates_are_skipped_and_counted():
    cfg = OptimizerConfig(learning_rate=0.1, schedule="constant", max_consecutive_nonfinite=3)
    good, bad = jnp.ones(3), jnp.array([1.0, jnp.nan, 1.0])
    clean, _ = _quadratic_steps(cfg, [good, good])
    dirty, state = _quadratic_steps(cfg, [good, bad, bad, good])
    np.testing.assert_allclose(dirty["w"], clean["w"])  # the NaN steps changed nothing
    consecutive, total = nonfinite_counts(state)
    assert (int(consecutive), int(total)) == (0, 2)
    _, state = _quadratic_steps(cfg, [good, bad, bad])
    assert int(nonfinite_counts(state)[0]) == 2


def test_accumulation_equals_one_big_batch():
    cfg = OptimizerConfig(learning_rate=0.1, schedule="constant", grad_clip_norm=None)
    g1, g2 = jnp.array([1.0, 2.0, 3.0]), jnp.array([3.0, 2.0, 1.0])
    accumulated, _ = _quadratic_steps(
        OptimizerConfig(**{**cfg.__dict__, "grad_accumulation": 2}), [g1, g2]
    )
    single, _ = _quadratic_steps(cfg, [(g1 + g2) / 2])
    np.testing.assert_allclose(accumulated["w"], single["w"], rtol=1e-6)


def test_clipping_bounds_the_global_norm():
    cfg = OptimizerConfig(name="adam", learning_rate=1.0, schedule="constant", grad_clip_norm=0.5)
    opt = make_optimizer(cfg, 10)
    params = {"w": jnp.zeros(4)}
    _, state = opt.update({"w": jnp.full(4, 10.0)}, opt.init(params), params)
    # Adam's first moment after one step is (1 - b1) times the gradient it was given:
    # the clipped one, of global norm 0.5 (unclipped it would be 20).
    mu = optax.tree_utils.tree_get(state, "mu")
    assert float(optax.tree.norm(mu)) == pytest.approx((1 - cfg.b1) * 0.5)


def test_ema_update():
    ema = {"w": jnp.zeros(2, jnp.float32)}
    for _ in range(3):
        ema = ema_update(ema, {"w": jnp.ones(2)}, decay=0.5)
    np.testing.assert_allclose(ema["w"], [0.875, 0.875])
    assert jax.tree.map(lambda x: x.dtype, ema) == {"w": jnp.float32}


def test_groups_update_exactly_like_separate_optimisers(rng):
    # A GAN: the discriminator clips at 0.1 with lr 1e-2, the generator uses lr 1e-3
    # unclipped; one chain over both must equal two independent chains.
    default = OptimizerConfig(learning_rate=1e-3, schedule="constant", grad_clip_norm=None)
    disc = OptimizerConfig(learning_rate=1e-2, schedule="cosine", grad_clip_norm=0.1)
    tx = make_optimizer(default, 10, groups={"discriminator": disc})
    alone = {"generator": make_optimizer(default, 10), "discriminator": make_optimizer(disc, 10)}
    params = {k: {"w": jnp.asarray(rng.standard_normal(3), jnp.float32)} for k in alone}
    state = tx.init(params)
    states = {k: alone[k].init(params[k]) for k in alone}
    for _ in range(3):
        grads = {k: {"w": jnp.asarray(5 * rng.standard_normal(3), jnp.float32)} for k in alone}
        updates, state = tx.update(grads, state, params)
        for k in alone:
            want, states[k] = alone[k].update(grads[k], states[k], params[k])
            np.testing.assert_allclose(updates[k]["w"], want["w"], rtol=1e-6)
        params = optax.apply_updates(params, updates)
