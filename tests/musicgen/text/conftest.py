"""Shared by the text encoder tests: tiny random T5 folders written by transformers."""

import json
from pathlib import Path

import pytest

WORDS = tuple(
    (
        "a slow fast calm happy dark jazz rock pop techno ambient piano guitar bass drums "
        "strings organ synth with and the in minor major bpm track song loop beat upbeat "
        "mellow dusty warm bright groove solo chorus verse"
    ).split()
)
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in T5's vocabulary
VOCAB_SIZE = 64


def write_word_tokenizer(folder: Path) -> None:
    """A fast WordLevel tokenizer over `WORDS` that ends every caption with </s>, as T5's
    does. What is tested is that the encoder sees the ids the tokenizer gives."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    tokenizer.save(str(folder / "tokenizer.json"))


def write_tiny_t5(folder: Path, feed_forward_proj: str, seed: int = 0) -> Path:
    """A random 2-layer `T5EncoderModel` saved by `save_pretrained`, plus tokenizer.json."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB_SIZE,
        d_model=32,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        d_ff=64,
        feed_forward_proj=feed_forward_proj,
        relative_attention_num_buckets=8,  # few buckets: log-spaced ones show up at L = 16
        relative_attention_max_distance=12,
    )
    model = transformers.T5EncoderModel(config).eval()
    with torch.no_grad():  # T5's init leaves the norms at one; make them matter
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    write_word_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def t5_folders(tmp_path_factory) -> dict[str, Path]:
    """Tiny T5 folders by feed_forward_proj ("relu": T5, "gated-gelu": v1.1 / Flan-T5)."""
    return {
        proj: write_tiny_t5(tmp_path_factory.mktemp(f"t5_{proj}"), proj, seed)
        for seed, proj in enumerate(("relu", "gated-gelu"))
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
