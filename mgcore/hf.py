"""Reading Hugging Face model folders: the one toolkit every weight import shares.

A folder that transformers' `save_pretrained` writes (or a downloaded snapshot) holds
`config.json` and its tensors in `model.safetensors`, or in shards that
`model.safetensors.index.json` lists. `read_config` and `read_tensors` read them into
plain dicts, `model_type` recognises a folder without raising, `Tensors` remembers which
tensors a conversion took so an import proves it used every one, and `fill` puts the
converted arrays into a module through `mgcore.weights.fill_model`, the one strict fill.

    hf = read_config(folder)
    src = Tensors(read_tensors(folder), f"the weights in {folder}")
    flat = {"embed.embedding": src.take("shared.weight"), ...}
    src.check_all_used()
    model = fill(lambda: Model(config, rngs=nnx.Rngs(0)), flat, src.source)

Every refusal is a one-line `PretrainedError` saying what to do, or an instance of the
subclass passed as `error` (the text encoders pass their `TextEncoderError`). Nothing in
a folder is trusted: every tensor read is checked finite, a shard the index names must
lie in the folder, and `converting` turns a missing or malformed config.json field, or
one our config's range checks refuse, into one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from mgcore.weights import PretrainedError, check_finite, fill_model, inside

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# What a mismatch between tensors and config almost always means.
SAME_MODEL_HINT = "is config.json from the same model?"

ErrorType = type[PretrainedError]


def read_json(path: str | os.PathLike, error: ErrorType = PretrainedError) -> dict[str, Any]:
    """The fields of a JSON object file (config.json, generation_config.json, an index).

    Args:
      path: the file.
      error: the error class raised.

    Raises:
      error: the file is missing, unreadable, not JSON or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} is missing; the folder must hold the model's {path.name}")
    try:
        fields = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        raise error(f"{path} can't be read ({err}); save the model again") from err
    if not isinstance(fields, dict):
        raise error(f"{path} holds a JSON {type(fields).__name__}, not an object; save it again")
    return fields


def read_config(directory: str | os.PathLike, error: ErrorType = PretrainedError) -> dict:
    """The fields of `directory/config.json`.

    Args:
      directory: the Hugging Face folder.
      error: the error class raised.
    """
    return read_json(Path(directory) / CONFIG_FILE, error)


def _weight_files(directory: Path, error: ErrorType) -> list[Path]:
    if (directory / WEIGHTS_FILE).is_file():
        return [directory / WEIGHTS_FILE]
    if not (directory / INDEX_FILE).is_file():
        raise error(
            f"{directory} holds no {WEIGHTS_FILE} (nor {INDEX_FILE}); save the model with "
            "safetensors (transformers' save_pretrained does by default)"
        )
    weight_map = read_json(directory / INDEX_FILE, error).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise error(f"{directory / INDEX_FILE} lists no weight_map; save the model again")
    if not all(isinstance(name, str) for name in weight_map.values()):
        raise error(f"{directory / INDEX_FILE} has a weight_map value that is not a file name")
    where = f"{directory / INDEX_FILE} weight_map"
    return [inside(directory, name, where) for name in sorted(set(weight_map.values()))]


