"""Accompaniment for a monophonic tune: harmony from the melody, bass and chord patterns.

A folk or fiddle tune from the corpus is a bare melody; an arrangement needs a band
around it. Each harmonic segment (a bar, or half a bar in long metres) gets the
diatonic triad of the tune's key and mode that best covers the melody sounding in
it, downbeat notes weighted most, with a prior toward the primary chords (I, IV, V;
V major in minor, bVII in modal tunes), the method of simple folk-guitar chording.
Instruments then realise the chords by role: a bass on the strong pulses, chords
on the afterbeats ("boom-chick") in dances, arpeggios or held chords in airs and
songs, inner voices holding chord tones in string and wind ensembles.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from musicgen.synth.ensembles import Ensemble, Instrument
from musicgen.synth.score import SCALES, Note

_STRUM_SECONDS = 0.012  # between strings of a strummed chord
_STYLE = {"guitar": "strum", "banjo": "strum", "harp": "arpeggio", "organ": "sustain"}


@dataclasses.dataclass(frozen=True)
class Grid:
    """The bars the accompaniment plays, as (start, end) in beats, and the metre's beat
    (a dotted quarter in compound metres such as 6/8)."""

    bars: tuple[tuple[float, float], ...]
    full: float  # a full bar's length in beats
    beat: float
    compound: bool
    halves: bool  # two chords a bar: 4/4, 2/2, 4/2, 6/4, 12/8


def grid_for(time_signature: tuple[int, int], bar_lines: list[float], end: float) -> Grid:
    """The grid of an excerpt ending at `end`, from the score's bar lines.

    A pickup before the first full bar is left to the melody alone; two short bars
    that make one full bar (a strain's last bar and the next strain's pickup) are one.
    """
    num, den = time_signature
    full = num * 4.0 / den
    compound = den >= 8 and num % 3 == 0 and num > 3
    beat = 1.5 * 8 / den if compound else 4.0 / den
    halves = num in (4, 12) or (num, den) in ((2, 2), (6, 4))
    lines = sorted({b for b in bar_lines if b < end - 1e-6} | {end})
    bars: list[tuple[float, float]] = []
    for s, e in itertools.pairwise(lines):
        prev = bars[-1] if len(bars) > 1 else None
        if prev and prev[1] - prev[0] < full - 1e-6 and e - prev[0] <= full + 1e-6:
            bars[-1] = (prev[0], e)
        else:
            bars.append((s, e))
    if len(bars) > 1 and bars[0][1] - bars[0][0] < full - 1e-6:
        bars = bars[1:]
    return Grid(tuple(bars), full, beat, compound, halves)


def tune_roles(ensemble: Ensemble) -> list[str]:
    """Each part's job in a tune: "solo" (melody and its own accompaniment), "melody",
    "accomp" (bass and chords), "bass", "chords" or "inner" (one chord tone)."""
    parts = ensemble.parts
    if len(parts) == 1:
        return ["solo"]
    roles = []
    for i, p in enumerate(parts):
        if i == 0 or p.role == "melody":
            roles.append("melody")
        elif i == len(parts) - 1:
            roles.append("accomp" if p.poly else "bass")
        else:
            roles.append("chords" if p.poly else "inner")
    return roles


def chords_of_key(tonic: int, mode: str) -> list[tuple[tuple[int, ...], float]]:
    """The key's usable triads as (pitch classes root first, prior score)."""
    scale = SCALES.get(mode, SCALES["major"])
    out = []
    for d in range(7):
        root, third, fifth = scale[d], scale[(d + 2) % 7], scale[(d + 4) % 7]
        if (fifth - root) % 12 != 7:
            continue  # diminished triads make poor folk harmony
        if mode == "minor" and d == 4:
            third = 11  # the major dominant of harmonic minor
        prior = {0: 0.35, 3: 0.2, 4: 0.2}.get(d, 0.0)
        if d == 6 and mode in ("mixolydian", "dorian", "aeolian", "minor"):
            prior = 0.1
        out.append((tuple((tonic + x) % 12 for x in (root, third, fifth)), prior))
    return out


