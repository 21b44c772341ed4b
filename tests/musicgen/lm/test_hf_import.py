"""Imported Hugging Face MusicGen checkpoints reproduce transformers: logits, greedy codes,
guidance, audio.

One tiny random `MusicgenForConditionalGeneration` (T5 48 wide, EnCodec with 4 codebooks
of 64 at "32 kHz", a 2-layer decoder 32 wide, so `enc_to_dec_proj` exists as in the
published models) is built by transformers from a fixed seed, its weights pushed away
from initialisation (decoder weights of unit scale, so logits spread and greedy choices
are far from ties; norms, biases and codebooks random), saved with `save_pretrained`
next to a word-level tokenizer.json (no download), and loaded with `load_hf_musicgen`.
A stereo `MusicgenForCausalLM` (8 codebooks, delays [0, 0, 1, 1, 2, 2, 3, 3]) checks the
stereo layout and the in-memory import with an identity text projection.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from codec.api import Codec, StereoCodec, load_codec  # noqa: E402
from codec.hf_import import is_hf_musicgen_folder, load_hf_musicgen_codec  # noqa: E402
from mgcore.weights import PretrainedError, flatten_state  # noqa: E402
from musicgen.lm.api import LanguageModel, load_hf_musicgen  # noqa: E402
from musicgen.lm.hf_import import lm_from_hf_model, lm_from_hf_state  # noqa: E402
from musicgen.lm.patterns import Pattern  # noqa: E402
from musicgen.lm.sampling import SamplingConfig, generate_codes, known_steps  # noqa: E402
from tests.musicgen.lm.hf_tiny import (  # noqa: E402
    CARD,
    MAX_LENGTH,
    decoder_config,
    make_hf_musicgen,
    randomize,
)

TOL = 1e-4
TEXTS = ["calm jazz piano with warm bass and drums", "techno loop"]
NEW_TOKENS = 14  # transformers' max_new_tokens: 14 - 3 = 11 frames of 4 delayed codebooks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(transformers model, its folder, our LanguageModel, our Codec), built once."""
    folder = tmp_path_factory.mktemp("musicgen_hf")
    hf = make_hf_musicgen(folder)
    lm, codec = load_hf_musicgen(folder)
    return hf, folder, lm, codec


def _hf_text(lm: LanguageModel, texts):
    """transformers' inputs for `texts`: the same tokenizer, padded to the longest."""
    ids = [lm.conditioner.tokenizer.encode(t).ids for t in texts]
    length = max(map(len, ids))
    ids_BxL = torch.tensor([i + [0] * (length - len(i)) for i in ids])
    mask_BxL = (torch.arange(length)[None] < torch.tensor([len(i) for i in ids])[:, None]).long()
    return ids_BxL, mask_BxL


def _logits(model, inputs_BxKxS, text_BxLxD, text_mask_BxL) -> np.ndarray:
    """Our logits `[B, K, S, card]`, compiled (quicker than op by op)."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, *args: nnx.merge(graphdef, state)(*args))
    args = (inputs_BxKxS, text_BxLxD, text_mask_BxL)
    return np.asarray(forward(state, *(jnp.asarray(a) for a in args)))


def _greedy_reference(hf, delay_mask, enc) -> np.ndarray:
    """transformers' greedy decoding of a `MusicgenForCausalLM`, written out (its
    `generate` fails on encoder states in this version): argmax of the last logits, the
    delay mask's special tokens forced, then the specials dropped, as `generate` does."""
    seq = delay_mask[:, :1]
    for step in range(1, delay_mask.shape[1]):
        choice = hf(input_ids=seq, **enc).logits[:, -1].argmax(-1)
        forced = delay_mask[:, step]
        seq = torch.cat([seq, torch.where(forced == -1, choice, forced)[:, None]], dim=1)
    b = seq.shape[0] // hf.config.num_codebooks
    return seq[seq != CARD].reshape(b, hf.config.num_codebooks, -1).numpy()


