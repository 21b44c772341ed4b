"""Saved weights of every stage: one folder format, no pickle, and workdir loading.

A saved model is a folder with a JSON file (`format`, `version`, the model's config
and anything else the stage records) and a safetensors file holding every variable of
the model by its dotted path (`layers.0.fc1.kernel`). Files are written to a temporary
name and renamed, so a killed save never leaves a half-written model. The codec
(`codec.api`), the LM (`musicgen.lm.api`) and the refiner all save and load through
here; `load_workdir_weights` gives any stage the latest checkpoint of a `musicgen train`
workdir (EMA weights where the run kept them).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from mgcore.checkpoint import Checkpointer
from mgcore.config import from_dict, saved_config_dict, to_dict


class PretrainedError(ValueError):
    """A folder that does not hold the model asked for, or holds a broken one."""


def flatten_state(state: Any) -> dict[str, np.ndarray]:
    """Every array of an `nnx` state by its dotted path."""
    flat = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        flat[".".join(k for k in keys if k != "value")] = np.asarray(leaf)
    return flat


def unflatten_into(state: Any, flat: dict[str, np.ndarray], source: str) -> Any:
    """`state` (abstract or concrete) with every leaf taken from `flat`, strictly.

    Raises:
      PretrainedError: a variable is missing or has another shape.
    """
    leaves_with_path = jax.tree_util.tree_leaves_with_path(state)
    names = list(flatten_state(jax.tree.map(lambda x: np.zeros((), np.int8), state)))
    missing = [n for n in names if n not in flat]
    if missing:
        raise PretrainedError(f"{source} lacks {len(missing)} weights, e.g. {missing[:3]}")
    new_leaves = []
    for name, (_, leaf) in zip(names, leaves_with_path, strict=True):
        value = flat[name]
        if value.shape != leaf.shape:
            raise PretrainedError(
                f"{source}: weight {name} has shape {value.shape}, the config needs {leaf.shape}"
            )
        new_leaves.append(jnp.asarray(value, leaf.dtype))
    return jax.tree.unflatten(jax.tree.structure(state), new_leaves)


def _abstract(make: Callable[[], nnx.Module]) -> nnx.Module:
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(make)


def abstract_model(make: Callable[[], nnx.Module]) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, abstract state) of the module `make()` builds, allocating nothing."""
    return nnx.split(_abstract(make))


def fill_model(make: Callable[[], nnx.Module], flat: dict[str, np.ndarray], source: str):
    """The module `make()` builds, every variable taken from `flat` (by dotted path), and
    every array of `flat` used: the one strict fill of saved and imported weights.

    Raises:
      PretrainedError: a variable is missing or has another shape, or an array is unused.
    """
    graphdef, abstract = abstract_model(make)
    extra = sorted(set(flat) - set(flatten_state(abstract)))
    if extra:
        raise PretrainedError(f"{source}: {len(extra)} weights fill no variable, e.g. {extra[:3]}")
    return nnx.merge(graphdef, unflatten_into(abstract, flat, source))


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_folder(
    directory: str | os.PathLike, config_file: str, meta: dict, weights_file: str, state: Any
) -> Path:
    """Writes `meta` as JSON and `state`'s arrays as safetensors into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = flatten_state(state)
    metadata = {"format": meta["format"]}
    _replace(directory / weights_file, lambda tmp: save_file(flat, str(tmp), metadata=metadata))
    _replace(directory / config_file, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def read_folder(
    directory: str | os.PathLike, config_file: str, fmt: str, version: int, weights_file: str
) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON metadata and the flat weights of a `save_folder` folder, checked."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / config_file).read_text())
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{directory / config_file} is not valid JSON: {err}") from err
    except OSError as err:
        raise PretrainedError(f"{directory / config_file} can't be read: {err}") from err
    if meta.get("format") != fmt or meta.get("version") != version:
        raise PretrainedError(
            f"{directory / config_file} is not a {fmt} v{version} file "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    try:
        flat = load_file(str(directory / weights_file))
    except (FileNotFoundError, SafetensorError, OSError) as err:
        raise PretrainedError(f"{directory / weights_file} can't be read: {err}") from err
    return meta, flat


@dataclasses.dataclass(frozen=True)
class SavedFormat:
    """One stage's `save_pretrained` folder: a JSON file (`format`, `version`, `config`
    and the stage's extra fields) beside `model.safetensors`.

    Attributes:
      name: the `format` string, e.g. "musicgen-jax-codec".
      version: the folder version this code reads and writes.
      config_file: the JSON file's name, e.g. "codec.json".
      weights_file: the safetensors file's name.
    """

    name: str
    version: int
    config_file: str
    weights_file: str = "model.safetensors"

    def holds(self, directory: str | os.PathLike) -> bool:
        """Whether `directory` has this format's JSON file."""
        return (Path(directory) / self.config_file).exists()

    def save(self, directory: str | os.PathLike, state: Any, config: Any, **extra) -> Path:
        """Writes `config` (a dataclass), `extra` (JSON values) and `state` into `directory`."""
        meta = {"format": self.name, "version": self.version, "config": to_dict(config), **extra}
        return save_folder(directory, self.config_file, meta, self.weights_file, state)

    def load(self, directory: str | os.PathLike, config_type: type,
             make: Callable[[Any], nnx.Module]) -> tuple[nnx.Module, dict]:  # fmt: skip
        """(the model `make(config)` builds with the folder's weights, the JSON metadata).

        Raises:
          PretrainedError: a file is missing or broken, or the weights don't fit.
        """
        directory = Path(directory)
        meta, flat = read_folder(directory, self.config_file, self.name, self.version,
                                 self.weights_file)  # fmt: skip
        config = from_dict(config_type, meta["config"])
        return fill_model(lambda: make(config), flat, str(directory / self.weights_file)), meta


