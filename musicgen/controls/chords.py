"""Chord symbols: names, parsing, pitch-class sets (chroma) and mir_eval's labels.

A chord is a root (a pitch class) and a quality. The qualities are the triads and the
common sevenths and suspensions a user writes in a lead sheet ("Am", "F", "G7", "Cmaj7",
"Dsus4", "Bdim"); "N" is no chord. Slash chords ("C/G") keep their chord and drop the bass.
Chords condition the LM through their chroma (the 12 pitch classes they hold) and are
scored with mir_eval's major/minor comparison (`harte`).
"""

from __future__ import annotations

import re

from musicgen.controls.pitch import PITCH_NAMES, parse_pitch_class
from musicgen.controls.vocab import ControlError

# Quality -> (semitones above the root, mir_eval / Harte shorthand).
QUALITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "": ((0, 4, 7), "maj"),
    "m": ((0, 3, 7), "min"),
    "dim": ((0, 3, 6), "dim"),
    "aug": ((0, 4, 8), "aug"),
    "7": ((0, 4, 7, 10), "7"),
    "maj7": ((0, 4, 7, 11), "maj7"),
    "m7": ((0, 3, 7, 10), "min7"),
    "sus2": ((0, 2, 7), "sus2"),
    "sus4": ((0, 5, 7), "sus4"),
}
# Spellings of each quality a user may write, after the root.
_ALIASES = {
    "": "", "maj": "", "major": "", "M": "",
    "m": "m", "min": "m", "minor": "m", "-": "m",
    "dim": "dim", "°": "dim", "o": "dim",
    "aug": "aug", "+": "aug",
    "7": "7", "dom7": "7",
    "maj7": "maj7", "M7": "maj7", "Δ": "maj7", "Δ7": "maj7",
    "m7": "m7", "min7": "m7", "-7": "m7",
    "sus2": "sus2", "sus4": "sus4", "sus": "sus4",
}  # fmt: skip
_CHORD_RE = re.compile(r"^([A-G](?:#|♯|b|♭)?)(.*?)(?:/([A-G](?:#|♯|b|♭)?))?$")
NO_CHORD = "N"


class ChordError(ControlError):
    """A chord symbol that is not understood; the message says what is accepted."""


def chord_name(root: int, quality: str) -> str:
    """The canonical name of a chord: `chord_name(9, "m") == "Am"`."""
    return f"{PITCH_NAMES[root % 12]}{quality}"


def parse_chord(text: str) -> tuple[int, str] | None:
    """(root pitch class, quality) of a chord symbol, or None for "N" (no chord).

    Raises:
      ChordError: the symbol is not a chord of `QUALITIES` in any accepted spelling.
    """
    symbol = str(text).strip()
    if symbol in ("N", "NC", "N.C.", "-"):
        return None
    m = _CHORD_RE.match(symbol)
    quality = _ALIASES.get(m.group(2)) if m else None
    if m is None or quality is None:
        accepted = ", ".join(f"C{q}" for q in QUALITIES)
        raise ChordError(
            f"unknown chord {text!r}: write a root A-G (with # or b) and one of {accepted} "
            "(or N for no chord), e.g. 'Am F C G'"
        )
    return parse_pitch_class(m.group(1)), quality


def canonical_chord(text: str) -> str:
    """The canonical name of a chord symbol ("A minor" is not one; "Amin" gives "Am")."""
    parsed = parse_chord(text)
    return NO_CHORD if parsed is None else chord_name(*parsed)


def chord_chroma(name: str) -> tuple[int, ...]:
    """The chord's pitch classes as 12 zeros and ones, C first ("N": all zero)."""
    parsed = parse_chord(name)
    out = [0] * 12
    if parsed is not None:
        root, quality = parsed
        for step in QUALITIES[quality][0]:
            out[(root + step) % 12] = 1
    return tuple(out)


def harte(name: str) -> str:
    """The chord as mir_eval writes it: "Am" -> "A:min", "N" -> "N"."""
    parsed = parse_chord(name)
    if parsed is None:
        return "N"
    root, quality = parsed
    return f"{PITCH_NAMES[root]}:{QUALITIES[quality][1]}"


def parse_progression(text: str) -> tuple[str, ...]:
    """A progression written one chord per bar ("Am F C G", "Am | F | C | G", commas
    allowed), canonical names."""
    symbols = [s for s in re.split(r"[\s,|]+", str(text).strip()) if s]
    if not symbols:
        raise ChordError("the chord progression is empty: write one chord per bar, e.g. 'Am F C G'")
    return tuple(canonical_chord(s) for s in symbols)