def harmonise(
    melody: list[Note], grid: Grid, tonic: int, mode: str
) -> list[tuple[float, float, tuple[int, ...], float]]:
    """One triad per harmonic segment: [(start, end, pitch classes root first, bar start)]."""
    chords = chords_of_key(tonic, mode)
    out: list[tuple[float, float, tuple[int, ...], float]] = []
    prev = chords[0][0]
    for b0, b1 in grid.bars:
        mid = (b0 + b1) / 2
        split = grid.halves and b1 - b0 > grid.full - 1e-6
        for s, e in ((b0, mid), (mid, b1)) if split else ((b0, b1),):
            weights = np.zeros(12)
            for n in melody:
                overlap = min(n.start + n.duration, e) - max(n.start, s)
                if overlap <= 0:
                    continue
                x = (n.start - b0) / grid.beat
                accent = 2.0 if n.start <= s + 1e-6 else 1.4 if abs(x - round(x)) < 1e-6 else 1.0
                weights[n.pitch % 12] += overlap * accent
            total = weights.sum()
            if total > 0:

                def score(c, w=weights, total=total, prev=prev):
                    pcs, prior = c
                    inside = sum(w[p] for p in pcs) / total
                    return inside - 0.6 * (1 - inside) + prior + (0.15 if pcs == prev else 0.0)

                prev = max(chords, key=score)[0]
            out.append((s, e, prev, b0))
    end = grid.bars[-1][1] if grid.bars else 0.0
    last = [n for n in melody if n.start < end]
    if out and last and max(last, key=lambda n: n.start).pitch % 12 in chords[0][0]:
        out[-1] = (*out[-1][:2], chords[0][0], out[-1][3])  # end on the tonic
    return out


def _near(pcs: tuple[int, ...], low: int, high: int, target: float) -> int:
    """The pitch of one of `pcs` in [low, high] nearest `target`."""
    cands = [p for p in range(low, high + 1) if p % 12 in pcs]
    return min(cands, key=lambda p: (abs(p - target), p)) if cands else int(target)


def _voicing(pcs: tuple[int, ...], low: int, high: int, centre: float) -> list[int]:
    """A close-position triad inside [low, high] with its mean nearest `centre`."""
    best = None
    for base in range(low, high + 1):
        if base % 12 not in pcs:
            continue
        v = [base]
        p = base + 1
        while len(v) < 3 and p <= high:
            if p % 12 in pcs:
                v.append(p)
            p += 1
        if len(v) == 3 and (best is None or abs(np.mean(v) - centre) < abs(np.mean(best) - centre)):
            best = v
    return best or [_near(pcs, low, high, centre)]


@dataclasses.dataclass
class _Context:
    """What every part's realisation shares."""

    segments: list[tuple[float, float, tuple[int, ...], float]]
    pulse: float
    per_bar: int
    dance: bool
    strum_beats: float
    floor: int  # the melody's low register (10th percentile pitch)
    velocity: int
    rng: np.random.Generator
    inner_taken: dict[float, set[int]]


def accompany(
    melody: list[Note],
    ensemble: Ensemble,
    grid: Grid,
    tonic: int,
    mode: str,
    family: str,
    bpm: float,
    velocity: int,
    rng: np.random.Generator,
) -> list[list[Note]]:
    """Accompaniment notes for every part of `ensemble` (melody parts get none here).

    Args:
        melody: the tune, already transposed into the melody instrument's range.
        ensemble: the instrumentation; roles come from `tune_roles`.
        grid: bars of the excerpt.
        tonic, mode: the key after transposition (tonic as a pitch class).
        family: "dance" gives boom-chick patterns; "air" and "song" held or arpeggiated
            chords.
        bpm: quarter-note tempo (pulses are kept between about 0.25 and 0.55 s).
        velocity: base MIDI velocity of the accompaniment.
        rng: the arrangement's generator.
    """
    pulse = grid.beat
    while pulse * 60 / bpm > 0.55 and pulse >= 1.0 and not grid.compound:
        pulse /= 2
    if pulse * 60 / bpm < 0.25:
        pulse = grid.full
    ctx = _Context(
        segments=harmonise(melody, grid, tonic, mode),
        pulse=pulse,
        per_bar=max(1, round(grid.full / pulse)),
        dance=family == "dance",
        strum_beats=_STRUM_SECONDS * bpm / 60,
        floor=int(np.percentile([n.pitch for n in melody] or [72], 10)),
        velocity=velocity,
        rng=rng,
        inner_taken={},
    )
    roles = tune_roles(ensemble)
    return [
        [] if r == "melody" else _realise(p, r, ctx)
        for p, r in zip(ensemble.parts, roles, strict=True)
    ]


