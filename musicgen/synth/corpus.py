"""Real compositions from the music21 corpus, arranged for General MIDI ensembles.

The corpus ships inside the music21 package: Bach chorales, Palestrina mass
movements, Monteverdi and trecento madrigals, classical string quartets, and ABC
collections of fiddle tunes, Irish and Scottish airs and European folk songs.
`list_works` indexes it (`corpus_index.py`); `arrange` parses one work (only the
bars an excerpt can use), then makes one arrangement of it, deterministic in
(work, arrangement seed): an ensemble suited to the genre (`ensembles.py`), a tempo
from the genre and the notation's note density, a transposition of a few
semitones that keeps every part in its instrument's range, and dynamics. Polyphonic
works keep their voices, mapped high to low onto the instruments; a monophonic tune
gets a harmonised accompaniment (`accompany.py`).

Times are in quarter-note beats at one tempo (`score.py`): `bpm` counts quarter
notes, so a jig at 110 dotted quarters a minute has bpm 165.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import zlib

import numpy as np

from musicgen.synth import accompany, ensembles
from musicgen.synth.corpus_index import Work, build_index, source_work
from musicgen.synth.corpus_parse import Source, parse_work
from musicgen.synth.ensembles import ENSEMBLES, Ensemble, Instrument
from musicgen.synth.score import Note, Piece, Track

__all__ = [
    "ENSEMBLES",
    "Arrangement",
    "Work",
    "arrange",
    "arrange_detailed",
    "family_of",
    "key_name",
    "list_works",
    "source_work",
]

log = logging.getLogger(__name__)

MAX_BPM = 240
# A genre's pace in note onsets a second (of one voice); bpm = 60 * pace / onsets a beat.
_RATES = {
    "reel": (5.0, 6.8), "jig": (4.5, 6.0), "slip jig": (4.5, 6.0), "slide": (5.0, 6.5),
    "hornpipe": (4.0, 5.5), "strathspey": (3.6, 4.8), "highland fling": (3.6, 4.8),
    "clog dance": (4.0, 5.5), "polka": (4.0, 5.5), "schottische": (3.5, 4.8),
    "mazurka": (3.0, 4.5), "quickstep": (4.5, 6.0), "march": (3.5, 5.0), "set dance": (4.0, 5.5),
    "waltz": (2.5, 4.0), "minuet": (2.2, 3.5), "air": (1.6, 3.0), "lament": (1.4, 2.6),
}  # fmt: skip
_FAMILY_RATES = {
    "dance": (4.5, 6.5), "air": (1.8, 3.2), "song": (1.8, 3.4), "chorale": (0.8, 2.6),
    "sacred": (0.6, 2.6), "secular": (0.8, 3.2), "quartet": (2.0, 5.0),
}  # fmt: skip
# Polyphony's felt beat, in beats of its time signature a minute (a half note in 4/2).
_BEAT_BPM = {"chorale": (60, 100), "sacred": (50, 72), "secular": (60, 96)}
# Quarter-note bpm bounds; a reel's half-note pulse stays at most 104 a minute.
_BPM_LIMITS = {"quartet": (50, 176), "air": (40, 150), "song": (48, 160), "dance": (60, 208)}
_DANCE_METRES = {(6, 8), (9, 8), (12, 8), (2, 2)}

_MOODS = {  # family -> ((bright slow, medium, fast), (dark slow, medium, fast))
    "chorale": (
        (("peaceful", "calm"), ("majestic", "peaceful"), ("majestic", "uplifting", "joyful")),
        (("solemn", "sad"), ("solemn", "melancholic"), ("solemn", "dark")),
    ),
    "sacred": (
        (("peaceful", "calm", "solemn"), ("peaceful", "majestic"), ("majestic", "uplifting")),
        (("solemn", "mysterious"), ("solemn", "melancholic"), ("solemn", "majestic")),
    ),
    "secular": (
        (("romantic", "calm"), ("romantic", "playful"), ("joyful", "playful", "lively")),
        (("melancholic", "sad"), ("melancholic", "nostalgic"), ("tense", "dark")),
    ),
    "quartet": (
        (("calm", "romantic"), ("joyful", "playful"), ("lively", "energetic", "joyful")),
        (("melancholic", "dark"), ("tense", "melancholic"), ("tense", "energetic", "dark")),
    ),
    "dance": (
        (("laid-back", "playful"), ("joyful", "playful", "lively"), ("lively", "energetic")),
        (("melancholic", "mysterious"), ("lively", "dark"), ("energetic", "lively")),
    ),
    "air": (
        (("calm", "nostalgic", "romantic"), ("nostalgic", "peaceful"), ("happy", "playful")),
        (("melancholic", "sad"), ("melancholic", "nostalgic"), ("nostalgic", "melancholic")),
    ),
    "song": (
        (("calm", "nostalgic"), ("happy", "nostalgic"), ("happy", "joyful", "playful")),
        (("melancholic", "sad"), ("melancholic", "nostalgic"), ("melancholic", "dark")),
    ),
}
_BRIGHT = {"major", "lydian", "mixolydian"}
_DYNAMICS = {
    "chorale": ("soft", "moderate", "moderate", "building"),
    "sacred": ("soft", "moderate"),
    "secular": ("soft", "moderate", "moderate"),
    "quartet": ("soft", "moderate", "loud", "building"),
    "dance": ("moderate", "loud", "loud"),
    "air": ("soft", "soft", "moderate"),
    "song": ("soft", "moderate"),
}
_VELOCITY = {"soft": 50, "moderate": 74, "loud": 98, "building": 74}
_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_FIFTHS = {  # position on the circle of fifths, C = 0
    "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7, "G#": 8, "D#": 9, "A#": 10,
    "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5, "Gb": -6,
}  # fmt: skip
_MODE_FIFTHS = {"lydian": 1, "major": 0, "mixolydian": -1, "dorian": -2, "minor": -3,
                "aeolian": -3, "phrygian": -4, "locrian": -5}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Arrangement:
    """How a piece was made from its source, for checks and debugging.

    Attributes:
        ensemble: the instrumentation.
        transpose: semitones every part moved, besides whole octaves.
        instruments: per track of the piece, the ensemble part that plays it.
        octaves: per track, its octave shift in semitones (a multiple of 12; single
            notes still out of range are folded by further octaves).
        voices: per track, the source voices it plays (indices into `source.voices`);
            empty for the accompaniment tracks of a tune.
        source: the parsed source (all of it that was parsed).
        cut: the excerpt's end in beats.
    """

    ensemble: Ensemble
    transpose: int
    instruments: tuple[Instrument, ...]
    octaves: tuple[int, ...]
    voices: tuple[tuple[int, ...], ...]
    source: Source
    cut: float


@functools.lru_cache(maxsize=1)
def _index() -> tuple[Work, ...]:
    return tuple(build_index())


def list_works() -> list[Work]:
    """Every arrangeable work of the corpus, sorted by id; the same list on every call."""
    return list(_index())


def family_of(work: Work, time_signature: tuple[int, int] = (4, 4)) -> str:
    """The genre family that picks ensembles, tempo and mood (see `ensembles.FAMILIES`)."""
    g = work.genre
    if g == "baroque chorale":
        return "chorale"
    if g.endswith("string quartet"):
        return "quartet"
    if g in ("renaissance mass", "medieval mass movement", "medieval motet"):
        return "sacred"
    if g in ("madrigal", "renaissance chanson", "medieval ballata", "medieval madrigal"):
        return "secular"
    if g.endswith("folk song"):
        return "song"
    if g in ("air", "lament"):
        return "air"
    if g in _RATES or g in ("fiddle tune", "fife tune"):
        return "dance"
    return "dance" if tuple(time_signature) in _DANCE_METRES else "air"  # untyped tunes


def _rng(work: Work, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(work.id.encode()), int(seed) & 0xFFFFFFFF])


def key_name(tonic: int, mode: str) -> str:
    """The usual spelling of a tonic: the one whose key signature has fewer accidentals
    ("Bb" major, "F#" minor, "G" dorian); of two with six, F# major and flats otherwise
    (Eb minor, Ab dorian)."""
    shift = _MODE_FIFTHS.get(mode, 0)
    sharp, flat = _SHARP_NAMES[tonic], _FLAT_NAMES[tonic]
    s_sig, f_sig = abs(_FIFTHS[sharp] + shift), abs(_FIFTHS[flat] + shift)
    if s_sig != f_sig:
        return sharp if s_sig < f_sig else flat
    return sharp if tonic == 6 and shift == 0 else flat


def _density(voice: list[Note]) -> float:
    """Note onsets a beat, over the span the voice plays."""
    if not voice:
        return 0.0
    onsets = {round(n.start, 4) for n in voice}
    span = max(n.start + n.duration for n in voice) - min(n.start for n in voice)
    return len(onsets) / max(span, 1.0)


def _tempo(src: Source, work: Work, family: str, rng: np.random.Generator) -> tuple[int, float]:
    """(quarter-note bpm, where it lies in the genre's range from 0 slow to 1 fast).

    The range comes from the genre's pace in notes a second over the work's note density,
    narrowed for polyphony to the felt beat of its metre; a tune's own Q: field wins.
    """
    lo_rate, hi_rate = _RATES.get(work.genre, _FAMILY_RATES[family])
    density = float(np.median([_density(v) for v in src.voices if v]))
    lo, hi = 60 * lo_rate / density, 60 * hi_rate / density
    if family in _BEAT_BPM:
        num, den = src.time_signature
        beat = 1.5 * 8 / den if den >= 8 and num % 3 == 0 and num > 3 else 4 / den
        blo, bhi = (b * beat for b in _BEAT_BPM[family])
        lo, hi = (max(lo, blo), min(hi, bhi)) if max(lo, blo) < min(hi, bhi) else (blo, bhi)
    floor, ceil = _BPM_LIMITS.get(family, (40, MAX_BPM))
    lo, hi = float(np.clip(lo, floor, ceil)), float(np.clip(hi, floor, ceil))
    frac = float(rng.uniform())
    bpm = lo + frac * (hi - lo)
    if src.tempo and family in ("dance", "air", "song"):
        bpm = float(np.clip(src.tempo * (0.95 + 0.1 * frac), floor, ceil))
        frac = float(np.clip((bpm - lo) / max(hi - lo, 1.0), 0.0, 1.0))
    return round(bpm), frac


def _cut_point(src: Source, target: float) -> float:
    """The first bar line at or after `target` beats, if within a bar of it (bars can be
    irregular in folk sources); else the first note boundary there; else the end."""
    full = src.time_signature[0] * 4 / src.time_signature[1]
    bar = next((b for b in src.bars if b >= target - 1e-6), src.end)
    if bar <= target + full + 1e-6 or bar >= src.end:
        return min(bar, src.end)
    bounds = [x for v in src.voices for n in v for x in (n.start, n.start + n.duration)]
    return min((x for x in bounds if x >= target - 1e-6), default=src.end)


def _cut(voices: list[list[Note]], end: float) -> list[list[Note]]:
    return [
        [
            dataclasses.replace(n, duration=min(n.duration, end - n.start))
            for n in v
            if n.start < end - 1e-6
        ]
        for v in voices
    ]


def _clean(notes: list[Note]) -> list[Note]:
    """Sorted notes without two overlapping notes of one pitch (MIDI cannot sound both)."""
    notes = sorted(notes, key=lambda n: (n.pitch, n.start, -n.duration))
    out: list[Note] = []
    for n in notes:
        if out and out[-1].pitch == n.pitch and n.start < out[-1].start + out[-1].duration - 1e-6:
            prev = out[-1]
            if n.start - prev.start < 1e-6:
                continue  # a unison of two voices: one note
            out[-1] = dataclasses.replace(prev, duration=n.start - prev.start)
        out.append(n)
    return sorted(out, key=lambda n: (n.start, n.pitch))


def _dynamics_curve(dynamics: str, end: float):
    """A velocity multiplier over time: flat, or a crescendo for "building"."""
    if dynamics != "building":
        return lambda t: 1.0
    return lambda t: 0.68 + 0.55 * min(1.0, t / max(end, 1e-6))


def _velocity(base: int, n: Note, bar_lines: np.ndarray, curve, rng) -> int:
    on_bar = bar_lines.size and np.min(np.abs(bar_lines - n.start)) < 1e-6
    v = (base + (5 if on_bar else 0) + rng.integers(-4, 5)) * curve(n.start)
    return int(np.clip(round(v), 1, 127))


def _first_downbeat(bars: list[float], time_signature: tuple[int, int]) -> float:
    """Beats before the first full bar: a pickup's length (0 without one)."""
    full = time_signature[0] * 4.0 / time_signature[1]
    if len(bars) >= 3 and bars[1] - bars[0] < full - 1e-6:
        return float(bars[1] % full)
    return 0.0


def arrange(work: Work, arrangement_seed: int, max_seconds: float) -> Piece | None:
    """One arrangement of `work`, about `max_seconds` long, or None if it cannot be made.

    Args:
        work: an entry of `list_works()`.
        arrangement_seed: picks ensemble, tempo, transposition, dynamics; same seed,
            same piece.
        max_seconds: the excerpt ends at the first bar line at or after this time
            (at most one bar more); shorter works stay whole.

    Returns:
        The piece, or None for a work that does not parse, has no notes, or has no
        readable metre. Never raises.
    """
    try:
        made = arrange_detailed(work, arrangement_seed, max_seconds)
    except Exception as e:  # a bad corpus file must not stop a build
        log.debug("cannot arrange %s: %r", work.id, e)
        return None
    return made[0] if made else None


def arrange_detailed(
    work: Work, arrangement_seed: int, max_seconds: float
) -> tuple[Piece, Arrangement] | None:
    """`arrange`, also returning how the piece was made; raises on unexpected errors."""
    rng = _rng(work, arrangement_seed)
    src = parse_work(work, max_beats=max_seconds * MAX_BPM / 60)
    if src is None or not any(src.voices):
        return None
    family = family_of(work, src.time_signature)
    bpm, pace = _tempo(src, work, family, rng)
    cut = _cut_point(src, max_seconds * bpm / 60)
    voices = _cut(src.voices, cut)
    kept = [i for i, v in enumerate(voices) if v]
    if not kept:
        return None
    tune = family in ("dance", "air", "song")
    if tune:
        kept = kept[:1]
        pool = [e for e in ENSEMBLES if e.suits(family) and e.can_play_tune()]
    else:
        pool = [e for e in ENSEMBLES if e.suits(family) and e.can_play_voices(len(kept))]
        pool = pool or [e for e in ENSEMBLES if e.can_play_voices(len(kept))]
    ensemble = pool[int(rng.integers(len(pool)))]
    dynamics = str(rng.choice(_DYNAMICS[family]))
    bright = src.mode in _BRIGHT
    band = min(2, int(pace * 3))
    mood = str(rng.choice(_MOODS[family][0 if bright else 1][band]))
    base = _VELOCITY[dynamics] + int(rng.integers(-4, 5))
    if tune:
        parts, t = _arrange_tune(voices[kept[0]], src, ensemble, family, bpm, cut, base, rng)
    else:
        parts, t = _arrange_voices([voices[i] for i in kept], ensemble, base, rng)
        for p in parts:
            p.voices = tuple(kept[i] for i in p.voices)
    bar_lines = np.array([b for b in src.bars if b <= cut])
    curve = _dynamics_curve(dynamics, cut)
    for p in parts:
        notes = p.track.notes
        velocities = [_velocity(n.velocity, n, bar_lines, curve, rng) for n in notes]
        p.track.notes = _clean(
            [dataclasses.replace(n, velocity=v) for n, v in zip(notes, velocities, strict=True)]
        )
    parts = [p for p in parts if p.track.notes]
    tonic = (src.tonic + t) % 12
    piece = Piece(
        downbeat=_first_downbeat(src.bars, src.time_signature),
        tracks=[p.track for p in parts],
        bpm=float(bpm),
        time_signature=src.time_signature,
        key=key_name(tonic, src.mode),
        mode=src.mode,
        attributes={
            "genre": work.genre,
            "mood": mood,
            "dynamics": dynamics,
            "ensemble": ensemble.name,
            "source": "music21",
            "source_work": source_work(work),
            "composer": work.composer,
            "composition_id": work.id,
        },
    )
    info = Arrangement(
        ensemble=ensemble,
        transpose=t,
        instruments=tuple(p.instrument for p in parts),
        octaves=tuple(p.octave for p in parts),
        voices=tuple(p.voices for p in parts),
        source=src,
        cut=cut,
    )
    return piece, info


@dataclasses.dataclass
class _Part:
    """One track under construction, with what `Arrangement` reports of it."""

    track: Track
    instrument: Instrument
    octave: int
    voices: tuple[int, ...]


def _arrange_voices(voices: list[list[Note]], ensemble: Ensemble, base: int, rng):
    """Polyphony: voices (high to low) onto the ensemble's parts, transposed to fit."""
    pitch_arrays = [np.array([n.pitch for n in v]) for v in voices]
    assignment = ensembles.choose_assignment(ensemble, pitch_arrays)
    if assignment is None:
        raise ValueError(f"{ensemble.name} cannot take {len(voices)} voices")
    per_part = [np.concatenate([pitch_arrays[i] for i in idx]) for idx in assignment]
    t, octaves = ensembles.fit_transposition(per_part, list(ensemble.parts), rng)
    if len(assignment) > 1 and assignment[-1] == assignment[-2] and octaves[-1] == octaves[-2]:
        low = ensemble.parts[-1]  # a doubled bass: an octave below where it fits
        if ensembles.misfit(per_part[-1] + t + octaves[-1] - 12, low)[0] == 0.0:
            octaves = [*octaves[:-1], octaves[-1] - 12]
    pans = ensembles.pans(len(ensemble.parts))
    parts = []
    for j, (inst, idx) in enumerate(zip(ensemble.parts, assignment, strict=True)):
        lead = 4 if j == 0 and len(ensemble.parts) > 1 else 0  # the top line sings out
        shift = t + octaves[j]
        notes = [
            Note(ensembles.fold_into_range(n.pitch + shift, inst), n.start, n.duration, base + lead)
            for i in idx
            for n in voices[i]
        ]
        track = Track(inst.name, inst.program, notes, pan=pans[j])
        parts.append(_Part(track, inst, octaves[j], tuple(idx)))
    return parts, t


def _arrange_tune(
    melody, src: Source, ensemble: Ensemble, family: str, bpm: int, cut: float, base: int, rng
):
    """A tune: melody on the lead part (and parts that double it), accompaniment below.
    A solo instrument gets two tracks, melody and accompaniment, as a piano's two hands."""
    roles = accompany.tune_roles(ensemble)
    lead = ensemble.parts[0]
    pitches = np.array([n.pitch for n in melody])
    t, (octave,) = ensembles.fit_transposition([pitches], [lead], rng)
    tune = [
        Note(ensembles.fold_into_range(n.pitch + t + octave, lead), n.start, n.duration, base + 6)
        for n in melody
    ]
    grid = accompany.grid_for(src.time_signature, src.bars, cut)
    tonic = (src.tonic + t) % 12
    backing = accompany.accompany(tune, ensemble, grid, tonic, src.mode, family, bpm, base - 8, rng)
    pans = ensembles.pans(len(ensemble.parts))
    parts = []
    for j, (inst, role) in enumerate(zip(ensemble.parts, roles, strict=True)):
        if j == 0 or role == "melody":
            shift = octave if j == 0 else ensembles.misfit(pitches + t, inst)[1]
            vel = base + (6 if j == 0 else 0)
            line = [
                Note(ensembles.fold_into_range(n.pitch + t + shift, inst), n.start, n.duration, vel)
                for n in melody
            ]
            track = Track(inst.name, inst.program, line, pan=pans[j])
            parts.append(_Part(track, inst, shift, (0,)))
        if j > 0 or role == "solo":
            track = Track(inst.name, inst.program, list(backing[j]), pan=pans[j])
            parts.append(_Part(track, inst, 0, ()))
    return parts, t
