"""Keys and chords of the composed pieces (`compose.py`).

The modes the styles compose in, the key's conventional spelling, roman-numeral chords
read against a mode (with the blues' dominant sevenths and harmonic minor's major V) and
close-position voicings that move smoothly from one chord to the next.
"""

from __future__ import annotations

import dataclasses
import math
import re

from musicgen.synth.score import SCALES
from musicgen.synth.style_types import Style

# The modes the styles compose in (a subset of the score's scale table).
MODES = {m: SCALES[m] for m in ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian")}
DARK_MODES = frozenset({"minor", "dorian", "phrygian"})
# Semitones from a mode's tonic down to its parent major scale, for spelling the key.
_PARENT = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7, "minor": 9}
_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_FLAT_PARENTS = frozenset({1, 3, 5, 8, 10})  # Db, Eb, F, Ab, Bb majors are written with flats
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")
_TOKEN = re.compile(r"([IViv]+)(7?)")


def key_name(pitch_class: int, mode: str) -> str:
    """The tonic's conventional spelling, e.g. key_name(10, "minor") == "Bb"."""
    parent = (pitch_class - _PARENT[mode]) % 12
    return (_FLATS if parent in _FLAT_PARENTS else _SHARPS)[pitch_class % 12]


@dataclasses.dataclass(frozen=True)
class Chord:
    """A chord of a progression, read against the piece's mode."""

    degrees: tuple[int, ...]  # chord tones as scale degrees, root first
    semis: tuple[int, ...]  # the same tones in semitones above the tonic, ascending
    alter: dict[int, int]  # degree (mod 7) -> chromatic shift inside this chord
    scale: tuple[int, ...]
    blue: bool = False  # the melody keeps the mode's notes (blue notes) against altered tones

    def semi(self, degree: int, melody: bool = False) -> int:
        """Semitones above the tonic of a scale degree sounding over this chord."""
        octave, d = divmod(degree, 7)
        shift = 0 if melody and self.blue else self.alter.get(d, 0)
        return 12 * octave + self.scale[d] + shift

    @property
    def diminished(self) -> bool:
        return len(self.semis) == 3 and self.semis[2] - self.semis[0] == 6

    @property
    def tones(self) -> frozenset[int]:
        """Degrees (mod 7) a melody may land on: chord tones it can match exactly."""
        return frozenset(d % 7 for d in self.degrees if not (self.blue and d % 7 in self.alter))


def _parse_chord(token: str, scale: tuple[int, ...], style: Style, dark: bool) -> Chord:
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise ValueError(f"{style.name}: cannot read chord {token!r}")
    root = _ROMAN.index(m.group(1).upper())
    seventh = bool(m.group(2)) or style.dominant
    degrees = tuple(root + 2 * k for k in range(4 if seventh else 3))
    base = Chord(degrees, (), {}, scale)
    diatonic = [base.semi(d) for d in degrees]
    target = list(diatonic)
    if style.dominant:  # blues: every chord a dominant seventh
        target = [diatonic[0] + iv for iv in (0, 4, 7, 10)]
    elif style.major_v and dark and root == 4:  # harmonic minor's major V
        target[1] = diatonic[0] + 4
        if seventh:
            target[3] = diatonic[0] + 10
    alter = {d % 7: t - s for d, t, s in zip(degrees, target, diatonic, strict=True) if t != s}
    return Chord(degrees, tuple(target), alter, scale, blue=style.dominant)


def parse_progression(text: str, scale, style: Style, dark: bool) -> list[list[Chord]]:
    return [[_parse_chord(t, scale, style, dark) for t in bar.split(",")] for bar in text.split()]


def voice(chord: Chord, prev: tuple[int, ...] | None) -> tuple[int, ...]:
    """Close-position voicing near the previous one (smooth voice leading), centred a
    little above the tonic so the melody sits on top."""
    best, best_cost = (), math.inf
    for inv in range(len(chord.semis)):
        pcs = chord.semis[inv:] + tuple(s + 12 for s in chord.semis[:inv])
        for shift in (-24, -12, 0, 12):
            v = tuple(p + shift for p in pcs)
            if not -8 <= v[0] <= 4:
                continue
            mean = sum(v) / len(v)
            cost = 0.5 * abs(mean - 1.0)
            if prev is not None:
                cost += abs(mean - sum(prev) / len(prev)) + 0.3 * abs(v[0] - prev[0])
            if cost < best_cost:
                best, best_cost = v, cost
    return best