def _realise(inst: Instrument, role: str, ctx: _Context) -> list[Note]:
    """One accompanying part's notes, by its role and the instrument's playing style."""
    notes: list[Note] = []
    style = _STYLE.get(inst.name, "keys")
    pulse, dance = ctx.pulse, ctx.dance
    bass_lo = max(inst.low, 33)
    bass_hi = max(min(inst.high, 52 if role == "bass" else 55), bass_lo + 11)
    chigh = min(inst.high, 69, ctx.floor - 1)
    clow = max(inst.low, min(52, chigh - 12), bass_hi - 6 if role in ("accomp", "solo") else 0)
    chigh = max(chigh, clow + 9)
    centre, bass, inner = (clow + chigh) / 2, 43, min(ctx.floor - 5, inst.high)

    def add(pitch: int, start: float, dur: float, end: float, strong: bool, shift: int) -> None:
        dur = min(dur, end - start)
        if dur > 1e-3:
            v = ctx.velocity + (6 if strong else -3) + shift + int(ctx.rng.integers(-3, 4))
            notes.append(Note(int(pitch), start, dur, int(np.clip(v, 1, 127))))

    def chord(pcs, start: float, dur: float, end: float, strong: bool, up: bool = False) -> None:
        nonlocal centre
        v = _voicing(pcs, clow, chigh, centre)
        centre = 0.7 * centre + 0.3 * float(np.mean(v))
        for k, p in enumerate(v[::-1] if up else v):
            off = k * ctx.strum_beats if style == "strum" else 0.0
            add(p, start + off, dur - off, end, strong, -4)

    for s, e, pcs, b0 in ctx.segments:
        if role == "inner":  # one chord tone, a different one from the other inner part
            taken = ctx.inner_taken.setdefault(s, set())
            free = tuple(p for p in pcs if p not in taken) or pcs
            hi = min(inst.high, ctx.floor - 1)
            inner = _near(free, max(inst.low, hi - 14), max(hi, inst.low + 7), inner)
            taken.add(inner % 12)
        k = 0
        while s + k * pulse < e - 1e-6:
            t = s + k * pulse
            pos = round((t - b0) / pulse) % ctx.per_bar
            strong = pos == 0
            even = pos % 2 == 0 if ctx.per_bar % 2 == 0 else pos == 0
            if role in ("bass", "accomp", "solo") and (even if dance else k == 0):
                root_or_fifth = (pcs[0] if k == 0 or (k // 2) % 2 == 0 else pcs[2],)
                bass = _near(root_or_fifth, bass_lo, bass_hi, bass)
                add(bass, t, pulse * 0.85 if dance else e - t, e, strong, 4)
            if role == "inner":
                if dance and not even:
                    add(inner, t, pulse * 0.6, e, False, -4)
                elif not dance and k == 0:
                    add(inner, t, e - t, e, strong, -4)
            elif role != "bass":
                if dance:
                    if not even or (role == "chords" and style == "strum"):
                        chord(pcs, t, pulse * 0.7, e, strong, up=not even)
                elif style == "sustain" or (style == "keys" and role == "chords"):
                    if k == 0:
                        chord(pcs, t, e - t, e, strong)
                else:  # arpeggio: chord tones in turn, each left ringing
                    v = _voicing(pcs, clow, chigh, centre)
                    seq = v + v[1:-1][::-1] if len(v) > 2 else v
                    sub = pulse if pulse <= 0.75 else pulse / 2
                    j = 0
                    while j * sub < pulse - 1e-6 and t + j * sub < e - 1e-6:
                        st = t + j * sub
                        if not (role in ("accomp", "solo") and k == 0 and j == 0):
                            add(seq[round((st - s) / sub) % len(seq)], st, sub * 2, e, False, -6)
                        j += 1
            k += 1
    return notes