def _delayed_inputs(pattern: Pattern, codes_BxKxF: np.ndarray) -> np.ndarray:
    """The LM's input steps: the all-special start step, then the interleaved codes."""
    seq_BxKxS = pattern.interleave(codes_BxKxF, CARD)
    start = np.full((*seq_BxKxS.shape[:2], 1), CARD)
    return np.concatenate([start, seq_BxKxS[..., :-1]], axis=-1)


def test_folder_is_recognised(checkpoint, tmp_path):
    _, folder, lm, _ = checkpoint
    assert is_hf_musicgen_folder(folder)
    assert not is_hf_musicgen_folder(tmp_path)
    config = lm.config
    assert (config.num_codebooks, config.card, config.layers, config.width) == (4, CARD, 2, 32)
    assert config.text_dim == 48 and config.pattern.delays == (0, 1, 2, 3)
    assert lm.frame_rate == 1000.0 and lm.window == MAX_LENGTH


def test_logits_and_text_states_match_transformers(checkpoint, rng):
    hf, _, lm, _ = checkpoint
    ids_BxL, mask_BxL = _hf_text(lm, TEXTS)
    text = lm.conditioner(TEXTS)
    codes_BxKxF = rng.integers(0, CARD, (2, 4, 10))
    inputs_BxKxS = _delayed_inputs(Pattern(lm.config.pattern, 4), codes_BxKxF)
    b, k, s = inputs_BxKxS.shape
    with torch.no_grad():
        t5 = hf.text_encoder(input_ids=ids_BxL, attention_mask=mask_BxL).last_hidden_state
        out = hf(
            input_ids=ids_BxL,
            attention_mask=mask_BxL,
            decoder_input_ids=torch.tensor(inputs_BxKxS.reshape(b * k, s)),
        )
    theirs_BxKxSxV = out.logits.numpy().reshape(b, k, s, CARD)
    ours_BxKxSxV = _logits(lm.model, inputs_BxKxS, text.hidden_BxLxD, text.mask_BxL)
    t5_BxLxD = (t5 * mask_BxL[..., None]).numpy()
    assert np.abs(text.hidden_BxLxD[:, : t5_BxLxD.shape[1]] - t5_BxLxD).max() < 1e-5
    assert np.abs(theirs_BxKxSxV).max() > 1.0  # logits spread: greedy choices are clear
    assert np.abs(ours_BxKxSxV - theirs_BxKxSxV).max() < TOL


@pytest.fixture
def hf_codes(checkpoint):
    """transformers' `generate` returns audio; this catches the codes it decodes."""
    hf = checkpoint[0]
    caught = []
    decode = hf.audio_encoder.decode

    def spy(audio_codes, *args, **kwargs):
        caught.append(audio_codes[0].numpy())
        return decode(audio_codes, *args, **kwargs)

    hf.audio_encoder.decode = spy
    yield caught
    hf.audio_encoder.decode = decode


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_greedy_generation_and_audio_match_transformers(checkpoint, hf_codes, cfg):
    """Greedy codes are identical, with and without guidance (both use zero text states
    under a zero mask for the unconditional rows); decoded audio agrees within TOL."""
    hf, _, lm, codec = checkpoint
    ids_BxL, mask_BxL = _hf_text(lm, TEXTS)
    with torch.no_grad():
        audio_BxCxT = hf.generate(
            input_ids=ids_BxL,
            attention_mask=mask_BxL,
            do_sample=False,
            guidance_scale=cfg if cfg > 1 else None,
            max_new_tokens=NEW_TOKENS,
        ).numpy()
    (theirs_BxKxF,) = hf_codes
    assert theirs_BxKxF.shape == (2, 4, NEW_TOKENS - 3)
    sampling = SamplingConfig(temperature=0.0, cfg_coef=cfg)
    ours_BxKxF = lm.generate(TEXTS, theirs_BxKxF.shape[-1], sampling=sampling)
    np.testing.assert_array_equal(ours_BxKxF, theirs_BxKxF)
    wav_BxCxT = codec.decode(ours_BxKxF)
    assert wav_BxCxT.shape == audio_BxCxT.shape
    assert np.abs(wav_BxCxT - audio_BxCxT).max() < TOL


