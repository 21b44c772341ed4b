"""Range checks of config fields: a bad value is one `ConfigError` naming the field.

Every config dataclass checks its sizes and values in `__post_init__`, the one place that
both a `--set` override and a saved JSON file pass through, so a model that would not
fit in memory, or a NaN that would only show as silent output, is refused before
anything is built:

    def __post_init__(self):
        within(self, "num_layers", 1, 512, optional=True)
        within(self, "dropout", 0.0, 1.0, high_open=True)

A value must be a finite real number (NaN and inf always fail) of the right range.
`Range` is such a range as a value: the pipeline's and the CLI's argument checks
(`musicgen.inputs`) and `SamplingConfig` describe theirs with it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from mgcore.config_types import ConfigError

__all__ = ["Range", "as_number", "check_number", "within"]


def _bound(value) -> str:
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a config field or an argument takes: finite, between optional bounds,
    maybe whole. `value in r` tests a number; `r.describe()` says the range in words.

    Attributes:
      low, high: the bounds (None: unbounded on that side).
      low_open, high_open: whether a bound itself is excluded.
      integer: whole numbers only (Python or numpy integers; floats are refused).
      unit: printed after the interval (e.g. "seconds").
      note: what special values mean, printed in brackets (e.g. "0: greedy").
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    unit: str = ""
    note: str = ""

    def __contains__(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None:
            return value < self.high if self.high_open else value <= self.high
        return True

    def interval(self) -> str:
        """E.g. '[0, 2**32)' (both bounds set)."""
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{_bound(self.low)}, {_bound(self.high)}{right}"

    def describe(self) -> str:
        """E.g. 'an integer in [0, 2**32)', 'a finite number > 0 (1: no guidance)'."""
        text = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            text += f" in {self.interval()}"
        elif self.low is not None:
            text += f" {'>' if self.low_open else '>='} {_bound(self.low)}"
        elif self.high is not None:
            text += f" {'<' if self.high_open else '<='} {_bound(self.high)}"
        if self.unit:
            text += f" {self.unit}"
        return text + (f" ({self.note})" if self.note else "")


def as_number(value) -> int | float | None:
    """A Python int or float for a Python or numpy number or a 0-d array (not a bool), else
    None: what a range check compares, and what a frozen config stores (hashable)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Integral):  # int and numpy integers
        return int(value)
    if isinstance(value, numbers.Real):  # float and numpy floats
        return float(value)
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):  # 0-d arrays, tensors
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, RuntimeError):
            return None
        if array.dtype.kind in "iu":
            return int(array)
        if array.dtype.kind == "f":
            return float(array)
    return None


def check_number(
    value: Any,
    low: float,
    high: float,
    what: str,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raises `ConfigError` unless `value` is a finite number in the range.

    Args:
      value: the value.
      low, high: the bounds.
      what: the field, for the message (e.g. "LMConfig.num_layers").
      low_open, high_open: exclude that bound.
    """
    allowed = Range(low, high, low_open, high_open)
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value in allowed):
        raise ConfigError(f"{what} must be in {allowed.interval()}, got {value!r}")


def within(
    config: Any,
    field: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """`check_number` of a config's (dotted) field, named "Class.field" in the message.

    Args:
      config: the dataclass instance.
      field: the field's name, dotted for a nested section's ("seanet.ratios").
      low, high, low_open, high_open: the range.
      optional: None is allowed.
    """
    value = config
    for part in field.split("."):
        value = getattr(value, part)
    if optional and value is None:
        return
    what = f"{type(config).__name__}.{field}"
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            check_number(item, low, high, f"{what}[{i}]", low_open=low_open, high_open=high_open)
        return
    check_number(value, low, high, what, low_open=low_open, high_open=high_open)
