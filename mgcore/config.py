"""Experiments are Python: load `get_config(arg)`, apply typed `--set` overrides, save, reload.

An experiment is a Python file exposing `get_config(arg: str)` that returns a tree of
frozen dataclasses (big_vision's and nanodo's habit, with dataclasses in place of
ConfigDict so that a typo is an error and the type checker sees every field). Variants
go through the argument (`experiments/lm.py:size=small,debug`); `parse_arg` turns it into
a dict. On the command line `--set a.b.c=value` overrides any leaf, parsed according to
the field's annotation, so `--set train.steps=1.5` fails at launch instead of deep in the
trainer. A resolved config is saved into the workdir as JSON and reloaded from there
into the same dataclasses.

Every user mistake raises `ConfigError` with one line saying what is wrong and what to
do. Only fields with `init=True` are part of a config's public surface: derived
(`init=False`) fields are recomputed by `__post_init__` and never set or saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
import types
import typing
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from mgcore.config_types import (
    ConfigError,
    build,
    from_mapping,
    init_fields,
    is_union,
    join_key,
    parse_text,
    suggest,
    type_hints,
)

__all__ = [
    "ConfigError",
    "apply_overrides",
    "describe",
    "from_dict",
    "load_experiment",
    "load_saved_config",
    "parse_arg",
    "save_config",
    "to_dict",
]

# Saved-config envelope keys; `root` names the dataclass so the file reloads by itself.
_ROOT_KEY = "root"
_CONFIG_KEY = "config"
_MODULE_PREFIX = "_mgcore_experiment_"

# Modules imported by path, keyed by resolved path; reused while the file is unchanged
# so that configs loaded twice (launch, then reload from the workdir) share classes and
# compare equal.
_LOADED: dict[str, tuple[tuple[int, int], types.ModuleType]] = {}
# Module name -> file, for modules we imported by path (they can't be imported by name).
_MODULE_FILES: dict[str, str] = {}


# --------------------------------------------------------------------------- arguments


def parse_arg(arg: str, known: Collection[str] | None = None) -> dict[str, str]:
    """Parse a config argument: "size=small,debug" -> {"size": "small", "debug": "true"}.

    Args:
      arg: the part after ':' in `--config file.py:arg`; "" gives {}.
      known: if given, the keys an experiment accepts; any other key is a ConfigError.
    """
    out: dict[str, str] = {}
    for piece in arg.split(","):
        piece = piece.strip()
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"config argument {arg!r} has an empty name in {piece!r}")
        out[key] = value.strip() if eq else "true"
    if known is not None:
        for key in out:
            if key not in known:
                raise ConfigError(
                    f"unknown config argument {key!r}{suggest(key, known)}; "
                    f"this experiment accepts: {', '.join(sorted(known)) or 'nothing'}"
                )
    return out


# --------------------------------------------------------------------------- loading


def load_experiment(spec: str, overrides: Sequence[str] = ()) -> Any:
    """Import an experiment file by path, call its `get_config(arg)`, apply overrides.

    Args:
      spec: "path/to/file.py" or "path/to/file.py:arg".
      overrides: "a.b.c=value" strings, applied in order (the last one of a key wins).

    Returns:
      The root config, a frozen dataclass instance.
    """
    path, arg = _split_spec(spec)
    module = _import_file(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(
            f"experiment file {path} has no get_config(arg); "
            "define `def get_config(arg: str)` returning the root config dataclass"
        )
    config = get_config(arg)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(
            f"get_config({arg!r}) in {path} returned {type(config).__name__}, "
            "not a dataclass instance; return the root config dataclass"
        )
    _check_tree(config, "")
    return apply_overrides(config, overrides)


def _split_spec(spec: str) -> tuple[str, str]:
    # Split at ".py:" rather than the first ':' so that paths with colons still work.
    if ".py:" in spec:
        path, _, arg = spec.partition(".py:")
        return path + ".py", arg
    if not spec.endswith(".py"):
        raise ConfigError(
            f"--config wants an experiment file 'path/to/file.py[:arg]', got {spec!r}"
        )
    return spec, ""


def _import_file(path: str) -> types.ModuleType:
    resolved = pathlib.Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise ConfigError(f"experiment file {path} not found; check the path given to --config")
    stat = resolved.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _LOADED.get(str(resolved))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    # A name unique per file version: an edited file gets new classes without changing
    # the ones that configs loaded earlier still point at.
    digest = hashlib.sha1(f"{resolved}:{stamp}".encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    name = f"{_MODULE_PREFIX}{stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"experiment file {path} cannot be imported; it must be a .py file")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before executing: dataclasses and typing.get_type_hints look the
    # module up by name to resolve string annotations.
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[name]
        raise ConfigError(
            f"experiment file {path} has a syntax error at line {err.lineno}: {err.msg}; "
            "fix the file and run again"
        ) from err
    except Exception as err:
        del sys.modules[name]
        raise ConfigError(
            f"experiment file {path} failed to import: {type(err).__name__}: {err}; "
            "fix the file and run again"
        ) from err
    _LOADED[str(resolved)] = (stamp, module)
    _MODULE_FILES[name] = str(resolved)
    return module


def _check_tree(config: Any, prefix: str) -> None:
    # Frozen all the way down: configs are hashed (jit static args) and shared freely.
    params = type(config).__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen:
        where = f"section '{prefix}'" if prefix else "the root config"
        raise ConfigError(
            f"{where} ({type(config).__qualname__}) is not frozen; "
            "declare it with @dataclasses.dataclass(frozen=True)"
        )
    for field in init_fields(type(config)):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _check_tree(value, join_key(prefix, field.name))


# --------------------------------------------------------------------------- overrides


def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Return a copy of `config` with "a.b.c=value" overrides applied, type-checked.

    Values are parsed from the field annotation: int, float, bool (true/false/1/0/yes/no),
    str, pathlib.Path, `X | None` ("none"/"null"), Literal[...], and tuples (comma-separated
    or a Python literal "(1, 2)"). All overrides are applied in one rebuild, so
    `__post_init__` checks see the final combination, not each step.

    Args:
      config: the root config dataclass instance.
      overrides: "key=value" strings with dotted keys; the last one of a key wins.
    """
    updates: dict[str, Any] = {}
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(
                f"override {item!r} is not 'key=value'; write e.g. --set train.steps=1000"
            )
        parts = key.split(".")
        tp = _resolve_key(config, parts, key)
        value = parse_text(text, tp, key)
        node = updates
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):  # a later sub-key replaces an earlier whole value
                child = node[part] = {}
            node = child
        node[parts[-1]] = _Leaf(value)
    return _rebuild(config, updates)


