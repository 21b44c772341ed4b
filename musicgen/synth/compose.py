"""Procedurally composed multi-track pieces in the styles of `styles.py`.

Two seeds split the work the way a songwriter and an arranger split it.
`composition_seed` fixes everything written relative to the tonic: mode, form,
chord progression per section, voicings, melody, bass line and comping rhythm.
`arrangement_seed` fixes how it is played: tempo, key, instruments, dynamics,
mix and drum fills. The composition is an endless chain of sections cut to
length, so another tempo (more or fewer bars) keeps the same music in the bars
both versions share; only the last bar, which always ends on a held chord,
depends on the length.

This module holds `compose` and the performance: each section's events placed in
the piece, velocities, swing, the drum grooves and fills. What the two seeds decide is
in `composition.py`, the chords in `harmony.py`, the bass line and melody in `lines.py`.
"""

from __future__ import annotations

import functools
import math

from musicgen.synth.composition import Arrangement, Composition, arrange
from musicgen.synth.harmony import Chord, key_name
from musicgen.synth.score import DRUM_KEYS, Note, Piece, Track
from musicgen.synth.style_types import ACCENT, Style, parse_grid
from musicgen.synth.styles import STYLES

DYNAMICS = {"soft": (64, 64), "moderate": (84, 84), "loud": (104, 104), "building": (58, 108)}
_SECTION_GAIN = {"intro": 0.85, "verse": 0.92, "chorus": 1.05, "bridge": 0.95}
_ROLE_GAIN = {"melody": 1.0, "chords": 0.8, "pad": 0.7, "arp": 0.75, "bass": 0.95}


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
    comp, arr = Composition(st, composition_seed), arrange(st, arrangement_seed)
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


def _events(comp: Composition, arr: Arrangement, plan, n_bars: int):
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


def _end_on_chord(ev: dict, last: int, spb: int, chord: Chord, voicing, kind: str) -> None:
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


def _pitched(arr: Arrangement, ev: dict, total: int, level, beat) -> list[Track]:
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


def _drums(st: Style, arr: Arrangement, plan, bar_section, level, beat) -> list[Note]:
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
            vel = (40 + 0.6 * level[bar]) * gain * ACCENT[c] + arr.jitter[k % len(arr.jitter)]
            k += 1
            vel = int(min(127, max(1, round(vel))))
            notes.append(Note(DRUM_KEYS[drum], beat(bar * spb + s), 0.25, vel))
    return notes


@functools.cache
def _bar_hits(g: str, bar_in_section: int, spb: int) -> tuple[tuple[int, str], ...]:
    """(step, symbol) of a drum grid within one bar; multi-bar grids cycle."""
    which = bar_in_section % max(1, len(g) // spb)
    return tuple((s - which * spb, c) for s, _, c in parse_grid(g) if s // spb == which)