def test_in_memory_import_equals_the_folder_import(checkpoint):
    hf, _, lm, _ = checkpoint
    ours = flatten_state(nnx.state(lm.model))
    converted = flatten_state(nnx.state(lm_from_hf_model(hf)))
    assert ours.keys() == converted.keys()
    for name in ours:
        np.testing.assert_array_equal(converted[name], ours[name], err_msg=name)


def test_the_codec_alone_is_the_pipeline_codec(checkpoint):
    _, folder, _, codec = checkpoint
    ours = flatten_state(nnx.state(codec.model))
    for alone in (Codec(load_hf_musicgen_codec(folder)), load_codec(str(folder))):
        assert alone.config == codec.config
        for name, value in flatten_state(nnx.state(alone.model)).items():
            np.testing.assert_array_equal(value, ours[name], err_msg=name)


def test_from_pretrained_and_save_round_trip(checkpoint, tmp_path):
    _, folder, lm, _ = checkpoint
    loaded = LanguageModel.from_pretrained(folder)
    saved = LanguageModel.from_pretrained(loaded.save_pretrained(tmp_path / "lm"))
    # The saved folder carries its own copy of the T5 encoder (paths stay inside a folder).
    assert saved.text_config.kind == "t5" and saved.text_config.path.startswith(
        str(tmp_path / "lm")
    )
    assert saved.text_config.max_length == lm.text_config.max_length
    assert (saved.window_seconds, saved.frame_rate) == (lm.window_seconds, lm.frame_rate)
    ours = flatten_state(nnx.state(lm.model))
    for model in (loaded.model, saved.model):
        for name, value in flatten_state(nnx.state(model)).items():
            np.testing.assert_array_equal(value, ours[name], err_msg=name)
    # The saved LM names the MusicGen folder as its T5: the text_encoder part is rebuilt.
    np.testing.assert_array_equal(
        saved.conditioner(TEXTS).hidden_BxLxD, lm.conditioner(TEXTS).hidden_BxLxD
    )
    sampling = SamplingConfig(temperature=0.0, cfg_coef=1.0)
    np.testing.assert_array_equal(
        saved.generate(TEXTS, 11, sampling=sampling), lm.generate(TEXTS, 11, sampling=sampling)
    )


def test_stereo_layout_and_causal_lm_import(checkpoint, rng):
    """Stereo: delays [0, 0, 1, 1, 2, 2, 3, 3] force the steps transformers' delay mask
    forces; logits and greedy codes of a `MusicgenForCausalLM` (identity text projection)
    match; even codebooks decode to the left channel, odd ones to the right."""
    hf_full, _, _, codec = checkpoint
    torch.manual_seed(1)
    hf = transformers.MusicgenForCausalLM(decoder_config(8, 2)).eval()
    randomize(hf, seed=1)
    lm = lm_from_hf_model(hf)
    assert lm.config.pattern.delays == (0, 0, 1, 1, 2, 2, 3, 3) and lm.config.text_dim == 32
    pattern = Pattern(lm.config.pattern, 8)
    b, frames = 2, NEW_TOKENS - 3
    start = torch.full((b * 8, 1), CARD)
    _, mask = hf.build_delay_pattern_mask(start, pad_token_id=CARD, max_length=NEW_TOKENS + 1)
    np.testing.assert_array_equal(
        mask.numpy().reshape(b, 8, -1)[..., 1:], known_steps(pattern, None, b, frames, CARD)
    )

    text_BxLxD = rng.standard_normal((b, 5, 32)).astype(np.float32)
    text_mask_BxL = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    text_BxLxD *= text_mask_BxL[..., None]
    inputs_BxKxS = _delayed_inputs(pattern, rng.integers(0, CARD, (b, 8, 6)))
    s = inputs_BxKxS.shape[-1]
    enc = dict(
        encoder_hidden_states=torch.tensor(text_BxLxD),
        encoder_attention_mask=torch.tensor(text_mask_BxL),
    )
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor(inputs_BxKxS.reshape(b * 8, s)), **enc).logits
        theirs_BxKxF = _greedy_reference(hf, mask, enc)
    ours = _logits(lm, inputs_BxKxS, text_BxLxD, text_mask_BxL)
    assert np.abs(ours - logits.numpy().reshape(b, 8, s, CARD)).max() < TOL
    greedy = SamplingConfig(temperature=0.0, cfg_coef=1.0)
    ours_BxKxF = generate_codes(
        lm, text_BxLxD, text_mask_BxL, frames, sampling=greedy, window=frames, stride=frames
    )
    np.testing.assert_array_equal(ours_BxKxF, theirs_BxKxF)

    stereo = StereoCodec(codec)
    codes_BxKxF = rng.integers(0, CARD, (b, 8, frames))  # as decoded above: no new compile
    with torch.no_grad():
        left, right = (
            hf_full.audio_encoder.decode(
                torch.tensor(codes_BxKxF[None, :, c::2]), [None] * b
            ).audio_values.numpy()
            for c in (0, 1)
        )
    assert np.abs(stereo.decode(codes_BxKxF) - np.concatenate([left, right], 1)).max() < TOL


