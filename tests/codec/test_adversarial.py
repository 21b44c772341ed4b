"""Adversarial losses: hand-computed values and NumPy references (training: test_discriminators)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codec import adversarial
from codec.discriminators import DiscriminatorOutput

REAL = jnp.array([0.5, 2.0, -1.0])
FAKE = jnp.array([-2.0, 0.0, 0.5])


def _out(logits, *maps):
    return DiscriminatorOutput(jnp.asarray(logits, jnp.float32), tuple(map(jnp.asarray, maps)))


def test_discriminator_logit_losses_by_hand():
    # hinge: mean(relu(1 - [0.5, 2, -1])) = 2.5 / 3 and mean(relu(1 + [-2, 0, 0.5])) = 2.5 / 3
    hinge = adversarial.discriminator_logit_loss(REAL, FAKE, "hinge")
    np.testing.assert_allclose(hinge, 5 / 3, rtol=1e-6)
    np.testing.assert_allclose(adversarial.discriminator_logit_loss(REAL, FAKE, "hinge2"), 5 / 3)
    # least squares: mean((1 - real)^2) = (0.25 + 1 + 4) / 3; mean(fake^2) = (4 + 0 + 0.25) / 3
    ls = adversarial.discriminator_logit_loss(REAL, FAKE, "least_squares")
    np.testing.assert_allclose(ls, 9.5 / 3, rtol=1e-6)


def test_generator_logit_losses_by_hand():
    np.testing.assert_allclose(adversarial.generator_logit_loss(FAKE, "hinge"), 0.5, rtol=1e-6)
    # relu(1 - [-2, 0, 0.5]) = [3, 1, 0.5]
    np.testing.assert_allclose(adversarial.generator_logit_loss(FAKE, "hinge2"), 1.5, rtol=1e-6)
    # (1 - [-2, 0, 0.5])^2 = [9, 1, 0.25]
    ls = adversarial.generator_logit_loss(FAKE, "least_squares")
    np.testing.assert_allclose(ls, 10.25 / 3, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        adversarial.generator_logit_loss(FAKE, "wasserstein")


def test_reduction_over_sub_discriminators():
    real = [_out(REAL), _out(jnp.ones((2, 2)))]
    fake = [_out(FAKE), _out(-jnp.ones((2, 2)))]
    # the second sub-discriminator is already perfect under hinge: loss 0
    total = adversarial.discriminator_loss(real, fake, kind="hinge", reduction="sum")
    mean = adversarial.discriminator_loss(real, fake, kind="hinge", reduction="mean")
    np.testing.assert_allclose([total, mean], [5 / 3, 5 / 6], rtol=1e-6)
    # generator, least squares: 10.25 / 3 and (1 - -1)^2 = 4
    gen = adversarial.generator_loss(fake, kind="least_squares", reduction="sum")
    np.testing.assert_allclose(gen, 10.25 / 3 + 4, rtol=1e-6)
    with pytest.raises(ValueError, match="2 real outputs but 1"):
        adversarial.discriminator_loss(real, fake[:1])


def test_generator_loss_falls_as_fake_logits_rise():
    levels = np.linspace(-2.0, 0.9, 12)
    for kind in ("hinge", "hinge2", "least_squares"):
        losses = [
            float(adversarial.generator_loss([_out(jnp.full((3, 4), c))], kind=kind))
            for c in levels
        ]
        assert np.all(np.diff(losses) < 0), (kind, losses)
    # and the gradient with respect to every fake logit is negative
    grad = jax.grad(lambda x: adversarial.generator_loss([_out(x)], kind="least_squares"))(FAKE)
    np.testing.assert_allclose(grad, -2 * (1 - FAKE) / 3, rtol=1e-6)


def _feature_outputs(rng):
    shapes = [[(2, 5, 3, 4), (2, 2, 3, 8)], [(2, 7, 4), (2, 4, 4), (2, 3, 1)]]
    real, fake = [], []
    for layer_shapes in shapes:
        r = [rng.normal(size=s).astype(np.float32) for s in layer_shapes]
        f = [x + rng.normal(scale=0.3, size=x.shape).astype(np.float32) for x in r]
        real.append(_out(np.zeros(1), *r))
        fake.append(_out(np.zeros(1), *f))
    return real, fake


def test_feature_matching_matches_numpy(rng):
    real, fake = _feature_outputs(rng)
    l1 = [
        [
            np.mean(np.abs(np.asarray(f) - np.asarray(r)))
            for r, f in zip(ro.feature_maps, fo.feature_maps, strict=True)
        ]
        for ro, fo in zip(real, fake, strict=True)
    ]
    scale = [[np.mean(np.abs(np.asarray(r))) for r in ro.feature_maps] for ro in real]
    dac = sum(sum(layers) for layers in l1)
    audiocraft = np.mean([np.mean(layers) for layers in l1])
    encodec = np.mean([np.mean(np.divide(a, s)) for a, s in zip(l1, scale, strict=True)])
    got = [
        adversarial.feature_matching_loss(real, fake, reduction="sum"),
        adversarial.feature_matching_loss(real, fake, reduction="mean"),
        adversarial.feature_matching_loss(real, fake, relative=True, reduction="mean"),
    ]
    np.testing.assert_allclose(got, [dac, audiocraft, encodec], rtol=1e-5)
    assert adversarial.feature_matching_loss(real, real) == 0.0


def test_feature_matching_gradient_reaches_fake_only(rng):
    real, fake = _feature_outputs(rng)
    loss = functools.partial(adversarial.feature_matching_loss, relative=True)
    g_real, g_fake = jax.jit(jax.grad(loss, argnums=(0, 1)))(real, fake)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(g_real))
    assert all(float(jnp.abs(g).max()) > 0 for o in g_fake for g in o.feature_maps)


def test_presets():
    dac, encodec = (
        adversarial.AdversarialLossConfig.dac(),
        adversarial.AdversarialLossConfig.encodec(),
    )
    assert (dac.kind, dac.reduction, dac.relative_features) == ("least_squares", "sum", False)
    assert (encodec.kind, encodec.reduction, encodec.relative_features) == ("hinge", "mean", True)
