"""LoRA adapters on the LM: where they go, that they start as no change, that training
moves only them, and that an adapter saves, loads and merges to the same outputs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgcore.config_types import ConfigError
from mgcore.frozen import FrozenParam
from mgcore.weights import PretrainedError
from musicgen.lm import lora
from musicgen.lm.adapter import apply_adapter, fingerprint, read_adapter, save_adapter
from musicgen.lm.lora import LoRAConfig
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.sampling import SamplingConfig, generate_codes

BASE = LMConfig(num_codebooks=4, card=32, num_layers=2, dim=32, num_heads=4, ffn_dim=64,
                text_dim=16)  # fmt: skip
ADAPTED = dataclasses.replace(BASE, lora=LoRAConfig(rank=4, alpha=8.0))


def _model(config, seed=0) -> MusicGenLM:
    with nnx.use_eager_sharding(False):
        return MusicGenLM(config, rngs=nnx.Rngs(seed))


def _inputs(rng, batch=2, steps=6):
    tokens = rng.integers(0, BASE.card, size=(batch, BASE.num_codebooks, steps))
    text = rng.normal(size=(batch, 5, BASE.text_dim)).astype(np.float32)
    return jnp.asarray(tokens), jnp.asarray(text), jnp.ones((batch, 5), bool)


def _with_base(adapted: MusicGenLM, base: MusicGenLM) -> MusicGenLM:
    """`adapted` with `base`'s weights and random (non-zero) adapters."""
    state = dict(nnx.to_flat_state(nnx.state(adapted)))
    for path, var in nnx.to_flat_state(nnx.state(base)):
        state[path] = state[path].replace(var.get_value())
    key = jax.random.key(7)
    for path, var in state.items():
        if path[-1] == "lora_b":
            key, sub = jax.random.split(key)
            state[path] = var.replace(0.3 * jax.random.normal(sub, var.get_value().shape))
    return nnx.merge(nnx.graphdef(adapted), nnx.from_flat_state(list(state.items())))


def test_targets_choose_the_projections():
    model = _model(dataclasses.replace(ADAPTED, lora=LoRAConfig(rank=2, targets=("q_proj", "fc2"))))
    adapted = sorted(".".join(map(str, p)) for p, _ in lora.adapted(model))
    assert adapted == [f"layers.{i}.{m}" for i in range(2)
                       for m in ("encoder_attn.q_proj", "fc2", "self_attn.q_proj")]  # fmt: skip
    # rank 2 x (32 in + 32 out) per projection, 3 a layer, 2 layers
    assert lora.count(model) == 2 * (2 * 2 * (32 + 32) + 2 * (64 + 32))
    with pytest.raises(ConfigError, match="names no projection"):
        LoRAConfig(rank=2, targets=("lm_heads",))
    with pytest.raises(ConfigError, match="need float weights"):
        dataclasses.replace(ADAPTED, weights="int8")


def test_new_adapter_changes_nothing(rng):
    base, adapted = _model(BASE), _model(ADAPTED)
    adapted = nnx.merge(nnx.graphdef(adapted), _copy_base(nnx.state(adapted), nnx.state(base)))
    tokens, text, mask = _inputs(rng)
    np.testing.assert_array_equal(np.asarray(base(tokens, text, mask)),
                                  np.asarray(adapted(tokens, text, mask)))  # fmt: skip


def _copy_base(state, base_state):
    flat = dict(nnx.to_flat_state(state))
    for path, var in nnx.to_flat_state(base_state):
        flat[path] = flat[path].replace(var.get_value())
    return nnx.from_flat_state(list(flat.items()))


def test_freeze_base_leaves_only_adapters_trainable():
    model = lora.freeze_base(_model(ADAPTED))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert sum(p.size for p in params) == lora.count(model) > 0
    frozen = jax.tree.leaves(nnx.state(model, FrozenParam))
    assert sum(p.size for p in frozen) == sum(
        p.size for p in jax.tree.leaves(nnx.state(_model(BASE), nnx.Param))
    )


def test_adapter_saves_loads_and_merges_to_the_same_outputs(tmp_path, rng):
    base = _model(BASE)
    adapted = _with_base(_model(ADAPTED), base)
    tokens, text, mask = _inputs(rng)
    want = np.asarray(adapted(tokens, text, mask))
    # The adapter really moves the output (else the comparisons below prove nothing).
    assert np.abs(want - np.asarray(base(tokens, text, mask))).max() > 1e-2

    save_adapter(tmp_path / "adapter", adapted, fingerprint(base))
    config, fields = read_adapter(tmp_path / "adapter")
    assert config.lora == ADAPTED.lora and fields.trainable == lora.count(adapted)
    unmerged = apply_adapter(base, tmp_path / "adapter", merge_adapter=False)
    merged = apply_adapter(base, tmp_path / "adapter")
    assert merged.config.lora.rank == 0 and lora.count(merged) == 0
    np.testing.assert_allclose(np.asarray(unmerged(tokens, text, mask)), want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(merged(tokens, text, mask)), want, atol=1e-4)
    sampling = SamplingConfig(temperature=0.0)  # greedy: the same argmax, step by step
    codes = [generate_codes(m, text, mask, 8, sampling=sampling, seed=0, window=8, stride=4)
             for m in (unmerged, merged)]  # fmt: skip
    np.testing.assert_array_equal(codes[0], codes[1])


def test_adapter_for_another_model_is_refused(tmp_path):
    base = _model(BASE)
    save_adapter(tmp_path / "adapter", _with_base(_model(ADAPTED), base), fingerprint(base))
    with pytest.raises(PretrainedError, match="same shape, other weights"):
        apply_adapter(_model(BASE, seed=1), tmp_path / "adapter")
    wider = _model(dataclasses.replace(BASE, ffn_dim=128))
    with pytest.raises(PretrainedError, match=r"another model.*ffn_dim"):
        apply_adapter(wider, tmp_path / "adapter")
    with pytest.raises(PretrainedError, match=r"holds no adapter\.json"):
        apply_adapter(base, tmp_path)
