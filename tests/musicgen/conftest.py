"""Shared by the musicgen tests: debug runs trained once a session on the embedded
dataset's smallest slice (`embedded_manifest`, tests/conftest.py), and a tiny pipeline."""

import pytest


@pytest.fixture(scope="session")
def lm_debug(tmp_path_factory, embedded_manifest):
    """`experiments/lm_tiny.py:debug` trained once a session: (workdir, token cache, argv).
    Tests that train it further must only add steps."""
    from musicgen import cli

    root = tmp_path_factory.mktemp("lm_debug")
    work, tokens = root / "w", root / "tokens"
    args = ["train", "--config", "experiments/lm_tiny.py:debug", "--workdir", str(work),
            "--no-progress", "--set", f"data.manifest={embedded_manifest}",
            "--set", f"data.tokens={tokens}"]  # fmt: skip
    assert cli.main(args) == 0
    return work, tokens, args


@pytest.fixture(scope="session")
def judge_debug(tmp_path_factory, embedded_manifest):
    """`experiments/judge_tiny.py:debug` trained once a session: (workdir, argv)."""
    from musicgen import cli

    work = tmp_path_factory.mktemp("judge_debug") / "w"
    args = ["train", "--config", "experiments/judge_tiny.py:debug", "--workdir", str(work),
            "--no-progress", "--set", f"data.manifest={embedded_manifest}",
            "--set", "train.wandb=disabled"]  # fmt: skip
    assert cli.main(args) == 0
    return work, args


@pytest.fixture(scope="session")
def tiny_pipeline():
    """A random MusicGen pipeline (1-layer LM, the debug codec, a 1-block refiner), 2 s max."""
    from flax import nnx

    from codec.api import random_codec
    from diffusion.refiner.api import Refiner
    from diffusion.refiner.model import CoarseConfig, RefinerConfig, RefinerNet
    from musicgen.lm.api import LanguageModel
    from musicgen.lm.model import LMConfig, MusicGenLM
    from musicgen.lm.sampling import SamplingConfig
    from musicgen.pipeline import MusicGen
    from musicgen.text import TextConfig

    codec = random_codec()
    with nnx.use_eager_sharding(False):
        lm = MusicGenLM(LMConfig(num_codebooks=4, card=64, num_layers=1, dim=32, num_heads=4,
                                 ffn_dim=64, text_dim=384), rngs=nnx.Rngs(0))  # fmt: skip
        coarse = CoarseConfig(sample_rate=16000, hop_length=320, dim=16, codebooks=2)
        net = RefinerNet(RefinerConfig(coarse=coarse, width=16, depth=1, noise_dim=16),
                         rngs=nnx.Rngs(0))  # fmt: skip
    language_model = LanguageModel(lm, TextConfig(kind="minilm"), 1.0, codec.frame_rate)
    return MusicGen(language_model, codec, Refiner(net, codec), max_duration=2.0,
                    sampling=SamplingConfig(top_k=20), refine_steps=2)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_controls_pipeline(tiny_pipeline):
    """`tiny_pipeline`'s codec with a random 1-layer LM that reads controls, no refiner."""
    import dataclasses

    from flax import nnx

    from musicgen.lm.api import LanguageModel
    from musicgen.lm.model import MusicGenLM
    from musicgen.pipeline import MusicGen

    lm = tiny_pipeline.lm
    config = dataclasses.replace(lm.config, controls=True)
    with nnx.use_eager_sharding(False):
        model = MusicGenLM(config, rngs=nnx.Rngs(0))
    language_model = LanguageModel(model, lm.text_config, 1.0, lm.frame_rate, lm.conditioner)
    return MusicGen(language_model, tiny_pipeline.codec, max_duration=6.0,
                    sampling=tiny_pipeline.sampling)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_pipeline_folder(tiny_pipeline, tmp_path_factory):
    """`tiny_pipeline` saved."""
    return tiny_pipeline.save_pretrained(tmp_path_factory.mktemp("pipe") / "tiny")
