"""Saved weights of every stage: one folder format, no pickle, and workdir loading.

A saved model is a folder with a JSON file (`format`, `version`, the model's config
and anything else the stage records) and a safetensors file holding every variable of
the model by its dotted path (`layers.0.fc1.kernel`). Files are written to a temporary
name and renamed, so a killed save never leaves a half-written model. The codec
(`codec.api`), the LM (`musicgen.lm.api`) and the refiner all save and load through
here; `load_workdir_model` gives any stage the latest checkpoint of a `musicgen train`
workdir (EMA weights where the run kept them).

Nothing in a folder is trusted: its JSON is parsed into the stage's typed, range-checked
configs before any model is built (`SavedFormat.read`), a path it names must stay inside
it (`inside`), and every tensor loaded is checked finite (`check_finite`) and, where the
file records one, against its CRC-32 (`checksum`), so a file with flipped bytes is
refused instead of "generating" from broken weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mgcore.checkpoint import Checkpointer
from mgcore.config import saved_config_dict, to_dict
from mgcore.config_types import from_mapping

# Keys of every saved folder's JSON beside the stage's own fields.
_ENVELOPE = ("format", "version", "config")
# A config file is a few kilobytes; a larger one is not read into memory.
MAX_JSON_BYTES = 16 << 20
# The safetensors metadata key of the weights' CRC-32 (`checksum`).
CHECKSUM_KEY = "crc32"


class PretrainedError(ValueError):
    """A folder that does not hold the model asked for, or holds a broken one (one line)."""

    def __init__(self, message: str):
        # One line always: messages quote files' contents and other errors' text.
        super().__init__(" ".join(str(message).split()))


def inside(directory: str | os.PathLike, name: str | os.PathLike, where: str) -> Path:
    """`name` (a path a file in `directory` holds) resolved against `directory`.

    Args:
      directory: the folder the file belongs to.
      name: the path it names, relative to the folder.
      where: the file and field, for the message (e.g. "lm/lm.json field text.path").

    Raises:
      PretrainedError: the path leads outside the folder (`..`, an absolute path
        elsewhere, a link out).
    """
    root = Path(directory).resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise PretrainedError(
            f"{where} names {str(name)!r}, which is outside {directory}; a saved folder may "
            "only name files inside itself"
        )
    return path


def check_finite(flat: dict[str, Any], source: str, error: type[PretrainedError] = PretrainedError):
    """Raises `error` naming the first float tensor of `flat` with a NaN or an infinity.

    Args:
      flat: arrays by name.
      source: the file they came from, for the message.
      error: the error class raised.
    """
    for name, array in flat.items():
        array = np.asarray(array)
        if array.dtype.kind not in "fc" and array.dtype.name != "bfloat16":
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad = array.size - int(np.count_nonzero(finite))
            raise error(
                f"{source}: tensor {name!r} holds {bad} NaN or infinite values of "
                f"{array.size}; the file is corrupt or the model diverged, save it again"
            )


def checksum(flat: dict[str, np.ndarray]) -> str:
    """The CRC-32 of every array's name, dtype, shape and bytes, in name order (hex).

    Written into the safetensors metadata by `save_folder` and checked on load: it finds
    flipped bytes that still parse as finite numbers, which no value check can.

    Args:
      flat: arrays by name.
    """
    crc = 0
    for name in sorted(flat):
        array = np.ascontiguousarray(flat[name])
        crc = zlib.crc32(f"{name}:{array.dtype.str}:{array.shape}".encode(), crc)
        crc = zlib.crc32(memoryview(array.reshape(-1).view(np.uint8)), crc)
    return f"{crc:08x}"


def dotted_name(path) -> str:
    """The dotted name (`layers.0.fc1.kernel`) of a leaf's pytree path in an `nnx` state."""
    keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return ".".join(k for k in keys if k != "value")


