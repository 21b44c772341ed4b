"""Frozen text encoders that condition the token LM: MiniLM (BERT) and T5 / Flan-T5.

`make_text_conditioner(TextConfig(...))` returns a `TextConditioner`, which turns
captions into fixed-length token embeddings (`TextEmbedding`) for cross-attention.
`conditioner.py` holds the interface, `bert.py` and `t5.py` the encoders, `encoders.py`
the registry by kind and `files.py` the folder and tokenizer helpers.
"""

from musicgen.text.conditioner import (
    TextConditioner,
    TextConfig,
    TextEmbedding,
    TextEncoderError,
)
from musicgen.text.encoders import make_text_conditioner, register_text_encoder

__all__ = [
    "TextConditioner",
    "TextConfig",
    "TextEmbedding",
    "TextEncoderError",
    "make_text_conditioner",
    "register_text_encoder",
]
