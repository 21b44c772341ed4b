"""Codec training through the shared runtime: the GAN objective's gradients, the debug
experiment through `musicgen train` (train, resume, load), and SIGTERM-resume."""

import dataclasses
import os
import signal

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codec.api import Codec
from codec.family import CodecFamily, codec_losses
from mgcore.config import load_experiment
from mgcore.metrics import read_metrics
from mgcore.trainer import Preempted, train
from musicgen import cli

EXPERIMENT = "experiments/codec_tiny.py:debug"


@pytest.mark.slow  # 54 s on 2 cores
def test_one_backward_pass_gives_each_side_its_own_gradient(rng):
    config = load_experiment(EXPERIMENT, ["loss.adversarial_start=0"])
    with nnx.use_eager_sharding(False):
        model = CodecFamily(config).create_model(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    wav_BxTxC = jnp.asarray(0.3 * rng.standard_normal((2, 1600, 1)), jnp.float32)
    key = jax.random.key(1)

    def grads_of(term):
        def f(p):
            m = nnx.merge(graphdef, p, jax.tree.map(lambda x: x, rest))
            total, aux = codec_losses(m, wav_BxTxC, key, config)
            return total if term == "total" else aux[term]

        return jax.jit(jax.grad(f))(params)

    total, gen, disc = grads_of("total"), grads_of("generator_loss"), grads_of("discriminator_loss")
    for side, alone in (("generator", gen), ("discriminator", disc)):
        got, want = jax.tree.leaves(total[side]), jax.tree.leaves(alone[side])
        assert len(got) > 10
        for g, w in zip(got, want, strict=True):
            # float32 sums of the other terms round differently: allow 1e-6 of the largest.
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * float(np.abs(w).max()))

    # Each loss moves only its own side: the cross gradients are exactly zero.
    def largest(tree):
        return max(float(jnp.abs(g).max()) for g in jax.tree.leaves(tree))

    assert largest(gen["generator"]) > 0 and largest(disc["discriminator"]) > 0
    assert largest(gen["discriminator"]) == 0 and largest(disc["generator"]) == 0


@pytest.mark.parametrize(
    "experiment",
    [
        "experiments/codec_vocos.py:debug",
        # The same family and trainer as the frame-rate recipe's (85 s on 2 cores).
        pytest.param(EXPERIMENT, marks=pytest.mark.slow),
    ],
)
def test_debug_experiment_trains_resumes_and_loads(tmp_path, manifest, capsys, experiment):
    work = tmp_path / "w"
    args = ["train", "--config", experiment, "--workdir", str(work), "--no-progress",
            "--set", f"data.manifest={manifest}"]  # fmt: skip
    assert cli.main(args) == 0
    records = read_metrics(work)
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == [2, 4, 6]
    first = records[0]
    for key in ("mel", "adversarial", "feature_matching", "discriminator_loss", "perplexity_0",
                "dead_fraction_3", "examples_per_second"):  # fmt: skip
        assert np.isfinite(first[key]), key
    evals = [r for r in records if "eval/mel_distance_4cb" in r]
    assert [r["step"] for r in evals] == [6]
    samples = sorted(p.name for p in (work / "samples" / "step_00000006").iterdir())
    assert "eval_reconstruction_0.flac" in samples and "eval_log_mel_0.png" in samples
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["3", "6"]

    # The same command with more steps resumes at 6.
    assert cli.main([*args, "--set", "train.steps=8"]) == 0
    records = read_metrics(work)
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8]
    assert records[0] == first
    assert "step 8" in capsys.readouterr().out

    codec = Codec.from_pretrained(work)
    assert codec.sample_rate == 16000 and codec.frame_rate == 50.0
    codes = codec.encode(np.zeros((1, 1, 16000), np.float32))
    assert codes.shape == (1, 4, 50)


class _Preempted(CodecFamily):
    """Sends SIGTERM to itself when serving batch `at`."""

    def __init__(self, config, at):
        super().__init__(config)
        self.at = at

    def data(self):
        loader, at = super().data(), self.at
        original = type(loader).__next__

        class _Loader(type(loader)):
            served = 0

            def __next__(self):
                _Loader.served += 1
                if _Loader.served == at:
                    os.kill(os.getpid(), signal.SIGTERM)
                return original(self)

        loader.__class__ = _Loader
        return loader


@pytest.mark.slow  # 49 s; tests/musicgen/test_train.py checks the same resume through the CLI
def test_sigterm_then_restart_gives_the_uninterrupted_losses(tmp_path, manifest):
    config = load_experiment(EXPERIMENT, [f"data.manifest={manifest}"])
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, log_every=1, eval_every=0, save_every=100)
    )

    def run(family, workdir):
        return train(family, config.optimizer, config.train, workdir, progress=False)

    run(CodecFamily(config), tmp_path / "ref")
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 4") as stopped:
        run(_Preempted(config, at=4), tmp_path / "run")
    assert stopped.value.step == 4
    run(CodecFamily(config), tmp_path / "run")
    want = {r["step"]: r for r in read_metrics(tmp_path / "ref")}
    got = {r["step"]: r for r in read_metrics(tmp_path / "run")}
    assert sorted(got) == sorted(want) == list(range(1, 7))
    for step in want:
        for key in ("loss", "mel", "discriminator_loss", "perplexity_0"):
            assert got[step][key] == pytest.approx(want[step][key], rel=1e-6), (step, key)


def test_gan_terms_switch_on_at_adversarial_start(rng):
    config = load_experiment(EXPERIMENT, ["loss.adversarial_start=5"])
    with nnx.use_eager_sharding(False):
        model = CodecFamily(config).create_model(nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    wav_BxTxC = jnp.asarray(0.3 * rng.standard_normal((2, 1600, 1)), jnp.float32)

    @jax.jit
    def losses(step):
        m = nnx.merge(graphdef, jax.tree.map(lambda x: x, state))
        return codec_losses(m, wav_BxTxC, jax.random.key(1), config, step)

    (before, aux0), (after, aux1) = losses(4), losses(5)
    assert float(aux0["discriminator_loss"]) == 0 and float(aux1["discriminator_loss"]) > 0
    weights = config.loss
    reconstruction = weights.mel * aux0["mel"] + weights.quantizer * aux0["quantizer"]
    assert float(before) == pytest.approx(float(reconstruction), rel=1e-6)
    gan = (
        weights.adversarial * aux1["adversarial"]
        + weights.feature_matching * aux1["feature_matching"]
    )
    assert float(after) == pytest.approx(
        float(reconstruction + gan + aux1["discriminator_loss"]), rel=1e-5
    )
