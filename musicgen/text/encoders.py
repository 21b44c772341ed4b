"""The text encoders by name: `make_text_conditioner(TextConfig(kind=...))`.

"minilm" is all-MiniLM-L6-v2 (`musicgen/text/bert.py`), "t5" a T5 / Flan-T5 encoder
(`musicgen/text/t5.py`); `register_text_encoder` adds a kind. The registry is apart from
`conditioner.py` because the encoders import the conditioner's types: this module imports
all three, and no import goes in a circle.
"""

from __future__ import annotations

from collections.abc import Callable

from musicgen.text.bert import load_minilm
from musicgen.text.conditioner import TextConditioner, TextConfig, TextEncoderError
from musicgen.text.t5 import load_t5_encoder

Builder = Callable[[TextConfig], TextConditioner]
_BUILDERS: dict[str, Builder] = {}


def register_text_encoder(kind: str, builder: Builder) -> None:
    """Makes `make_text_conditioner` build `TextConfig(kind=kind)` with `builder`.

    Args:
      kind: the encoder's name in `TextConfig.kind`.
      builder: builds the conditioner from the config.
    """
    _BUILDERS[kind] = builder


def make_text_conditioner(config: TextConfig, dim: int | None = None) -> TextConditioner:
    """The conditioner of `config.kind`, with the weights of `config.path`.

    Args:
      config: which encoder, where its files are and how many tokens per caption.
      dim: the width a model was built for (`text_dim`); a `ValueError` if the encoder's
        differs (None: any).

    Raises:
      TextEncoderError: an unknown kind, or the encoder's files are missing or unreadable.
    """
    if config.kind not in _BUILDERS:
        raise TextEncoderError(
            f"unknown text encoder kind {config.kind!r}; use one of {sorted(_BUILDERS)}"
        )
    conditioner = _BUILDERS[config.kind](config)
    if dim is not None and conditioner.dim != dim:
        raise ValueError(
            f"model.text_dim is {dim} but the {config.kind} encoder gives {conditioner.dim}"
        )
    return conditioner


def _build_minilm(config: TextConfig) -> TextConditioner:
    model, tokenizer = load_minilm(config.path, max_length=config.max_length)
    return TextConditioner(
        model,
        tokenizer,
        max_length=config.max_length,
        pad_id=model.config.pad_token_id,
        cache_size=config.cache_size,
    )


def _build_t5(config: TextConfig) -> TextConditioner:
    if config.path is None:
        raise TextEncoderError(
            "TextConfig(kind='t5') needs path=<a local Hugging Face T5 or Flan-T5 folder>"
        )
    model, tokenizer = load_t5_encoder(config.path)
    return TextConditioner(
        model,
        tokenizer,
        max_length=config.max_length,
        pad_id=model.config.pad_token_id,
        cache_size=config.cache_size,
    )


register_text_encoder("minilm", _build_minilm)
register_text_encoder("t5", _build_t5)
