"""Procedurally composed multi-track pieces in the styles of `styles.py`.

Two seeds split the work the way a songwriter and an arranger split it.
`composition_seed` fixes everything written relative to the tonic: mode, form,
chord progression per section, voicings, melody, bass line and comping rhythm.
`arrangement_seed` fixes how it is played: tempo, key, instruments, dynamics,
mix and drum fills. The composition is an endless chain of sections cut to
length, so another tempo (more or fewer bars) keeps the same music in the bars
both versions share; only the last bar, which always ends on a held chord,
depends on the length.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import zlib

import numpy as np

from musicgen.synth.score import DRUM_KEYS, SCALES, Note, Piece, Track
from musicgen.synth.styles import STYLES, Part, Style

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

DYNAMICS = {"soft": (64, 64), "moderate": (84, 84), "loud": (104, 104), "building": (58, 108)}
_SECTION_GAIN = {"intro": 0.85, "verse": 0.92, "chorus": 1.05, "bridge": 0.95}
_ROLE_GAIN = {"melody": 1.0, "chords": 0.8, "pad": 0.7, "arp": 0.75, "bass": 0.95}
_ACCENT = {"X": 1.0, "x": 0.8, "o": 0.5}
# Per role: range of CC7 volume, and of distance from centre pan (side chosen per piece).
_MIX = {
    "melody": ((98, 115), (0, 14)), "chords": ((78, 96), (18, 40)), "pad": ((62, 84), (14, 34)),
    "arp": ((66, 86), (20, 44)), "bass": ((96, 110), (0, 0)),
}  # fmt: skip
FILL_POLICIES = ("section ends", "every 4 bars", "before chorus")

Event = tuple[int, int, int, float]  # start step, length in steps, semitones from tonic, accent


def key_name(pitch_class: int, mode: str) -> str:
    """The tonic's conventional spelling, e.g. key_name(10, "minor") == "Bb"."""
    parent = (pitch_class - _PARENT[mode]) % 12
    return (_FLATS if parent in _FLAT_PARENTS else _SHARPS)[pitch_class % 12]


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _seed(value: int) -> int:
    return int(value) % (1 << 63)  # default_rng wants non-negative entropy


@dataclasses.dataclass(frozen=True)
class _Chord:
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


def _parse_chord(token: str, scale: tuple[int, ...], style: Style, dark: bool) -> _Chord:
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise ValueError(f"{style.name}: cannot read chord {token!r}")
    root = _ROMAN.index(m.group(1).upper())
    seventh = bool(m.group(2)) or style.dominant
    degrees = tuple(root + 2 * k for k in range(4 if seventh else 3))
    base = _Chord(degrees, (), {}, scale)
    diatonic = [base.semi(d) for d in degrees]
    target = list(diatonic)
    if style.dominant:  # blues: every chord a dominant seventh
        target = [diatonic[0] + iv for iv in (0, 4, 7, 10)]
    elif style.major_v and dark and root == 4:  # harmonic minor's major V
        target[1] = diatonic[0] + 4
        if seventh:
            target[3] = diatonic[0] + 10
    alter = {d % 7: t - s for d, t, s in zip(degrees, target, diatonic, strict=True) if t != s}
    return _Chord(degrees, tuple(target), alter, scale, blue=style.dominant)


def _parse_progression(text: str, scale, style: Style, dark: bool) -> list[list[_Chord]]:
    return [[_parse_chord(t, scale, style, dark) for t in bar.split(",")] for bar in text.split()]


@functools.cache
def _parse_grid(text: str) -> tuple[tuple[int, int, str], ...]:
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


def _voice(chord: _Chord, prev: tuple[int, ...] | None) -> tuple[int, ...]:
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


@dataclasses.dataclass
class _Material:
    """One section's music, in steps from the section's start and semitones from the tonic."""

    chords: list[tuple[int, int, _Chord, tuple[int, ...]]]  # start, length, chord, voicing
    melody: list[Event]
    bass: list[Event]
    comp: list[tuple[int, int, float]]  # start, length, accent

    def chord_at(self, step: int) -> tuple[_Chord, tuple[int, ...], int]:
        """The chord sounding at `step`, its voicing and the step where it ends."""
        for start, length, chord, voicing in self.chords:
            if step < start + length:
                return chord, voicing, start + length
        _, length, chord, voicing = self.chords[-1]
        return chord, voicing, self.chords[-1][0] + length


