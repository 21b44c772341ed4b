"""Saved weights of every stage: one folder format, no pickle, and workdir loading.

A saved model is a folder with a JSON file (`format`, `version`, the model's config
and anything else the stage records) and a safetensors file holding every variable of
the model by its dotted path (`layers.0.fc1.kernel`). Files are written to a temporary
name and renamed, so a killed save never leaves a half-written model. The codec
(`codec.api`), the LM (`musicgen.lm_api`) and the refiner all save and load through
here; `load_workdir_weights` gives any stage the latest checkpoint of a `musicgen train`
workdir (EMA weights where the run kept them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_folder(
    directory: str | os.PathLike, config_file: str, meta: dict, weights_file: str, state: Any
) -> Path:
    """Writes `meta` as JSON and `state`'s arrays as safetensors into `directory`."""
    from safetensors.numpy import save_file

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
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

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


def is_workdir(directory: str | os.PathLike) -> bool:
    directory = Path(directory)
    return (directory / "checkpoints").is_dir() and (directory / "config.json").exists()


def load_workdir_weights(directory: str | os.PathLike, experiment_type: type, make_family):
    """The experiment and model of a `musicgen train` workdir's latest checkpoint.

    Args:
      directory: the workdir.
      experiment_type: the root config class the run must have (else `PretrainedError`).
      make_family: `config -> Family`, to plan the state the checkpoint restores into.

    Returns:
      (experiment, model) with the EMA weights when the run kept an EMA.
    """
    from flax import nnx

    from mgcore.checkpoint import Checkpointer
    from mgcore.config import load_saved_config
    from mgcore.sharding import MeshConfig, make_mesh
    from mgcore.trainer import init_state

    directory = Path(directory)
    experiment = load_saved_config(directory / "config.json")
    if not isinstance(experiment, experiment_type):
        raise PretrainedError(
            f"{directory} is a workdir of a {type(experiment).__name__} run, "
            f"not of a {experiment_type.__name__} run"
        )
    family = make_family(experiment)
    mesh = make_mesh(MeshConfig(), jax.devices()[:1])
    plan = init_state(family, experiment.optimizer, experiment.train, mesh)
    with Checkpointer(directory / "checkpoints", save_every=1) as ckpt:
        if ckpt.latest_step() is None:
            raise PretrainedError(f"{directory}/checkpoints holds no finished checkpoint yet")
        state, _ = ckpt.restore(abstract_state=plan.abstract)
    weights = state["ema"] if state["ema"] is not None else state["params"]
    return experiment, nnx.merge(plan.graphdef, weights, state["rest"])


def to_float16(path: str | os.PathLike) -> Path:
    """Rewrites a safetensors file with its float32 arrays as float16 (half the bytes; the
    loaders cast back to the model's dtype). Atomic, like every save here."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    path = Path(path)
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
    flat = {k: v.astype(np.float16) if v.dtype == np.float32 else v
            for k, v in load_file(str(path)).items()}  # fmt: skip
    _replace(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))
    return path
