"""Pitch-class names, in every spelling a prompt or a manifest uses."""

from __future__ import annotations

import re

from musicgen.controls.vocab import ControlError

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHARP = re.compile(r"^(?:#|♯|-?\s*sharp)$", re.IGNORECASE)
_FLAT = re.compile(r"^(?:b|♭|-?\s*flat)$", re.IGNORECASE)


class PitchError(ControlError):
    """A note name that is not one."""


def parse_pitch_class(text: str) -> int:
    """The pitch class of a note name: "F#", "F sharp", "F-sharp", "Gb", "B-flat", "E♭"."""
    s = str(text).strip()
    if not s or s[0].upper() not in _LETTER:
        raise PitchError(f"unknown note {text!r}: write A-G with an optional # or b")
    base, rest = _LETTER[s[0].upper()], s[1:].strip()
    if not rest:
        return base
    if _SHARP.match(rest):
        return (base + 1) % 12
    if _FLAT.match(rest):
        return (base - 1) % 12
    raise PitchError(f"unknown note {text!r}: write A-G with an optional # or b")
