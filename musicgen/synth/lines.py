"""The bass line and the melody of a composed section (`compose.py`).

Both are written against the section's chords, held in a `Material`: the bass figure
cycles and reads its chord-relative tones against each chord; the melody is built from
phrase units in an a-b-a-b plan, chord tones on strong slots and steps between them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from musicgen.synth.harmony import Chord
from musicgen.synth.style_types import Style, parse_grid

Event = tuple[int, int, int, float]  # start step, length in steps, semitones from tonic, accent


@dataclasses.dataclass
class Material:
    """One section's music, in steps from the section's start and semitones from the tonic."""

    chords: list[tuple[int, int, Chord, tuple[int, ...]]]  # start, length, chord, voicing
    melody: list[Event]
    bass: list[Event]
    comp: list[tuple[int, int, float]]  # start, length, accent

    def chord_at(self, step: int) -> tuple[Chord, tuple[int, ...], int]:
        """The chord sounding at `step`, its voicing and the step where it ends."""
        for start, length, chord, voicing in self.chords:
            if step < start + length:
                return chord, voicing, start + length
        _, length, chord, voicing = self.chords[-1]
        return chord, voicing, self.chords[-1][0] + length


def bass_line(figure: str, mat: Material, total: int, spb: int, rng) -> list[Event]:
    """The bass figure cycled over the section, its tones read against each chord."""
    events, prev = [], 0
    period = len(figure.replace(" ", ""))
    for rep in range(-(-total // period)):
        for s, n, tone in parse_grid(figure):
            t = rep * period + s
            if t >= total:
                break
            chord, _, _ = mat.chord_at(t)
            nxt, _, _ = mat.chord_at(t + n) if t + n < total else mat.chord_at(0)
            prev = _bass_tone(tone, chord, nxt, prev, rng)
            events.append((t, n, prev, 1.0 if t % spb == 0 else 0.85))
    return events


def _bass_tone(tone: str, chord: Chord, nxt: Chord, prev: int, rng) -> int:
    def base(c: Chord) -> int:  # the root in the bass's octave (-4..7 from the tonic)
        r = c.semis[0] % 12
        return r if r <= 7 else r - 12

    def above(c: Chord, k: int) -> int:  # semitones from the root up to the degree k above it
        return c.semi(c.degrees[0] + k) - c.semi(c.degrees[0])

    root = base(chord)
    fixed = {"R": 0, "8": 12, "3": chord.semis[1] - chord.semis[0]}
    fixed["5"] = chord.semis[2] - chord.semis[0]
    fixed["6"] = above(chord, 5)
    fixed["7"] = chord.semis[3] - chord.semis[0] if len(chord.semis) > 3 else above(chord, 6)
    if tone in fixed:
        return root + fixed[tone]
    if tone == "A":  # approach the next root from a semitone below or a scale step either side
        target = base(nxt)
        options = (target - 1, target + above(nxt, 1), target - (12 - above(nxt, 6)))
        return options[rng.integers(3)]
    options = [root + fixed[k] for k in ("3", "5", "6", "8")] + [root + above(chord, 1)]
    options = [o for o in options if o != prev]
    return options[rng.integers(len(options))]


def _rhythm(style: Style, density: float, unit: int, rng, keep=()) -> list[tuple[int, int]]:
    """Onsets and lengths for one phrase unit; onsets in `keep` are reused verbatim."""
    spec, spb = style.melody, style.steps_per_bar
    slots = np.arange(0, unit, spec.grid)
    # Downbeats most likely, then beats, then off-beats.
    p = np.where(slots % 4 == 0, density + 0.1, density - 0.15)
    p[slots % spb == 0] = density + 0.35
    onsets = [int(s) for s in slots[rng.random(len(slots)) < p]]
    if keep:
        onsets = list(keep) + [s for s in onsets if s >= unit // 2]
    if len(onsets) > 3 and rng.random() < 0.6:  # breathe before the next phrase
        onsets = [s for s in onsets if s < unit - 4]
    onsets = onsets or [0]
    out = []
    for i, s in enumerate(onsets):
        gap = (onsets[i + 1] if i + 1 < len(onsets) else unit) - s
        out.append((s, min(gap, spec.max_steps if i + 1 < len(onsets) else 2 * spec.max_steps)))
    return out


def melody_line(style: Style, kind: str, mat: Material, bars: int, rng, var_rng) -> list[Event]:
    """Phrase units (2 bars, or 4 short bars) in an a-b-a-b plan, ending on a chord tone."""
    spec, spb = style.melody, style.steps_per_bar
    density = spec.density * {"verse": 0.9, "chorus": 1.1, "bridge": 0.8}[kind]
    center = (spec.low + spec.high) / 2 + {"verse": -1, "chorus": 1.5, "bridge": 0}[kind]
    unit = (2 if spb >= 12 else 4) * spb
    total = bars * spb
    a = _rhythm(style, density, unit, rng)
    b = _rhythm(style, density, unit, rng, keep=[s for s, _ in a if s < unit // 2])
    templates: dict[int, list[int]] = {}
    events, prev = [], round(center)
    n_units = -(-total // unit)
    for k in range(n_units):
        rhythm = [(k * unit + s, n) for s, n in (a if k % 2 == 0 else b) if k * unit + s < total]
        last = k == n_units - 1
        varied = last and var_rng is not None
        if k < 2 or varied:
            degrees = _pitches(rhythm, mat, spec, spb, center, prev, var_rng if varied else rng)
            templates.setdefault(k % 2, degrees)
        else:  # repeat the phrase, nudging strong-beat notes onto the new chords
            degrees = [
                _snap(d, mat.chord_at(s)[0]) if _strong(s, spec, spb) else d
                for (s, _), d in zip(rhythm, templates[k % 2], strict=False)
            ]
            rhythm = rhythm[: len(degrees)]
        if last and degrees:  # cadence: the last note on the nearest chord tone, held
            degrees[-1] = _snap(degrees[-1], mat.chord_at(rhythm[-1][0])[0])
            s = rhythm[-1][0]
            rhythm[-1] = (s, max(rhythm[-1][1], min(total - s, 2 * spec.max_steps)))
        for (s, n), d in zip(rhythm, degrees, strict=False):
            chord = mat.chord_at(s)[0]
            accent = 1.0 if s % spb == 0 else 0.9 if s % 4 == 0 else 0.8
            events.append((s, min(n, total - s), chord.semi(d, melody=True), accent))
            prev = d
    return events


def _snap(degree: int, chord: Chord) -> int:
    for delta in (0, -1, 1, -2, 2):
        if (degree + delta) % 7 in chord.tones:
            return degree + delta
    return degree


def _strong(step: int, spec, spb: int) -> bool:
    """Strong slots take chord tones: every other slot from the bar line (beats for an
    8th-note line, half bars for a quarter-note one)."""
    return (step % spb) % (2 * spec.grid) == 0


def _pitches(rhythm, mat: Material, spec, spb: int, center: float, prev: int, rng) -> list[int]:
    """Chord tones on strong slots, steps and the odd leap between them, kept within range."""
    out, d = [], prev
    direction = 1 if rng.random() < 0.5 else -1
    span = np.arange(spec.low, spec.high + 1)
    for i, (s, _) in enumerate(rhythm):
        chord = mat.chord_at(s)[0]
        if _strong(s, spec, spb) or i == 0:
            cands = span[np.isin(span % 7, list(chord.tones))]
            w = np.exp(-np.abs(cands - d) / 2.0 - np.abs(cands - center) / 5.0)
            w[cands == d] *= 0.25  # repeated notes now and then, not as a habit
            d = int(rng.choice(cands, p=w / w.sum()))
        else:
            step = int(rng.integers(2, 5)) if rng.random() < spec.leap else 1
            if rng.random() < 0.25:
                direction = -direction
            if not spec.low <= d + direction * step <= spec.high:
                direction = -direction
            d = min(spec.high, max(spec.low, d + direction * step))
        out.append(d)
    return out
