"""argparse pieces shared by the `musicgen` subcommands: one-line errors, checked numbers."""

from __future__ import annotations

import argparse
import math

from mgcore.bounds import Range


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, exit status 2."""

    def error(self, message: str):
        message = " ".join(message.split())  # a value that holds a newline stays one line
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(cast: type, ok, requirement: str):
    """An argparse type: `cast` the text, then require a finite `ok(value)`."""
    kind = "an integer" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got '{text}'") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


positive_float = _number(float, lambda v: v > 0, "> 0")
positive_int = _number(int, lambda v: v >= 1, ">= 1")
nonnegative_float = _number(float, lambda v: v >= 0, ">= 0")
nonnegative_int = _number(int, lambda v: v >= 0, ">= 0")
fraction = _number(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")


def ranged(allowed: Range):
    """An argparse type: a number in `allowed`, one of the ranges in `musicgen.inputs` that
    the pipeline checks too, so the flag and the API refuse the same values."""
    cast = int if allowed.integer else float

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {allowed.describe()}, got '{text}'"
            ) from None
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"must be {allowed.describe()}, got {text}")
        return value

    return parse


class UsageError(ValueError):
    """A bad argument found after parsing: one line, exit status 2, like argparse's."""