def flatten_state(state: Any) -> dict[str, np.ndarray]:
    """Every array of an `nnx` state by its dotted path."""
    return {dotted_name(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state)}


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
    metadata = {"format": meta["format"], CHECKSUM_KEY: checksum(flat)}
    _replace(directory / weights_file, lambda tmp: save_file(flat, str(tmp), metadata=metadata))
    _replace(directory / config_file, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def read_meta(path: str | os.PathLike, fmt: str, version: int) -> dict:
    """The JSON object of a saved folder's config file, its `format` and `version` checked.

    Raises:
      PretrainedError: the file is missing, too large, unreadable, not a JSON object, or
        of another format or version.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise PretrainedError(f"{path} is {size} bytes, too large for a config file")
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise PretrainedError(f"{path} is missing; save the model again") from None
    except OSError as err:
        raise PretrainedError(f"{path} can't be read: {err}") from err
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, absurd nesting
        raise PretrainedError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise PretrainedError(f"{path} holds a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != fmt or meta.get("version") != version:
        raise PretrainedError(
            f"{path} is not a {fmt} v{version} file "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    return meta


def parse_fields(path: str | os.PathLike, parse: Callable[[], Any]) -> Any:
    """`parse()` (typed configs from a file's fields), any refusal turned into one
    `PretrainedError` that names the file: a `ConfigError` of a wrong type, a missing or
    unknown key or a value out of range, or a config class's own check."""
    try:
        return parse()
    except (ValueError, TypeError, ArithmeticError) as err:  # ConfigError, PretrainedError
        raise PretrainedError(f"{path}: {err}") from err


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file by name, checked: readable (safetensors checks
    its header and that the file's length matches it), every float finite, and the
    CRC-32 `save_folder` recorded (files without one, written before it was kept, skip
    that check).

    Raises:
      PretrainedError: naming the file, and the tensor where one is at fault.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            flat = {name: f.get_tensor(name) for name in f.keys()}
    except (FileNotFoundError, SafetensorError, OSError, ValueError, TypeError) as err:
        raise PretrainedError(f"{path} can't be read: {err}") from err
    check_finite(flat, str(path))
    want = metadata.get(CHECKSUM_KEY)
    if want is not None and checksum(flat) != want:
        raise PretrainedError(
            f"{path} does not match its checksum (CRC-32 {checksum(flat)}, saved {want}): "
            "the file was changed or damaged after it was saved; save the model again"
        )
    return flat


@dataclasses.dataclass(frozen=True)
class NoFields:
    """The extra fields of a format that has none: its JSON holds format, version, config."""


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

    def read(self, directory: str | os.PathLike, config_type: type,
             fields: type | None = None) -> tuple[Any, Any]:  # fmt: skip
        """(config, fields) of the folder's JSON, typed and range-checked; builds nothing.

        Args:
          directory: the folder.
          config_type: the config dataclass of the JSON's `config`.
          fields: a frozen dataclass of the stage's other fields (each typed, unknown
            ones refused); None returns the whole JSON object instead.

        Raises:
          PretrainedError: one line naming the file and the field at fault.
        """
        path = Path(directory) / self.config_file
        meta = read_meta(path, self.name, self.version)
        if "config" not in meta:
            raise PretrainedError(f"{path} lacks its 'config'; save the model again")
        config = parse_fields(path, lambda: from_mapping(config_type, meta["config"], "config"))
        if fields is None:
            return config, meta
        extra = {k: v for k, v in meta.items() if k not in _ENVELOPE}
        return config, parse_fields(path, lambda: from_mapping(fields, extra, ""))

    def load(self, directory: str | os.PathLike, config_type: type,
             make: Callable[[Any], nnx.Module], fields: type | None = None,
             check: Callable[[Any, dict, str], None] | None = None,
             ) -> tuple[nnx.Module, Any]:  # fmt: skip
        """(the model `make(config)` builds with the folder's weights, its other fields:
        a `fields` instance, or the whole JSON object when None; see `read`).

        Args:
          check: `check(config, weights, source)`, a cheap check of the config against
            the weights file before the model is traced (`check_count`): tracing costs
            time quadratic in a model's variables, so a config of many more layers than
            the file holds is refused first.

        Raises:
          PretrainedError: a file is missing or broken, or the weights don't fit.
        """
        config, extra = self.read(directory, config_type, fields)
        path = Path(directory) / self.weights_file
        flat = read_weights(path)
        if check is not None:
            check(config, flat, str(path))
        try:
            return fill_model(lambda: make(config), flat, str(path)), extra
        except PretrainedError:
            raise
        except (ValueError, TypeError, ArithmeticError) as err:  # past every range check
            raise PretrainedError(
                f"{Path(directory) / self.config_file}: the config builds no model "
                f"({type(err).__name__}: {err})"
            ) from err


def check_count(flat: dict[str, Any], name: str, want: int, source: str, field: str) -> None:
    """Raises unless the weights hold exactly `want` numbered modules `name.0` ... of a
    list (an LM's `layers`, a network's `blocks`).

    Args:
      flat: the weights by dotted name.
      name: the list's name.
      want: how many the config says.
      source: the weights file, for the message.
      field: the config field that says it, for the message.
    """
    have = {key.split(".")[1] for key in flat if key.startswith(f"{name}.")}
    if len(have) != want:
        raise PretrainedError(
            f"{source} holds {len(have)} {name} but the config's {field} is {want}: the "
            "config is not the one saved with these weights"
        )


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
            state = unnest(ckpt.restore_part({"rest": nest(nnx.merge_state(params, rest))})["rest"])
            check_finite(flatten_state(state), f"the latest checkpoint of {directory}")
            return config, nnx.merge(graphdef, state)
        weights = "ema" if ckpt.saved_tree().get("ema") is not None else "params"
        wanted = {weights: nest(params)}
        if jax.tree.leaves(rest):
            wanted["rest"] = nest(rest)
        restored = ckpt.restore_part(wanted)
    params = unnest(restored[weights])
    rest = unnest(restored["rest"]) if "rest" in restored else rest
    check_finite(flatten_state(params), f"the latest checkpoint of {directory}")
    return config, nnx.merge(graphdef, params, rest)


def to_float16(path: str | os.PathLike) -> Path:
    """Rewrites a safetensors file with its float32 arrays as float16 (half the bytes; the
    loaders cast back to the model's dtype), its checksum renewed. Atomic, like every
    save here.

    Raises:
      PretrainedError: a value lies beyond float16's range (65504), where it would become
        infinite: such a model can only be saved in float32.
    """
    path = Path(path)
    flat = read_weights(path)
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
    with np.errstate(over="ignore"):
        half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in flat.items()}
    check_finite({k: v for k, v in half.items() if v is not flat[k]},
                 f"{path} in float16 (values beyond 65504)")  # fmt: skip
    if CHECKSUM_KEY in metadata:
        metadata = {**metadata, CHECKSUM_KEY: checksum(half)}
    _replace(path, lambda tmp: save_file(half, str(tmp), metadata=metadata))
    return path
