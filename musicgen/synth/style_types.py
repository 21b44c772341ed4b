"""The data types a style is written in (`styles.py` holds the styles themselves).

A `Style` is data only: drum grooves, tempo range, metre, instrument line-ups,
chord progressions, bass and comping figures and the melody's character. Rhythms
are written as grids, one character per 16th note (spaces are ignored and only
make beats readable); a grid may span several bars and then cycles.

Drum grids: `X` accent, `x` normal, `o` ghost, `.` rest.
Bass grids: a tone starts a note and `-` holds it. Tones are chord-relative:
`R` root, `3` third, `5` fifth, `6` sixth, `7` seventh, `8` root an octave up,
`A` a step into the next chord's root, `W` a walking tone.
Comping grids: `X`/`x`/`o` strike the chord (accent, normal, soft), `-` holds it.

Chord progressions are roman numerals, one a bar ("ii7,V7" splits a bar). Only
the degree and a trailing `7` count: a chord's quality follows the mode, so one
progression serves major and minor pieces.

Also here: `grid`, which writes a drum pattern, and `parse_grid` and `ACCENT`, which
read any grid back as onsets and accents.
"""

from __future__ import annotations

import dataclasses
import functools

from musicgen.synth.score import DRUM_KEYS

Pattern = tuple[tuple[str, str], ...]
Form = tuple[tuple[str, int], ...]

ACCENT = {"X": 1.0, "x": 0.8, "o": 0.5}


def grid(**hits: str) -> Pattern:
    """A drum pattern from keyword grids, e.g. `grid(kick="X... ....", snare=...)`."""
    for drum in hits:
        if drum not in DRUM_KEYS:
            raise KeyError(f"unknown drum {drum!r}; use one of {sorted(DRUM_KEYS)}")
    return tuple((drum, g.replace(" ", "")) for drum, g in hits.items())


@functools.cache
def parse_grid(text: str) -> tuple[tuple[int, int, str], ...]:
    """(step, length, symbol) for each onset of a grid; `-` extends the previous onset."""
    g = text.replace(" ", "")
    out = []
    for i, c in enumerate(g):
        if c in "-.":
            continue
        n = 1
        while i + n < len(g) and g[i + n] == "-":
            n += 1
        out.append((i, n, c))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Part:
    """One instrument of a line-up. `role` is melody, chords, pad, arp or bass; `name`
    is what the caption says; `octave` shifts the part from the role's register."""

    role: str
    name: str
    program: int
    octave: int = 0


@dataclasses.dataclass(frozen=True)
class Lineup:
    """An instrumentation option; `ensemble` names it for captions (or None)."""

    ensemble: str | None
    parts: tuple[Part, ...]


@dataclasses.dataclass(frozen=True)
class DrumKit:
    """Verse groove, chorus groove and a one-bar fill (only its last beats are used)."""

    main: Pattern
    alt: Pattern
    fill: Pattern
    name: str = "drums"


@dataclasses.dataclass(frozen=True)
class MelodySpec:
    """How the lead line moves.

    Attributes:
        low, high: range in scale degrees from the tonic (7 = the octave above).
        grid: rhythmic slot in 16th notes (2 = 8th notes).
        density: chance that a slot starts a note.
        leap: chance of a leap instead of a step between off-beat notes.
        max_steps: longest note, in 16ths, inside a phrase.
    """

    low: int = -2
    high: int = 9
    grid: int = 2
    density: float = 0.5
    leap: float = 0.2
    max_steps: int = 8


@dataclasses.dataclass(frozen=True)
class Style:
    """Everything `compose` needs to write a piece in one style.

    Attributes:
        name: key in `STYLES`.
        genre: genre as captions say it.
        bpm: inclusive tempo range (quarter notes a minute).
        time_signature: (numerator, denominator).
        swing: where an off-beat 8th falls within the beat (0.5 straight, 2/3 triplet swing).
        modes: modes a piece may take.
        moods_major, moods_minor: moods that fit a bright (major, mixolydian, lydian)
            or dark (minor, dorian, phrygian) mode.
        dynamics: dynamics profiles an arrangement may take.
        lineups: instrumentation options; each has melody, bass and chords or pad.
        progressions: chord progressions, roman numerals one a bar.
        bass: bass figures (grids); comp: comping rhythms (grids).
        melody: the lead line's character.
        drums: the kit's patterns, or None for a drumless style.
        backbeats: beats (0-based) where the main groove has snare, clap or side stick.
        forms: section plans, (name, bars) each; after the last section the form
            repeats from the first section after the intro.
        dominant: play every chord as a dominant seventh (blues).
        major_v: in dark modes, play the V chord major (harmonic minor).
    """

    name: str
    genre: str
    bpm: tuple[int, int]
    modes: tuple[str, ...]
    moods_major: tuple[str, ...]
    moods_minor: tuple[str, ...]
    dynamics: tuple[str, ...]
    lineups: tuple[Lineup, ...]
    progressions: tuple[str, ...]
    bass: tuple[str, ...]
    comp: tuple[str, ...]
    melody: MelodySpec
    drums: DrumKit | None
    forms: tuple[Form, ...]
    backbeats: tuple[int, ...] = ()
    time_signature: tuple[int, int] = (4, 4)
    swing: float = 0.5
    dominant: bool = False
    major_v: bool = False

    @property
    def steps_per_bar(self) -> int:
        num, den = self.time_signature
        return num * 16 // den
