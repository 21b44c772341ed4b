"""A LoRA adapter on disk: the low-rank weights of a fine-tune, apart from their base LM.

`save_adapter` writes `adapter.json` (format, version, the adapted LM's config with its
`lora` section, and the base LM's fingerprint) beside `adapter.safetensors` (only the
`lora_a`/`lora_b` arrays: for the reference LM at rank 8, 0.43 MB in float16 beside its
13 MB). `apply_adapter` puts one onto a base LM: it refuses, in one line, an adapter
whose base has another shape or other weights (the fingerprint: the CRC-32 of every base
weight as loaded, in float32), and by default merges it into the weights (`merge`), so
sampling runs at the base model's speed.

A pipeline folder names its adapter in `pipeline.json` (`adapter`), and
`MusicGen.from_pretrained(folder, adapter=...)` takes another.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgcore.weights import (
    PretrainedError,
    SavedFormat,
    abstract_model,
    checksum,
    fill_model,
    flatten_state,
    read_weights,
)
from musicgen.lm import lora
from musicgen.lm.model import LMConfig, MusicGenLM

SAVED = SavedFormat("musicgen-jax-lm-adapter", 1, "adapter.json", "adapter.safetensors")
# Fields of the config that change how a model runs, not what it computes.
_RUNTIME = ("attention", "dropout", "lora")


@dataclasses.dataclass(frozen=True)
class AdapterFields:
    """What `adapter.json` holds beside the config: the base LM's fingerprint and how
    the adapter was trained (for the record)."""

    base_fingerprint: str
    trainable: int = 0


def merge(model: nnx.Module, config) -> nnx.Module:
    """The model without adapters whose weights hold them: `W + (alpha / r) A B`.

    Args:
      model: an LM with adapters (its kernels `nnx.Param`s or `FrozenParam`s).
      config: its `LMConfig`; the merged model is built with `lora` rank 0.
    """
    merged = {}
    for path, module in lora.adapted(model):
        update = module.lora_a[...] @ module.lora_b[...] * module.lora_scale
        kernel = module.kernel[...]
        merged[(*path, "kernel")] = (kernel + update.astype(kernel.dtype)).astype(kernel.dtype)
    plain = dataclasses.replace(config, lora=lora.LoRAConfig())
    graphdef, abstract = abstract_model(lambda: MusicGenLM(plain, rngs=nnx.Rngs(0)))
    values = {
        path: var.get_value() for path, var in nnx.to_flat_state(nnx.state(model))
        if path[-1] not in ("lora_a", "lora_b")
    }  # fmt: skip
    values.update(merged)
    flat = [
        (path, var.replace(jnp.asarray(values[path], var.get_value().dtype)))
        for path, var in nnx.to_flat_state(abstract)
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def fingerprint(model: MusicGenLM) -> str:
    """The CRC-32 of the model's weights other than adapters, each in float32."""
    flat = flatten_state(nnx.state(model))
    base = {
        k: v.astype(np.float32) if v.dtype.kind == "f" else v
        for k, v in flat.items()
        if not k.endswith(("lora_a", "lora_b"))
    }
    return checksum(base)


def same_architecture(a: LMConfig, b: LMConfig) -> list[str]:
    """The fields (other than how a model runs) in which two LM configs differ."""
    return [
        f.name
        for f in dataclasses.fields(LMConfig)
        if f.name not in _RUNTIME and getattr(a, f.name) != getattr(b, f.name)
    ]


def save_adapter(directory: str | os.PathLike, model: MusicGenLM, base_fingerprint: str) -> Path:
    """Writes the adapters of `model` (an LM with `lora`) into `directory`."""
    state = nnx.state(model, nnx.LoRAParam)
    return SAVED.save(directory, state, model.config, base_fingerprint=base_fingerprint,
                      trainable=lora.count(model))  # fmt: skip


def read_adapter(directory: str | os.PathLike) -> tuple[LMConfig, AdapterFields]:
    """(the adapted LM's config, the fields) of an adapter folder, checked, building
    nothing.

    Raises:
      PretrainedError: not an adapter folder, or a broken one (one line).
    """
    directory = Path(directory)
    if not SAVED.holds(directory):
        raise PretrainedError(f"{directory} holds no {SAVED.config_file}; name an adapter "
                              "folder (musicgen finetune writes one)")  # fmt: skip
    config, fields = SAVED.read(directory, LMConfig, AdapterFields)
    if not config.lora.rank:
        raise PretrainedError(f"{directory / SAVED.config_file}: config.lora.rank is 0")
    return config, fields


def check_fits(directory: str | os.PathLike, base: LMConfig) -> LMConfig:
    """The adapter's config, after checking it was made for an LM shaped like `base`."""
    config, _ = read_adapter(directory)
    differ = same_architecture(config, base)
    if differ:
        raise PretrainedError(
            f"{directory} is an adapter for another model: its LM differs from this one in "
            f"{', '.join(differ)}; use the adapter with the model it was trained on"
        )
    return config


def apply_adapter(base: MusicGenLM, directory: str | os.PathLike, *, merge_adapter: bool = True):
    """`base` with the adapter of `directory`: merged into its weights (default), or as
    separate low-rank weights (`merge_adapter=False`, for training further or checking).

    Raises:
      PretrainedError: the adapter is broken, or was trained on another model (another
        shape, or the same shape with other weights).
    """
    directory = Path(directory)
    config = check_fits(directory, base.config)
    _, fields = read_adapter(directory)
    have = fingerprint(base)
    if have != fields.base_fingerprint:
        raise PretrainedError(
            f"{directory} is an adapter for another model: it was trained on an LM with "
            f"weights {fields.base_fingerprint}, this LM's are {have} (same shape, other "
            "weights); use the adapter with the model it was trained on"
        )
    adapter = read_weights(directory / SAVED.weights_file)
    flat = {**flatten_state(nnx.state(base)), **adapter}
    config = dataclasses.replace(base.config, lora=config.lora)
    model = fill_model(lambda: MusicGenLM(config, rngs=nnx.Rngs(0)), flat,
                       str(directory / SAVED.weights_file))  # fmt: skip
    return merge(model, config) if merge_adapter else model