@dataclasses.dataclass(frozen=True)
class _Leaf:
    # Marks a final value in the update tree, so a dict value is never mistaken for a section.
    value: Any


def _rebuild(obj: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    changes = {}
    for name, update in updates.items():
        if isinstance(update, _Leaf):
            changes[name] = update.value
        else:
            changes[name] = _rebuild(getattr(obj, name), update, join_key(prefix, name))
    kwargs = {f.name: getattr(obj, f.name) for f in init_fields(type(obj))}
    return build(type(obj), {**kwargs, **changes},
                 f"section '{prefix}'" if prefix else "the config")  # fmt: skip


def _resolve_key(config: Any, parts: list[str], key: str) -> Any:
    """Walk a dotted key through the config; return the leaf field's annotation."""
    obj = config
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
            if obj is None:
                raise ConfigError(
                    f"config key '{prefix}' is None, so '{key}' cannot be set; "
                    "this section is switched off in this config"
                )
            raise ConfigError(
                f"config key '{key}' goes past '{prefix}', which is a value, not a section; "
                f"set '{prefix}=...' instead"
            )
        fields = {f.name: f for f in init_fields(type(obj))}
        if part not in fields:
            raise ConfigError(f"unknown config key '{key}'{suggest(key, list(_leaf_keys(config)))}")
        tp = type_hints(type(obj))[part]
        obj = getattr(obj, part)
    if _is_section(tp, obj):
        example = next(iter(_leaf_keys(obj, key)), f"{key}.<name>")
        raise ConfigError(
            f"config key '{key}' is a section, not a value; set one of its keys, "
            f"e.g. '{example}=...'"
        )
    return tp


def _is_section(tp: Any, value: Any) -> bool:
    # A section is a dataclass-typed field; `Section | None` is a section unless None.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return not _allows_none(tp)
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _allows_none(tp: Any) -> bool:
    return is_union(tp) and type(None) in typing.get_args(tp)


def _items(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, value) for every leaf, in field order."""
    for field in init_fields(type(config)):
        value = getattr(config, field.name)
        key = join_key(prefix, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _items(value, key)
        else:
            yield key, value


def _leaf_keys(config: Any, prefix: str = "") -> Iterator[str]:
    return (key for key, _ in _items(config, prefix))


# --------------------------------------------------------------------------- dict / JSON


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-serialisable nested dict of the config (tuples become lists, paths strings).

    Args:
      config: a config dataclass instance.
    """
    return {f.name: _to_json(getattr(config, f.name)) for f in init_fields(type(config))}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass tree from `to_dict`'s output, type-checked.

    Missing keys take the field's default; unknown keys are a ConfigError.

    Args:
      cls: the root config dataclass.
      data: the nested dict, as `to_dict` wrote it (or read back from JSON).
    """
    return from_mapping(cls, data, "")


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as JSON, atomically, with what is needed to reload it.

    Args:
      config: the root config dataclass instance.
      path: the JSON file to write (its folder must exist).
    """
    cls = type(config)
    root = {"module": cls.__module__, "qualname": cls.__qualname__}
    if cls.__module__ in _MODULE_FILES:
        # Imported by path, not importable by name: remember the file to reload it.
        root["file"] = _MODULE_FILES[cls.__module__]
    payload = {_ROOT_KEY: root, _CONFIG_KEY: to_dict(config)}
    text = json.dumps(payload, indent=2) + "\n"
    path = pathlib.Path(path)
    # Temp file in the same folder, then os.replace: a crash never leaves half a config.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_payload(path: str | os.PathLike) -> dict[str, Any]:
    try:
        payload = json.loads(pathlib.Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"saved config {path} not found; check the workdir") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"saved config {path} is not valid JSON: {err}") from err
    if not isinstance(payload, dict) or _ROOT_KEY not in payload or _CONFIG_KEY not in payload:
        raise ConfigError(
            f"saved config {path} lacks '{_ROOT_KEY}'/'{_CONFIG_KEY}'; "
            "it was not written by save_config"
        )
    return payload


