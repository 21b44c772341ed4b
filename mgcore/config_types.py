"""Typed conversion for configs: text (`--set`) and JSON values into annotated fields.

`config.py` loads, overrides, saves and describes experiment configs; this module
holds what both directions share: the one-line `ConfigError`, parsing a string by
a field's annotation (int, float, bool, str, Optional, Literal, tuples, paths),
converting JSON values back into nested frozen dataclasses, and the field and
annotation helpers.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import math
import pathlib
import types
import typing
from collections.abc import Collection
from typing import Any, Literal

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


class ConfigError(ValueError):
    """A user mistake in an experiment spec, an override or a saved config (one line)."""

    def __init__(self, message: str):
        # One line always: messages quote user text and exceptions that may hold newlines.
        super().__init__(" ".join(str(message).split()))


def suggest(key: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else "; see describe(config) for the keys"


# --------------------------------------------------------------------------- value parsing


def parse_text(text: str, tp: Any, key: str) -> Any:
    """Parse a command-line string into a value of annotation `tp`."""
    stripped = text.strip()
    origin = typing.get_origin(tp)
    if is_union(tp):
        arms = typing.get_args(tp)
        if type(None) in arms and stripped.lower() in _NONE:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return parse_text(text, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' wants {type_name(tp)}, got {text!r}")
    if origin is Literal:
        for choice in typing.get_args(tp):
            if literal_text(choice) == stripped:
                return choice
        choices = ", ".join(repr(c) for c in typing.get_args(tp))
        raise ConfigError(f"config key '{key}' must be one of {choices}; got {text!r}")
    if origin is tuple:
        if stripped[:1] in ("(", "["):
            try:
                items = ast.literal_eval(stripped)
            except (ValueError, SyntaxError) as err:
                raise ConfigError(
                    f"config key '{key}' wants {type_name(tp)}; {text!r} is not a Python "
                    "literal (write e.g. 1,2,3 or '(1, 2, 3)')"
                ) from err
            if not isinstance(items, list | tuple):
                raise ConfigError(f"config key '{key}' wants {type_name(tp)}, got {text!r}")
            return convert(list(items), tp, key, from_json=True)
        pieces = [p.strip() for p in stripped.split(",")] if stripped else []
        if pieces and pieces[-1] == "":  # "1," is a one-element tuple, as in Python
            pieces = pieces[:-1]
        elem_types = tuple_elem_types(tp, len(pieces), key)
        return tuple(
            parse_text(p, t, f"{key}[{i}]")
            for i, (p, t) in enumerate(zip(pieces, elem_types, strict=True))
        )
    if tp is bool:
        low = stripped.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"config key '{key}' wants a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(stripped)
        except ValueError:
            raise ConfigError(f"config key '{key}' wants an int, got {text!r}") from None
    if tp is float:
        try:
            value = float(stripped)
        except ValueError:
            raise ConfigError(f"config key '{key}' wants a float, got {text!r}") from None
        return _finite(value, key)
    if tp is str:
        return text
    if tp is pathlib.Path:
        return pathlib.Path(stripped)
    if tp is Any:
        return text
    raise ConfigError(
        f"config key '{key}' has type {type_name(tp)}, which --set cannot parse; "
        "change it in the experiment file instead"
    )


def literal_text(choice: Any) -> str:
    if isinstance(choice, bool):
        return "true" if choice else "false"
    return str(choice)


def tuple_elem_types(tp: Any, n: int, key: str) -> tuple[Any, ...]:
    args = typing.get_args(tp)
    if not args:
        raise ConfigError(f"config key '{key}' is a bare tuple; annotate it, e.g. tuple[int, ...]")
    if len(args) == 2 and args[1] is Ellipsis:
        return (args[0],) * n
    if args == ((),):  # tuple[()]
        args = ()
    if len(args) != n:
        raise ConfigError(f"config key '{key}' wants {len(args)} items ({type_name(tp)}), got {n}")
    return args


def convert(value: Any, tp: Any, key: str, *, from_json: bool) -> Any:
    """Check (and, for JSON, rebuild) a Python value against annotation `tp`.

    JSON has lists for tuples, strings for paths and dicts for dataclasses; `from_json`
    allows those forms and converts them back.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if is_union(tp):
        arms = typing.get_args(tp)
        if value is None and type(None) in arms:
            return None
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return convert(value, arm, key, from_json=from_json)
            except ConfigError:
                continue
        raise wrong_type(key, tp, value)
    if origin is Literal:
        # Match the type too: True == 1, but a Literal[1] field must not accept True.
        for choice in typing.get_args(tp):
            if type(value) is type(choice) and value == choice:
                return choice
        choices = ", ".join(repr(c) for c in typing.get_args(tp))
        raise ConfigError(f"config key '{key}' must be one of {choices}; got {value!r}")
    if origin is tuple:
        if not isinstance(value, tuple | list) or (isinstance(value, list) and not from_json):
            raise wrong_type(key, tp, value)
        elem_types = tuple_elem_types(tp, len(value), key)
        return tuple(
            convert(v, t, f"{key}[{i}]", from_json=from_json)
            for i, (v, t) in enumerate(zip(value, elem_types, strict=True))
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if from_json and isinstance(value, dict):
            return from_mapping(tp, value, key)
        raise wrong_type(key, tp, value)
    if tp is pathlib.Path and from_json and isinstance(value, str):
        return pathlib.Path(value)
    if tp in _SCALARS:
        # bool is an int subclass, so an int or float field must not take True.
        if isinstance(value, _SCALARS[tp]) and (tp is bool or not isinstance(value, bool)):
            return _finite(float(value), key) if tp is float else value
        raise wrong_type(key, tp, value)
    raise ConfigError(f"config key '{key}' has unsupported type {type_name(tp)}")


# Annotation -> the Python types a value of it may already have.
_SCALARS: dict[type, type | tuple[type, ...]] = {
    bool: bool,
    int: int,
    float: (int, float),
    str: str,
    pathlib.Path: pathlib.PurePath,
}


def _finite(value: float, key: str) -> float:
    # No config field means anything by NaN or infinity; a huge literal (1e400) is inf.
    if not math.isfinite(value):
        raise ConfigError(f"config key '{key}' wants a finite number, got {value}")
    return value


def build(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    """`cls(**kwargs)`, with a `__post_init__` check's ValueError/TypeError as one
    `ConfigError` naming `where` (a section of the config)."""
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as err:
        raise ConfigError(f"{where}: {err}") from err


def wrong_type(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(
        f"config key '{key}' wants {type_name(tp)}, got {value!r} ({type(value).__name__})"
    )


def is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


# --------------------------------------------------------------------------- dataclass helpers


def init_fields(cls: type) -> list[dataclasses.Field]:
    # Derived (init=False) fields are recomputed by __post_init__, never set or saved.
    return [f for f in dataclasses.fields(cls) if f.init]


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as err:
        raise ConfigError(
            f"cannot resolve the annotations of {cls.__qualname__}: {type(err).__name__}: "
            f"{err}; import every annotated type at module level"
        ) from err


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_mapping(cls: type, data: Any, prefix: str) -> Any:
    where = f"section '{prefix}'" if prefix else "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in init_fields(cls)}
    for name in data:
        if name not in fields:
            key = join_key(prefix, name)
            raise ConfigError(
                f"unknown config key '{key}' in saved config for {cls.__qualname__}"
                f"{suggest(name, fields)}"
            )
    hints = type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        key = join_key(prefix, name)
        if name in data:
            kwargs[name] = convert(data[name], hints[name], key, from_json=True)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"saved config lacks required key '{key}'; the file is incomplete")
    return build(cls, kwargs, where)