class _Composition:
    """Everything `composition_seed` decides; section material is built on demand."""

    def __init__(self, style: Style, seed: int):
        self.style, self.seed = style, _seed(seed)
        rng = np.random.default_rng([self.seed, _crc(style.name), 0])
        self.mode = style.modes[rng.integers(len(style.modes))]
        self.scale = MODES[self.mode]
        dark = self.mode in DARK_MODES
        moods = style.moods_minor if dark else style.moods_major
        self.mood = moods[rng.integers(len(moods))]
        self.form = style.forms[rng.integers(len(style.forms))]
        parsed = [_parse_progression(p, self.scale, style, dark) for p in style.progressions]
        pool = [p for p in parsed if not any(c.diminished for bar in p for c in bar)] or parsed
        order = rng.permutation(len(pool))
        self.progression = {
            k: pool[order[i % len(pool)]] for i, k in enumerate(("verse", "chorus", "bridge"))
        }
        self.bass = {k: style.bass[rng.integers(len(style.bass))] for k in ("verse", "chorus")}
        self.comp = {k: style.comp[rng.integers(len(style.comp))] for k in ("verse", "chorus")}
        self.arp_shape = int(rng.integers(3))
        self._cache: dict[tuple[str, int, int], _Material] = {}

    def plan(self, n_bars: int) -> list[tuple[str, int, int, int]]:
        """(kind, bars, variant, first bar) of each section until `n_bars` are covered.

        After the form's last section it repeats from the section after the intro; a
        section's second, fourth, ... occurrence is variant 1 (a different ending).
        """
        out, bar, i, seen = [], 0, 0, {}
        while bar < n_bars:
            kind, bars = self.form[i]
            count = seen.get((kind, bars), 0)
            seen[(kind, bars)] = count + 1
            out.append((kind, bars, count % 2, bar))
            bar += bars
            i = i + 1 if i + 1 < len(self.form) else min(1, len(self.form) - 1)
        return out

    def material(self, kind: str, bars: int, variant: int) -> _Material:
        key = (kind, bars, variant)
        if key not in self._cache:
            self._cache[key] = self._build(kind, bars, variant)
        return self._cache[key]

    def _build(self, kind: str, bars: int, variant: int) -> _Material:
        style, spb = self.style, self.style.steps_per_bar
        tag = [self.seed, _crc(style.name), _crc(kind), bars]
        rng = np.random.default_rng([*tag, 0])
        prog = self.progression["verse" if kind == "intro" else kind]
        chords, voicing = [], None
        for b in range(bars):  # an intro plays the verse progression's last bars, as a lead-in
            bar = prog[(b - bars) % len(prog)] if kind == "intro" else prog[b % len(prog)]
            for j, chord in enumerate(bar):
                voicing = _voice(chord, voicing)
                start = b * spb + j * spb // len(bar)
                chords.append((start, spb // len(bar), chord, voicing))
        mat = _Material(chords, [], [], [])
        figure_kind = "chorus" if kind == "chorus" else "verse"
        mat.bass = _bass_line(self.bass[figure_kind], mat, bars * spb, spb, rng)
        comp = _parse_grid(self.comp[figure_kind])
        period = len(self.comp[figure_kind].replace(" ", ""))
        for rep in range(-(-bars * spb // period)):
            for s, n, c in comp:
                if rep * period + s < bars * spb:
                    mat.comp.append((rep * period + s, n, _ACCENT.get(c, 0.8)))
        if kind != "intro":
            var_rng = np.random.default_rng([*tag, 1 + variant])
            mat.melody = _melody(style, kind, mat, bars, rng, var_rng if variant else None)
        return mat


def _bass_line(figure: str, mat: _Material, total: int, spb: int, rng) -> list[Event]:
    """The bass figure cycled over the section, its tones read against each chord."""
    events, prev = [], 0
    period = len(figure.replace(" ", ""))
    for rep in range(-(-total // period)):
        for s, n, tone in _parse_grid(figure):
            t = rep * period + s
            if t >= total:
                break
            chord, _, _ = mat.chord_at(t)
            nxt, _, _ = mat.chord_at(t + n) if t + n < total else mat.chord_at(0)
            prev = _bass_tone(tone, chord, nxt, prev, rng)
            events.append((t, n, prev, 1.0 if t % spb == 0 else 0.85))
    return events


def _bass_tone(tone: str, chord: _Chord, nxt: _Chord, prev: int, rng) -> int:
    def base(c: _Chord) -> int:  # the root in the bass's octave (-4..7 from the tonic)
        r = c.semis[0] % 12
        return r if r <= 7 else r - 12

    def above(c: _Chord, k: int) -> int:  # semitones from the root up to the degree k above it
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


def _melody(style: Style, kind: str, mat: _Material, bars: int, rng, var_rng) -> list[Event]:
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


def _snap(degree: int, chord: _Chord) -> int:
    for delta in (0, -1, 1, -2, 2):
        if (degree + delta) % 7 in chord.tones:
            return degree + delta
    return degree


def _strong(step: int, spec, spb: int) -> bool:
    """Strong slots take chord tones: every other slot from the bar line (beats for an
    8th-note line, half bars for a quarter-note one)."""
    return (step % spb) % (2 * spec.grid) == 0


def _pitches(rhythm, mat: _Material, spec, spb: int, center: float, prev: int, rng) -> list[int]:
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


@dataclasses.dataclass(frozen=True)
class _Arrangement:
    """Everything `arrangement_seed` decides."""

    bpm: int
    pitch_class: int
    parts: tuple[Part, ...]
    ensemble: str | None
    dynamics: str
    fill_policy: str
    fill_beats: int
    crash_every_section: bool
    mix: tuple[tuple[int, int], ...]  # (CC7 volume, CC10 pan) per part
    drum_volume: int
    jitter: np.ndarray  # velocity humanisation, cycled


def _arrange(style: Style, seed: int) -> _Arrangement:
    rng = np.random.default_rng([_seed(seed), _crc(style.name), 1])
    bpm = int(rng.integers(style.bpm[0], style.bpm[1] + 1))
    pitch_class = int(rng.integers(12))
    lineup = style.lineups[rng.integers(len(style.lineups))]
    dynamics = style.dynamics[rng.integers(len(style.dynamics))]
    fill_policy = FILL_POLICIES[rng.integers(len(FILL_POLICIES))]
    fill_beats = int(rng.integers(1, 3)) if style.steps_per_bar >= 16 else 1
    crash = bool(rng.random() < 0.5)
    side = 1 if rng.random() < 0.5 else -1
    mix, seen = [], {}
    for part in lineup.parts:
        (v_lo, v_hi), (p_lo, p_hi) = _MIX[part.role]
        # Comping and pads on opposite sides; a second part of a role mirrors the first.
        s = (side if part.role in ("chords", "arp") else -side) * (-1) ** seen.get(part.role, 0)
        seen[part.role] = seen.get(part.role, 0) + 1
        mix.append((int(rng.integers(v_lo, v_hi + 1)), 64 + s * int(rng.integers(p_lo, p_hi + 1))))
    return _Arrangement(
        bpm, pitch_class, lineup.parts, lineup.ensemble, dynamics, fill_policy, fill_beats, crash,
        tuple(mix), int(rng.integers(100, 116)), rng.integers(-4, 5, size=257),
    )  # fmt: skip


def compose(style: str, composition_seed: int, arrangement_seed: int, seconds: float) -> Piece:
    """A multi-track piece in `style`, whole bars, at least `seconds` and under a bar more.

    Tracks come in role order: melody parts first, then chords, arpeggio, pad, bass
    and drums (when the style has drums).

    Args:
        style: a key of `STYLES`.
        composition_seed: decides the music relative to the tonic (mode, form,
            chords, melody, bass line).
        arrangement_seed: decides tempo, key, instrumentation, dynamics, mix and fills.
        seconds: the least duration at the piece's tempo.
    """
    if style not in STYLES:
        raise KeyError(f"unknown style {style!r}; choose one of {sorted(STYLES)}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    st = STYLES[style]
    comp, arr = _Composition(st, composition_seed), _arrange(st, arrangement_seed)
    num, den = st.time_signature
    n_bars = max(1, math.ceil(seconds * arr.bpm / 60 / (num * 4 / den) - 1e-9))
    plan = comp.plan(n_bars)
    ev, bar_section = _events(comp, arr, plan, n_bars)
    lo, hi = DYNAMICS[arr.dynamics]
    level = [lo + (hi - lo) * b / max(1, n_bars - 1) for b in range(n_bars)]
    swing = [_swing(f / 4, st.swing) for f in range(4)]

    def beat(step: int) -> float:  # a 16th step's time in beats, swung
        return step // 4 + swing[step % 4]

    tracks = _pitched(arr, ev, n_bars * st.steps_per_bar, level, beat)
    if st.drums is not None:
        drums = _drums(st, arr, plan, bar_section, level, beat)
        tracks.append(Track(st.drums.name, 0, drums, is_drum=True, volume=arr.drum_volume))
    attributes = {
        "genre": st.genre, "mood": comp.mood, "dynamics": arr.dynamics, "ensemble": arr.ensemble,
        "source": "procedural", "source_work": f"procedural {style} composition {composition_seed}",
        "composer": None, "composition_id": f"procedural/{style}/{composition_seed}",
    }  # fmt: skip
    key = key_name(arr.pitch_class, comp.mode)
    return Piece(tracks, float(arr.bpm), st.time_signature, key, comp.mode, attributes)


def _events(comp: _Composition, arr: _Arrangement, plan, n_bars: int):
    """Each role's events in absolute steps, (step, steps, semitones, accent, section kind),
    and each bar's (section kind, bar in section, section length)."""
    spb = comp.style.steps_per_bar
    has_chords = any(p.role == "chords" for p in arr.parts)
    ev: dict[str, list] = {r: [] for r in _ROLE_GAIN}
    bar_section: list[tuple[str, int, int]] = []
    for kind, bars, variant, first in plan:
        mat = comp.material(kind, bars, variant)
        off, limit = first * spb, min(bars, n_bars - first) * spb
        bar_section += [(kind, b, bars) for b in range(limit // spb)]
        for role in ("melody", "bass"):
            for s, n, semi, acc in getattr(mat, role):
                if s < limit:
                    ev[role].append((off + s, min(n, limit - s), (semi,), acc, kind))
        for s, n, acc in mat.comp:
            if s < limit:
                _, voicing, end = mat.chord_at(s)
                ev["chords"].append((off + s, min(n, end - s, limit - s), voicing, acc, kind))
        # Pads and arpeggios fill out the chorus and bridge, or carry the harmony alone.
        if not has_chords or kind in ("chorus", "bridge"):
            for s, n, _, voicing in mat.chords:
                if s >= limit:
                    continue
                ev["pad"].append((off + s, min(n, limit - s), voicing, 0.9, kind))
                tones = _arp_tones(voicing, comp.arp_shape)
                for j, t in enumerate(range(s, min(s + n, limit), 2)):
                    acc = 0.9 if t % 4 == 0 else 0.7
                    ev["arp"].append((off + t, 2, (tones[j % len(tones)],), acc, kind))
        if first + bars >= n_bars:
            chord, voicing, _ = mat.chord_at(limit - spb)
            _end_on_chord(ev, off + limit - spb, spb, chord, voicing, kind)
    return ev, bar_section


def _arp_tones(voicing: tuple[int, ...], shape: int) -> tuple[int, ...]:
    up = (*voicing, voicing[0] + 12)
    if shape == 0:
        return up
    if shape == 1:
        return up + up[-2:0:-1]
    return tuple(v for pair in zip(up[::2], up[1::2], strict=False) for v in pair)


def _end_on_chord(ev: dict, last: int, spb: int, chord: _Chord, voicing, kind: str) -> None:
    """The final bar: bass, comping and melody hold the bar's chord to the end."""
    for role in ("melody", "bass", "chords"):
        ev[role] = [(s, min(n, last - s), *rest) for s, n, *rest in ev[role] if s < last]
    r = chord.semis[0] % 12
    ev["bass"].append((last, spb, (r if r <= 7 else r - 12,), 1.0, kind))
    ev["chords"].append((last, spb, voicing, 0.9, kind))
    if kind != "intro" and ev["melody"]:  # settle on the chord tone nearest the last note
        prev = ev["melody"][-1][2][0]
        tones = [chord.semi(d, melody=True) + 12 * o for d in chord.tones for o in range(-2, 3)]
        ev["melody"].append((last, spb, (min(tones, key=lambda x: abs(x - prev)),), 0.9, kind))


def _pitched(arr: _Arrangement, ev: dict, total: int, level, beat) -> list[Track]:
    """Notes for each part: the tonic placed by key, velocities by dynamics and section."""
    pc = arr.pitch_class
    mid = 60 + pc if pc < 6 else 48 + pc  # the tonic between F#3 and F4
    bass_tonic = 36 + pc if pc < 8 else 24 + pc  # between Ab1 and G2
    end, spb = beat(total), total // len(level)
    order = ("melody", "chords", "arp", "pad", "bass")
    tracks, k = [], 0
    for i in sorted(range(len(arr.parts)), key=lambda i: order.index(arr.parts[i].role)):
        part, (volume, pan) = arr.parts[i], arr.mix[i]
        root = (bass_tonic if part.role == "bass" else mid) + 12 * part.octave
        legato = 1.0 if part.role == "pad" else 0.92
        notes = []
        for s, n, semis, acc, kind in ev[part.role]:
            start = beat(s)
            dur = min(beat(s + n), end) - start
            dur *= legato if s + n < total else 1.0  # the last notes ring to the very end
            vel = level[s // spb] * _SECTION_GAIN[kind] * _ROLE_GAIN[part.role]
            vel = int(min(127, max(1, round(vel * acc + arr.jitter[k % len(arr.jitter)]))))
            k += 1
            notes += [Note(root + semi, start, dur, vel) for semi in semis]
        tracks.append(Track(part.name, part.program, notes, pan=pan, volume=volume))
    return tracks


def _swing(f: float, ratio: float) -> float:
    """Moves a position within the beat so the off-beat 8th lands at `ratio`."""
    return f / 0.5 * ratio if f <= 0.5 else ratio + (f - 0.5) / 0.5 * (1 - ratio)


def _is_fill(policy: str, bar: int, bar_section: list) -> bool:
    if bar >= len(bar_section) - 1:  # the last bar ends the piece on a crash instead
        return False
    _, b, length = bar_section[bar]
    if policy == "every 4 bars":
        return b == length - 1 or b % 4 == 3
    if policy == "before chorus":
        return b == length - 1 and bar_section[bar + 1][0] == "chorus"
    return b == length - 1


def _drums(st: Style, arr: _Arrangement, plan, bar_section, level, beat) -> list[Note]:
    """The kit: verse groove, chorus groove, fills and crashes where sections begin."""
    kit, spb = st.drums, st.steps_per_bar
    n_bars = len(bar_section)
    fill_from = spb - 4 * arr.fill_beats
    starts = {first for *_, first in plan} | {n_bars - 1}
    notes, k = [], 0
    for bar, (kind, b, _) in enumerate(bar_section):
        fill = _is_fill(arr.fill_policy, bar, bar_section)
        hits = []
        for drum, g in kit.alt if kind == "chorus" else kit.main:
            hits += [(s, drum, c) for s, c in _bar_hits(g, b, spb) if not (fill and s >= fill_from)]
        if fill:
            hits += [
                (s, d, c) for d, g in kit.fill for s, c in _bar_hits(g, 0, spb) if s >= fill_from
            ]
        if bar in starts and bar > 0 and (kind == "chorus" or arr.crash_every_section or b > 0):
            hits.append((0, "crash", "X"))
        gain = 1 + (_SECTION_GAIN[kind] - 1) / 2  # drums follow the sections, but less
        for s, drum, c in hits:
            vel = (40 + 0.6 * level[bar]) * gain * _ACCENT[c] + arr.jitter[k % len(arr.jitter)]
            k += 1
            vel = int(min(127, max(1, round(vel))))
            notes.append(Note(DRUM_KEYS[drum], beat(bar * spb + s), 0.25, vel))
    return notes


@functools.cache
def _bar_hits(g: str, bar_in_section: int, spb: int) -> tuple[tuple[int, str], ...]:
    """(step, symbol) of a drum grid within one bar; multi-bar grids cycle."""
    which = bar_in_section % max(1, len(g) // spb)
    return tuple((s - which * spb, c) for s, _, c in _parse_grid(g) if s // spb == which)
