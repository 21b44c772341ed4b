"""all-MiniLM-L6-v2 against transformers' `BertModel` with the real weights, offline."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from musicgen.text import TextConfig, TextEncoderError, make_text_conditioner
from musicgen.text.bert import load_minilm, minilm_folder

WORDS = (
    "upbeat mellow dusty lo-fi hip-hop techno house jazz trio with brushed drums, a walking "
    "bass and Rhodes piano; 128 BPM in A minor. Café-style bossa nova: nylon guitar, shaker "
    "and flute! An orchestral film score building to a crescendo with brass and timpani"
).split()


@pytest.fixture(scope="module")
def minilm():
    """Our conditioner and transformers' model and tokenizer, from the same package files."""
    folder = str(minilm_folder())
    return (
        make_text_conditioner(TextConfig(kind="minilm")),
        transformers.BertModel.from_pretrained(folder).eval(),
        transformers.AutoTokenizer.from_pretrained(folder),
    )


def _captions(rng: np.random.Generator) -> list[str]:
    lengths = [*rng.integers(2, 30, 4), 90]  # the last one overflows 64 tokens
    return [" ".join(rng.choice(WORDS, n)) for n in lengths]


def test_config_is_minilm(minilm):
    conditioner, torch_model, _ = minilm
    assert (conditioner.dim, conditioner.max_length) == (384, 64)
    config = nnx.merge(conditioner.graphdef, conditioner.state).config
    assert (config.num_layers, config.num_heads, config.vocab_size) == (6, 12, 30522)
    assert torch_model.config.hidden_size == 384


def test_token_ids_match_transformers(minilm, rng):
    conditioner, _, tokenizer = minilm
    texts = [*_captions(rng), "", "  Ünïcödé  spaces\tand\nTABS  "]
    ids_BxL, mask_BxL = conditioner.tokenize(texts)
    expected = tokenizer(texts, padding="max_length", max_length=64, truncation=True)
    np.testing.assert_array_equal(ids_BxL, expected["input_ids"])
    np.testing.assert_array_equal(mask_BxL, expected["attention_mask"])
    assert mask_BxL[4].all() and ids_BxL[4, -1] == 102  # truncated, [SEP] kept
    np.testing.assert_array_equal(ids_BxL[5, :3], [101, 102, 0])  # "" is [CLS] [SEP]


def test_hidden_states_match_transformers(minilm, rng):
    conditioner, torch_model, _ = minilm
    texts = [*_captions(rng), ""]
    ids_BxL, mask_BxL = conditioner.tokenize(texts)
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.tensor(ids_BxL, dtype=torch.long),
            attention_mask=torch.tensor(mask_BxL, dtype=torch.long),
        ).last_hidden_state.numpy()
    emb = conditioner(texts)
    mask_BxL[-1] = False  # the empty caption is a dropped condition
    np.testing.assert_array_equal(emb.mask_BxL, mask_BxL)
    assert emb.hidden_BxLxD.shape == (6, 64, 384) and emb.hidden_BxLxD.dtype == np.float32
    # At the tokens; padded positions are zero in ours and masked out of theirs.
    assert np.abs(emb.hidden_BxLxD - expected * mask_BxL[..., None]).max() < 1e-5
    assert np.abs(expected).max() > 1.0  # a real comparison, not of near-zeros


def test_errors(tmp_path):
    with pytest.raises(TextEncoderError, match="exceeds BERT's 512 positions"):
        load_minilm(max_length=513)
    with pytest.raises(TextEncoderError, match="does not exist"):
        make_text_conditioner(TextConfig(kind="minilm", path=str(tmp_path / "nowhere")))
    with pytest.raises(TextEncoderError, match=r"config\.json is missing"):
        make_text_conditioner(TextConfig(kind="minilm", path=str(tmp_path)))