def read_tensors(
    directory: str | os.PathLike,
    error: ErrorType = PretrainedError,
    keep: Callable[[str], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Every tensor of `model.safetensors`, or of the shards its index lists, by name.

    Args:
      directory: the Hugging Face folder.
      error: the error class raised.
      keep: read only the tensors it is True for (the others are never loaded).

    Raises:
      error: no weights file, one that can't be read, or a tensor with a NaN or an
        infinity (named).
    """
    tensors: dict[str, np.ndarray] = {}
    for path in _weight_files(Path(directory), error):
        try:
            with safe_open(str(path), framework="numpy") as f:
                shard = {n: f.get_tensor(n) for n in f.keys() if keep is None or keep(n)}
        except (SafetensorError, OSError, ValueError, TypeError) as err:
            raise error(f"{path} can't be read ({err}); save the model again") from err
        check_finite(shard, str(path), error)
        tensors.update(shard)
    return tensors


@contextlib.contextmanager
def converting(source: str | os.PathLike, error: ErrorType = PretrainedError) -> Iterator[None]:
    """Inside it, turning a config.json's fields into our config: a missing field
    (KeyError), a malformed one (TypeError, ValueError, OverflowError) or one our config
    refuses (its range checks' `ConfigError`) becomes one `error` naming `source`.

    Args:
      source: the file, e.g. "hf/encodec/config.json".
      error: the error class raised.
    """
    try:
        yield
    except PretrainedError as err:
        if str(source) in str(err):
            raise
        raise type(err)(f"{source}: {err}") from err
    except KeyError as err:
        raise error(f"{source} lacks the field {err.args[0]!r}; save the model again") from err
    except (TypeError, ValueError, ArithmeticError) as err:
        raise error(f"{source}: {err}") from err


def field(fields: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    """`fields[key]` as an int or a float (an int is a float too; bool is neither), or
    `default` where it is absent or null.

    Raises:
      ValueError: the value is not a finite number of that kind, or it is absent without
        a default (`converting` names the file).
    """
    value = fields.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"field {key!r} is missing")
        return default
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"field {key!r} must be an integer, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, int) or math.isfinite(value):
            return float(value)
    raise ValueError(f"field {key!r} must be a finite number, got {value!r}")


def model_type(directory: str | os.PathLike) -> str | None:
    """The model_type of a folder with config.json and safetensors weights, else None.

    Never raises: it tells the kinds of folder apart before any of them is read.

    Args:
      directory: any path.
    """
    directory = Path(directory)
    if not any((directory / name).is_file() for name in (WEIGHTS_FILE, INDEX_FILE)):
        return None
    try:
        kind = read_config(directory).get("model_type")
    except PretrainedError:
        return None
    return kind if isinstance(kind, str) else None


class Tensors:
    """A checkpoint's tensors, remembering which a conversion took (strict imports).

    Args:
      tensors: arrays by checkpoint name.
      source: what they came from, for messages (e.g. "the T5 weights in hf/t5").
      error: the error class raised.
    """

    def __init__(
        self, tensors: dict[str, np.ndarray], source: str, error: ErrorType = PretrainedError
    ):
        self.tensors, self.source, self.error = tensors, source, error
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        """Whether the checkpoint holds `name` (taken or not)."""
        return name in self.tensors

    def take(self, name: str) -> np.ndarray:
        """The tensor `name` as float32, marked used.

        Raises:
          error: the checkpoint lacks it.
        """
        if name not in self.tensors:
            raise self.error(
                f"{self.source} lacks tensor {name!r}, which its config.json implies; "
                f"{SAME_MODEL_HINT}"
            )
        self.used.add(name)
        return np.asarray(self.tensors[name], np.float32)

    def unused(self, ignored: Callable[[str], bool] = lambda name: False) -> list[str]:
        """The names no `take` asked for and `ignored` does not excuse, sorted."""
        return sorted(n for n in set(self.tensors) - self.used if not ignored(n))

    def check_all_used(self, ignored: Callable[[str], bool] = lambda name: False) -> None:
        """Raises, naming them, if tensors are unused and not explicitly `ignored`.

        Args:
          ignored: True for tensors the model has no place for by design (a pooler, a
            decoder, another part of a composite checkpoint).
        """
        unused = self.unused(ignored)
        if unused:
            raise self.error(
                f"{len(unused)} tensors of {self.source} map to nothing in the model its "
                f"config.json describes, e.g. {unused[:5]}; {SAME_MODEL_HINT}"
            )


def fill(
    make: Callable[[], nnx.Module],
    flat: dict[str, np.ndarray],
    source: str,
    error: ErrorType = PretrainedError,
) -> nnx.Module:
    """`mgcore.weights.fill_model` of converted weights: the module `make()` builds, every
    variable filled from `flat` and every array used, else `error` with the config hint.

    Args:
      make: builds the module (its `rngs` are never drawn from).
      flat: float arrays by dotted variable path (e.g. "layers.0.q.kernel").
      source: what the weights came from, for messages.
      error: the error class raised.
    """
    try:
        return fill_model(make, flat, source)
    except PretrainedError as err:
        raise error(f"{err}; {SAME_MODEL_HINT}") from err