def is_workdir(directory: str | os.PathLike) -> bool:
    directory = Path(directory)
    return (directory / "checkpoints").is_dir() and (directory / "config.json").exists()


def load_workdir_model(
    directory: str | os.PathLike,
    make: Callable[[dict], nnx.Module],
    part: tuple[str, ...] = (),
    *,
    frozen: bool = False,
) -> tuple[dict, nnx.Module]:
    """The model of a `musicgen train` workdir's latest checkpoint, for inference.

    Reads the workdir's `config.json` as a plain dict and restores only the model's
    weights (no optimiser state), so loading imports no training family.

    Args:
      directory: the workdir.
      make: builds the stage's model from the saved experiment config (a dict), e.g.
        `lambda c: CodecModel(from_dict(CodecConfig, c["model"]), rngs=nnx.Rngs(0))`.
      part: where that model sits inside what the trainer trained (the codec's
        `("generator",)` beside its discriminators); () for the whole.
      frozen: the part was held fixed in training (the refiner's codec), so all its
        variables are in the checkpoint's non-trained state rather than its parameters.

    Returns:
      (the experiment config dict, the model) with the EMA weights where the run kept one.
    """
    directory = Path(directory)
    config = saved_config_dict(directory / "config.json")
    try:
        graphdef, params, rest = nnx.split(_abstract(lambda: make(config)), nnx.Param, ...)
    except (KeyError, TypeError, ValueError) as err:
        raise PretrainedError(f"{directory} is not a workdir of this kind of model: {err}") from err
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def nest(state) -> dict:
        tree = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                            state)  # fmt: skip
        for key in reversed(part):
            tree = {key: tree}
        return tree

    def unnest(tree: dict):
        for key in part:
            tree = tree[key]
        return tree

    with Checkpointer(directory / "checkpoints", save_every=1) as ckpt:
        if ckpt.latest_step() is None:
            raise PretrainedError(f"{directory}/checkpoints holds no finished checkpoint yet")
        if frozen:
            state = nnx.merge_state(params, rest)
            return config, nnx.merge(
                graphdef, unnest(ckpt.restore_part({"rest": nest(state)})["rest"])
            )
        weights = "ema" if ckpt.saved_tree().get("ema") is not None else "params"
        wanted = {weights: nest(params)}
        if jax.tree.leaves(rest):
            wanted["rest"] = nest(rest)
        restored = ckpt.restore_part(wanted)
    params = unnest(restored[weights])
    rest = unnest(restored["rest"]) if "rest" in restored else rest
    return config, nnx.merge(graphdef, params, rest)


def to_float16(path: str | os.PathLike) -> Path:
    """Rewrites a safetensors file with its float32 arrays as float16 (half the bytes; the
    loaders cast back to the model's dtype). Atomic, like every save here."""
    path = Path(path)
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
    flat = {k: v.astype(np.float16) if v.dtype == np.float32 else v
            for k, v in load_file(str(path)).items()}  # fmt: skip
    _replace(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))
    return path