def saved_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The plain nested dict of a config written by `save_config`, importing nothing.

    Loading a trained model reads its sections (`model`, `text`, ...) from here, so that it
    never imports the module of the experiment's root class (the training family).

    Args:
      path: the JSON file.
    """
    return _read_payload(path)[_CONFIG_KEY]


# Modules that held root config classes before a move: old workdirs still resume.
_MOVED_MODULES = {
    "musicgen.lm_family": "musicgen.lm.family",
    "diffusion.refiner_family": "diffusion.refiner.family",
    "musicgen.evaluation.judge_family": "musicgen.evaluation.judge.family",
}


def load_saved_config(path: str | os.PathLike) -> Any:
    """Read a config written by `save_config` back into its dataclasses.

    Args:
      path: the JSON file.
    """
    payload = _read_payload(path)
    root = payload[_ROOT_KEY]
    if "file" in root:
        module = _import_file(root["file"])
    else:
        name = _MOVED_MODULES.get(root["module"], root["module"])
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(
                f"saved config {path} needs module {name!r}, which does not import: {err}"
            ) from err
    obj: Any = module
    for part in root["qualname"].split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(
                f"saved config {path} names {root['qualname']!r}, which {module.__name__} "
                "no longer defines"
            )
    return from_dict(obj, payload[_CONFIG_KEY])


# --------------------------------------------------------------------------- describe


def describe(config: Any) -> str:
    """Every leaf as "dotted.key=value", one per line, in field order (for logs).

    Each line is a valid `--set` argument that reproduces the value.

    Args:
      config: a config dataclass instance.
    """
    return "\n".join(f"{key}={_format(value)}" for key, value in _items(config))


def _format(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        parts = [_format(v) for v in value]
        if any("," in p for p in parts) or len(parts) == 1:
            # Python literal keeps commas inside strings and one-element tuples intact.
            return repr(tuple(value))
        return ",".join(parts)
    return str(value)