def test_strict_import_names_the_offenders(checkpoint):
    hf = checkpoint[0]
    config = hf.config.decoder.to_dict()
    tensors = {n: v.numpy() for n, v in hf.state_dict().items() if n.startswith("decoder.")}
    args = dict(prefix="decoder.", text_hidden=32, enc_to_dec=None)
    lm_from_hf_state(config, tensors, **args)  # the decoder alone: identity projection

    missing = dict(tensors)
    del missing["decoder.lm_heads.3.weight"]
    with pytest.raises(PretrainedError, match=r"lm_heads\.3\.weight"):
        lm_from_hf_state(config, missing, **args)
    extra = {**tensors, "decoder.model.decoder.layers.2.fc1.weight": np.zeros((64, 32))}
    with pytest.raises(PretrainedError, match=r"layers\.2\.fc1"):
        lm_from_hf_state(config, extra, **args)
    with pytest.raises(PretrainedError, match="pad_token_id is 0"):
        lm_from_hf_state({**config, "pad_token_id": 0}, tensors, **args)
    with pytest.raises(PretrainedError, match="no enc_to_dec_proj"):
        lm_from_hf_state(config, tensors, **{**args, "text_hidden": 48})


def test_folder_errors(checkpoint, tmp_path):
    _, folder, _, _ = checkpoint
    bad = tmp_path / "melody"
    bad.mkdir()
    config = json.loads((Path(folder) / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "musicgen_melody"}))
    with pytest.raises(PretrainedError, match="musicgen_melody"):
        load_hf_musicgen(bad)
    with pytest.raises(PretrainedError, match="not a folder"):
        load_hf_musicgen(tmp_path / "nowhere")


def test_a_pipeline_assembles_from_the_folder(checkpoint):
    """`MusicGen.from_pretrained(hf_folder)`: the imported LM and EnCodec, at 44.1 kHz."""
    from mgcore.audio import resample
    from musicgen.pipeline import MusicGen

    _, folder, lm, codec = checkpoint
    mg = MusicGen.from_pretrained(folder)
    assert mg.refiner is None and mg.codec.sample_rate == 32_000
    audio = mg.generate(TEXTS[:1], 0.02, temperature=0.0, refine=False, progress=False)
    greedy = SamplingConfig(temperature=0.0, cfg_coef=mg.sampling.cfg_coef)
    codes = lm.generate(TEXTS[:1], round(0.02 * codec.frame_rate), sampling=greedy)
    want = resample(codec.decode(codes, 640)[0], 32_000, 44_100)[..., : round(0.02 * 44_100)]
    assert audio.shape == (1, 1, round(0.02 * 44_100))
    np.testing.assert_allclose(audio[0], want, atol=1e-6)
