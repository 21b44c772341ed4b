"""The LM with controls: tokens and grid that change the output, nothing when not asked,
the loader's arrays and dropout, generation across windows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicgen.controls import Controls
from musicgen.controls.features import frame_features, global_arrays
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.sampling import SamplingConfig, generate_codes

CONFIG = LMConfig(num_codebooks=2, card=16, num_layers=1, dim=32, num_heads=4, ffn_dim=64,
                  text_dim=8, text_sum=True, controls=True)  # fmt: skip


def _build(config: LMConfig) -> MusicGenLM:
    with nnx.use_eager_sharding(False):
        return MusicGenLM(config, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def model():
    return _build(CONFIG)


def _arrays(controls, frames=6, rate=50.0):
    grid = np.stack([frame_features(c, 0.0, frames, rate) for c in controls])
    return {k: jnp.asarray(v) for k, v in {**global_arrays(controls), "frames": grid}.items()}


def _inputs(batch=2, steps=7):
    tokens = jax.random.randint(jax.random.key(1), (batch, 2, steps), 0, 17)
    text = jax.random.normal(jax.random.key(2), (batch, 3, 8))
    return tokens, text, jnp.ones((batch, 3), jnp.int32)


def test_unasked_controls_are_the_control_free_path(model):
    tokens, text, mask = _inputs()
    none = model(tokens, text, mask)
    empty = model(tokens, text, mask, controls=_arrays([Controls(), Controls()]))
    np.testing.assert_allclose(np.asarray(empty), np.asarray(none), atol=1e-5)


@pytest.mark.parametrize(
    "controls",
    [Controls(bpm=126.0), Controls.make(key="E minor"), Controls.make(time_signature="3/4"),
     Controls.make(instruments="piano"), Controls.make(chords="Am")],
)  # fmt: skip
def test_each_control_changes_the_logits(model, controls):
    tokens, text, mask = _inputs(batch=1)
    base = model(tokens, text, mask, controls=_arrays([Controls()]))
    asked = model(tokens, text, mask, controls=_arrays([controls]))
    assert float(jnp.abs(asked - base).max()) > 1e-3


def test_nearby_tempos_embed_nearby():
    from musicgen.lm.controls import tempo_features

    f = np.asarray(tempo_features(jnp.asarray([120.0, 124.8, 180.0])))
    near, far = np.linalg.norm(f[0] - f[1]), np.linalg.norm(f[0] - f[2])
    assert 0.3 < near < far


def test_a_model_without_controls_refuses_them():
    plain = _build(LMConfig(num_codebooks=2, card=16, num_layers=1, dim=32, num_heads=4,
                            text_dim=8))  # fmt: skip
    tokens, text, mask = _inputs(batch=1)
    with pytest.raises(ValueError, match="built without controls"):
        plain(tokens, text, mask, controls=_arrays([Controls(bpm=100.0)]))


def test_generation_with_controls_across_windows(model):
    _, text, mask = _inputs()
    asked = [Controls(bpm=126.0, chords=("Am", "F")), Controls()]
    kw = dict(sampling=SamplingConfig(top_k=4), window=8, stride=4, frame_rate=50.0)
    a = generate_codes(model, text, mask, 20, seed=3, controls=asked, **kw)
    b = generate_codes(model, text, mask, 20, seed=3, controls=asked, **kw)
    c = generate_codes(model, text, mask, 20, seed=3, controls=[Controls(), Controls()], **kw)
    assert a.shape == (2, 2, 20)
    np.testing.assert_array_equal(a, b)
    assert (a[0] != c[0]).any()  # the asked row follows its controls
    np.testing.assert_array_equal(a[1], c[1])  # a row asks nothing either way
    with pytest.raises(ValueError, match="1 controls for 2 rows"):
        generate_codes(model, text, mask, 8, controls=asked[:1], **kw)


def test_the_loader_carries_each_clips_true_controls(lm_debug):
    from musicgen.lm.token_cache import TokenCache
    from musicgen.lm.token_loader import TokenLoader, TokenPipelineConfig

    _, tokens, _ = lm_debug
    cache = TokenCache(tokens)
    base = dict(frames=25, batch_size=2, crop="start", shuffle=False, num_epochs=1,
                shard_index=0, shard_count=1, controls=True)  # fmt: skip
    batch = next(TokenLoader(cache, "train", TokenPipelineConfig(**base, controls_off=0.0,
                                                                 control_dropout=0.0)))  # fmt: skip
    lines = cache.clips("train")[:2]
    truth = [Controls.from_attributes(line["attributes"]) for line in lines]
    expected = global_arrays(truth)
    for name, value in expected.items():
        np.testing.assert_array_equal(batch[f"control_{name}"], value)
    grid = np.stack([frame_features(c, 0.0, 25, cache.frame_rate) for c in truth])
    np.testing.assert_allclose(batch["control_frames"], grid, atol=1e-6)
    assert batch["control_frames"][:, :, 4:].sum() > 0  # the manifest's chords are there
    off = next(TokenLoader(cache, "train", TokenPipelineConfig(**base, controls_off=1.0)))
    assert off["control_bpm"].max() == 0 and np.abs(off["control_frames"]).max() == 0
