"""argparse pieces shared by the `musicgen` subcommands: one-line errors, checked numbers."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(cast: type, ok, requirement: str):
    """An argparse type: `cast` the text, then require `ok(value)`."""
    kind = "an integer" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got '{text}'") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value

    return parse


positive_float = _number(float, lambda v: v > 0, "> 0")
positive_int = _number(int, lambda v: v >= 1, ">= 1")
fraction = _number(float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")


class UsageError(ValueError):
    """A bad argument found after parsing: one line, exit status 2, like argparse's."""
