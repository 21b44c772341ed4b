"""The token LM: patterns, the decoder's cache against its full pass, sampling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from musicgen.lm.api import abstract_lm
from musicgen.lm.dense import from_panels, panel_matmul, sampling_state, to_panels
from musicgen.lm.model import LMConfig, MusicGenLM
from musicgen.lm.patterns import Pattern, PatternConfig
from musicgen.lm.sampling import SamplingConfig, generate_codes, generate_window, sample_logits

CONFIG = LMConfig(num_codebooks=4, card=32, num_layers=2, dim=32, num_heads=4, text_dim=16)


def _model(config=CONFIG, seed=0) -> MusicGenLM:
    with nnx.use_eager_sharding(False):
        return MusicGenLM(config, rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module", params=[False, True], ids=["cross", "cross+sum"])
def model(request):
    return _model(dataclasses.replace(CONFIG, text_sum=request.param))


def _text(rng, batch, length=5):
    text = rng.normal(size=(batch, length, CONFIG.text_dim)).astype(np.float32)
    mask = np.ones((batch, length), bool)
    mask[-1, 3:] = False
    return text, mask


def test_delay_pattern_layout_is_musicgens():
    pattern = Pattern(PatternConfig("delay"), 3)
    assert pattern.layout(5).tolist() == [
        [0, 1, 2, 3, 4],
        [-1, 0, 1, 2, 3],
        [-1, -1, 0, 1, 2],
    ]
    codes = np.arange(6).reshape(1, 3, 2) + 10
    assert pattern.interleave(codes, special=99).tolist() == [
        [[10, 11, 99, 99], [99, 12, 13, 99], [99, 99, 14, 15]]
    ]


@pytest.mark.parametrize("kind", ["delay", "parallel", "flattened"])
def test_patterns_round_trip(kind, rng):
    pattern = Pattern(PatternConfig(kind), 4)
    codes = rng.integers(0, 50, size=(2, 4, 7))
    seq = pattern.interleave(codes, special=50)
    assert seq.shape[-1] == pattern.steps(7) == {"delay": 10, "parallel": 7, "flattened": 28}[kind]
    assert (seq == 50).sum() == seq.size - codes.size  # every other step is special
    np.testing.assert_array_equal(pattern.deinterleave(seq), codes)


def test_stereo_delays():
    pattern = Pattern(PatternConfig("delay", (0, 0, 1, 1)), 4)
    assert pattern.steps(5) == 6
    assert pattern.layout(3)[:, 0].tolist() == [0, 0, -1, -1]


def test_cached_decoding_matches_the_full_pass(model, rng):
    batch, steps = 2, 9
    text, mask = _text(rng, batch)
    tokens = rng.integers(0, CONFIG.card + 1, size=(batch, 4, steps)).astype(np.int32)
    full = model(jnp.asarray(tokens), text, mask)
    cross, cache = model.cross_kv(text, mask), model.init_cache(batch, steps)
    step = nnx.jit(lambda m, t, s, c: m.decode_step(t, s, c, cross))  # one program, all steps
    for s in range(steps):
        logits, cache = step(model, jnp.asarray(tokens[:, :, s]), s, cache)
        np.testing.assert_allclose(logits, full[:, :, s], atol=1e-5)


def test_self_attention_is_causal_and_empty_text_is_no_text(model, rng):
    text, mask = _text(rng, 2)
    tokens = rng.integers(0, CONFIG.card, size=(2, 4, 8)).astype(np.int32)
    changed = tokens.copy()
    changed[:, :, 5] = (changed[:, :, 5] + 1) % CONFIG.card
    run = nnx.jit(lambda m, t, x, k: m(t, x, k))  # one program for the four passes
    a, b = run(model, tokens, text, mask), run(model, changed, text, mask)
    np.testing.assert_allclose(a[:, :, :5], b[:, :, :5], atol=1e-6)
    assert float(jnp.abs(a[:, :, 5:] - b[:, :, 5:]).max()) > 1e-3
    # A fully masked text gives the same logits whatever its states are.
    off = np.zeros_like(mask)
    np.testing.assert_allclose(run(model, tokens, text, off), run(model, tokens, 0 * text, off),
                               atol=1e-6)  # fmt: skip
    if model.config.text_sum:  # the sentence-embedding bias: zero without a caption
        assert float(jnp.abs(model.text_bias(text, off)).max()) == 0.0
        assert float(jnp.abs(model.text_bias(text, mask)).min(-1).max()) > 0.0


def test_int8_weights_stay_close_and_panels_change_no_bit(model, rng):
    text, mask = _text(rng, 2)
    tokens = rng.integers(0, CONFIG.card, size=(2, 4, 6)).astype(np.int32)
    int8 = []
    for panels in (False, True):  # in panels: fc1's 128 outputs are 2 blocks of 64
        config = dataclasses.replace(model.config, weights="int8", panels=panels)
        graphdef8, abstract8 = abstract_lm(config)
        int8.append(nnx.merge(graphdef8, sampling_state(nnx.state(model), abstract8)))
    assert int8[0].layers[0].fc1.kernel[...].dtype == jnp.int8
    assert int8[1].layers[0].fc1.kernel[...].shape == (2, 1, 32, 64)
    logits = nnx.jit(lambda m: m(tokens, text, mask))
    p = jax_softmax(logits(model))
    p8, p8_panels = (jax_softmax(logits(m)) for m in int8)
    assert float(jnp.abs(p - p8).max()) < 0.02
    np.testing.assert_array_equal(p8_panels, p8)


def test_panel_products_are_the_rows_products(rng):
    # int8: 3 panels of 64 columns x 2 chunks of 1024 rows, exact int32 sums.
    w8 = rng.integers(-127, 128, size=(2048, 192)).astype(np.int8)
    x8 = rng.integers(-127, 128, size=(3, 2048)).astype(np.int8)
    p8 = to_panels(jnp.asarray(w8))
    assert p8.shape == (3, 2, 1024, 64)
    np.testing.assert_array_equal(from_panels(p8), w8)
    np.testing.assert_array_equal(
        panel_matmul(jnp.asarray(x8), p8, jnp.int32), x8.astype(np.int64) @ w8.astype(np.int64)
    )
    w, x = rng.normal(size=(256, 320)).astype(np.float32), rng.normal(size=(2, 256))
    pw = to_panels(jnp.asarray(w))
    assert pw.shape == (5, 1, 256, 64)
    x = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(panel_matmul(x, pw, jnp.float32), x @ w, rtol=1e-5, atol=1e-5)


def jax_softmax(x):
    return np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(
        -1, keepdims=True
    )


def test_top_k_one_and_top_p_small_are_greedy(rng):
    logits = jnp.asarray(rng.normal(size=(3, 4, 20)), jnp.float32)
    greedy = np.asarray(sample_logits(logits, None, 0.0, 0, 0.0))
    import jax

    key = jax.random.key(0)
    np.testing.assert_array_equal(sample_logits(logits, key, 1.0, 1, 0.0), greedy)
    np.testing.assert_array_equal(sample_logits(logits, key, 1.0, 0, 1e-6), greedy)
    # top-k 3 never leaves the 3 most likely tokens
    top3 = np.argsort(-np.asarray(logits), axis=-1)[..., :3]
    for seed in range(5):
        drawn = np.asarray(sample_logits(logits, jax.random.key(seed), 1.0, 3, 0.0))
        assert (drawn[..., None] == top3).any(-1).all()


def test_greedy_generation_is_the_full_pass_argmax(model, rng):
    text, mask = _text(rng, 2)
    sampling = SamplingConfig(temperature=0.0, cfg_coef=1.0)
    codes = generate_codes(model, text, mask, 8, sampling=sampling, window=8, stride=4)
    pattern = Pattern(CONFIG.pattern, 4)
    seq = pattern.interleave(codes, CONFIG.special)
    inputs = np.concatenate([np.full((2, 4, 1), CONFIG.special), seq[..., :-1]], -1)
    argmax = np.asarray(model(inputs, text, mask).argmax(-1))
    valid = pattern.valid(seq.shape[-1], np.array([8, 8]))
    np.testing.assert_array_equal(argmax[valid], seq[valid])


def test_seed_prompt_and_long_form(model, rng):
    text, mask = _text(rng, 2)
    sampling = SamplingConfig(top_k=8, cfg_coef=3.0)
    prompt = rng.integers(0, CONFIG.card, size=(2, 4, 5)).astype(np.int32)
    kw = dict(sampling=sampling, window=10, stride=6, prompt_BxKxP=prompt)
    seen = []
    a = generate_codes(
        model, text, mask, 27, seed=1, progress=lambda d, t: seen.append((d, t)), **kw
    )
    b = generate_codes(model, text, mask, 27, seed=1, **kw)
    c = generate_codes(model, text, mask, 27, seed=2, **kw)
    assert a.shape == (2, 4, 27)
    np.testing.assert_array_equal(a[..., :5], prompt)  # the prompt is kept exactly
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.3
    assert a.min() >= 0 and a.max() < CONFIG.card  # never the special token
    assert seen[-1] == (27, 27) and all(d <= t for d, t in seen)


def test_new_values_of_temperature_top_p_and_guidance_do_not_compile_again(model, rng):
    text, mask = _text(rng, 2)
    kw = dict(window=8, stride=4, seed=3)
    base = SamplingConfig(temperature=1.0, top_k=8, top_p=0.9, cfg_coef=3.0)
    first = generate_codes(model, text, mask, 8, sampling=base, **kw)
    compiled = generate_window._cache_size()
    others = [
        generate_codes(model, text, mask, 8, sampling=dataclasses.replace(base, **change), **kw)
        for change in ({"temperature": 0.5}, {"top_p": 0.3}, {"cfg_coef": 7.0})
    ]
    assert generate_window._cache_size() == compiled
    assert all((first != o).any() for o in others)  # each value reaches the draw
    # and the traced values draw what the same numbers as constants draw, step 0 of row 0
    logits = jnp.asarray(rng.normal(size=(1, 4, CONFIG.card)), jnp.float32)
    key = jax.random.key(0)
    traced = jax.jit(lambda t, p: sample_logits(logits, key, t, 8, p, greedy=False, nucleus=True))
    np.testing.assert_array_equal(traced(0.5, 0.3), sample_logits(logits, key, 0.5, 8, 0.3))


def test_prefilled_prompt_and_context_match_step_by_step(model, rng):
    text, mask = _text(rng, 2)
    prompt = rng.integers(0, CONFIG.card, size=(2, 4, 6)).astype(np.int32)
    kw = dict(sampling=SamplingConfig(temperature=0.0, cfg_coef=3.0), window=12, stride=5)
    fast = generate_codes(model, text, mask, 30, prompt_BxKxP=prompt, **kw)
    slow = generate_codes(model, text, mask, 30, prompt_BxKxP=prompt, prefill=False, **kw)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast[..., :6], prompt)


def test_dropout_only_in_training(rng):
    model = _model(dataclasses.replace(CONFIG, dropout=0.5))
    text, mask = _text(rng, 2)
    tokens = rng.integers(0, CONFIG.card, size=(2, 4, 6)).astype(np.int32)
    plain = _model()  # the same weights (same seed), no dropout
    np.testing.assert_allclose(model(tokens, text, mask), plain(tokens, text, mask), atol=1e-6)
    a = model(tokens, text, mask, dropout_rng=jax.random.key(1))
    b = model(tokens, text, mask, dropout_rng=jax.random.key(2))
    assert float(jnp.abs(a - b).max()) > 1e-2
