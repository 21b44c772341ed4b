"""General MIDI ensembles for arranging corpus works, and fitting voices to them.

An `Ensemble` lists its instruments from high to low with their usable (sounding)
ranges. A polyphonic work's voices, also ordered high to low, are mapped onto the
parts contiguously: a monophonic instrument takes one voice, a polyphonic one
(organ, piano, guitar, choir) one or more. `fit_transposition` then picks a
transposition of a few semitones and per-part octave shifts that keep every part
inside its instrument's range, as an arranger would.

Genre families (`FAMILIES`) say what an ensemble suits: "chorale" (Bach),
"sacred" and "secular" (renaissance and medieval polyphony), "quartet"
(classical string quartets), "dance", "air" and "song" (monophonic tunes, which
`accompany.py` harmonises).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

FAMILIES = ("chorale", "sacred", "secular", "quartet", "dance", "air", "song")


@dataclasses.dataclass(frozen=True)
class Instrument:
    """One part of an ensemble.

    Attributes:
        name: what captions call it ("violin", "organ", ...); also the track name.
        program: General MIDI program, 0-based.
        low, high: usable sounding range, MIDI note numbers.
        poly: plays chords and several voices (keyboards, guitars, harp, choir).
        role: in a tune arrangement, "melody" to double the tune; empty means by
            position (first part melody, last part bass, others harmony).
    """

    name: str
    program: int
    low: int
    high: int
    poly: bool = False
    role: str = ""


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """A named instrumentation; `parts` from high to low; `families` it suits."""

    name: str
    parts: tuple[Instrument, ...]
    families: frozenset[str]

    def suits(self, family: str) -> bool:
        return family in self.families

    def can_play_tune(self) -> bool:
        """A tune needs a melody part and something to accompany it."""
        return len(self.parts) >= 2 or self.parts[0].poly

    def can_play_voices(self, n_voices: int) -> bool:
        return bool(voice_assignments(self, n_voices))


VIOLIN = Instrument("violin", 40, 55, 96)
VIOLA = Instrument("viola", 41, 48, 84)
CELLO = Instrument("cello", 42, 36, 74)
FIDDLE = Instrument("fiddle", 110, 55, 91)
FLUTE = Instrument("flute", 73, 60, 93)
OBOE = Instrument("oboe", 68, 58, 88)
CLARINET = Instrument("clarinet", 71, 50, 89)
BASSOON = Instrument("bassoon", 70, 34, 70)
HORN = Instrument("french horn", 60, 41, 74)
TRUMPET = Instrument("trumpet", 56, 54, 82)
TROMBONE = Instrument("trombone", 57, 40, 70)
TUBA = Instrument("tuba", 58, 28, 55)
RECORDER_S = Instrument("recorder", 74, 72, 93)
RECORDER_A = Instrument("recorder", 74, 65, 88)
RECORDER_T = Instrument("recorder", 74, 60, 81)
RECORDER_B = Instrument("recorder", 74, 53, 74)
WHISTLE = Instrument("tin whistle", 78, 74, 96)
HARMONICA = Instrument("harmonica", 22, 60, 88)
BASS = Instrument("bass", 32, 28, 52)
PIANO = Instrument("piano", 0, 28, 96, poly=True)
HARPSICHORD = Instrument("harpsichord", 6, 29, 89, poly=True)
ORGAN = Instrument("organ", 19, 36, 91, poly=True)
ORGAN_PEDAL = Instrument("organ", 19, 24, 60)
GUITAR = Instrument("guitar", 24, 40, 81, poly=True)
STEEL_GUITAR = Instrument("guitar", 25, 40, 81, poly=True)
BANJO = Instrument("banjo", 105, 48, 81, poly=True)
HARP = Instrument("harp", 46, 24, 96, poly=True)
ACCORDION = Instrument("accordion", 21, 41, 89, poly=True)
CHOIR = Instrument("choir", 52, 40, 81, poly=True)

_POLYPHONY = frozenset({"chorale", "sacred", "secular"})
_TUNES = frozenset({"dance", "air", "song"})


def _doubling(inst: Instrument) -> Instrument:
    """The instrument doubling a tune's melody (an accordion beside the fiddle)."""
    return dataclasses.replace(inst, role="melody")


def _e(name: str, parts: tuple[Instrument, ...], *families: str | frozenset) -> Ensemble:
    fams: set[str] = set()
    for f in families:
        fams |= {f} if isinstance(f, str) else set(f)
    assert fams <= set(FAMILIES), fams
    return Ensemble(name, parts, frozenset(fams))


ENSEMBLES: tuple[Ensemble, ...] = (
    _e("string quartet", (VIOLIN, VIOLIN, VIOLA, CELLO), _POLYPHONY, _TUNES, "quartet"),
    _e("string trio", (VIOLIN, VIOLA, CELLO), _POLYPHONY, "air", "song"),
    _e("string quintet", (VIOLIN, VIOLIN, VIOLA, VIOLA, CELLO), "sacred", "secular"),
    _e("string sextet", (VIOLIN, VIOLIN, VIOLA, VIOLA, CELLO, CELLO), "sacred", "secular"),
    _e("violin and cello duo", (VIOLIN, CELLO), "sacred", "secular", "air", "dance"),
    _e("church organ", (ORGAN, ORGAN_PEDAL), "chorale", "sacred"),
    _e("solo piano", (PIANO,), _POLYPHONY, _TUNES, "quartet"),
    _e("harpsichord", (HARPSICHORD,), "chorale", "secular", "quartet", "dance", "air"),
    _e("brass quartet", (TRUMPET, TRUMPET, TROMBONE, TUBA), "chorale", "sacred", "dance"),
    _e("brass quintet", (TRUMPET, TRUMPET, HORN, TROMBONE, TUBA), "chorale", "sacred", "dance"),
    _e("brass trio", (TRUMPET, HORN, TROMBONE), "sacred", "secular"),
    _e("woodwind quintet", (FLUTE, OBOE, CLARINET, HORN, BASSOON), _POLYPHONY, _TUNES, "quartet"),
    _e("woodwind quartet", (FLUTE, OBOE, CLARINET, BASSOON), _POLYPHONY, _TUNES, "quartet"),
    _e("woodwind trio", (OBOE, CLARINET, BASSOON), "sacred", "secular", "air", "song"),
    _e("recorder trio", (RECORDER_A, RECORDER_T, RECORDER_B), "sacred", "secular"),
    _e("recorder quartet", (RECORDER_S, RECORDER_A, RECORDER_T, RECORDER_B), "sacred", "secular"),
    _e("choir", (CHOIR,), _POLYPHONY),
    _e("trumpet and organ", (TRUMPET, ORGAN), "chorale", "sacred"),
    _e("flute and harpsichord", (FLUTE, HARPSICHORD), "chorale", "secular", "air", "dance"),
    _e("classical guitar", (GUITAR,), "chorale", "secular", "air", "song"),
    _e("guitar duo", (GUITAR, GUITAR), "chorale", "secular", _TUNES),
    _e("harp", (HARP,), "sacred", "secular", "air", "song"),
    _e("folk band", (FIDDLE, _doubling(ACCORDION), STEEL_GUITAR, BASS), "dance", "song"),
    _e("fiddle and guitar", (FIDDLE, STEEL_GUITAR), _TUNES),
    _e("fiddle and banjo", (FIDDLE, BANJO), "dance"),
    _e("session trio", (FLUTE, _doubling(FIDDLE), GUITAR), "dance", "air"),
    _e("tin whistle and guitar", (WHISTLE, GUITAR), "dance", "air"),
    _e("solo accordion", (ACCORDION,), "dance", "song"),
    _e("flute and piano", (FLUTE, PIANO), "air", "song"),
    _e("violin and piano", (VIOLIN, PIANO), "air", "song", "dance"),
    _e("clarinet and piano", (CLARINET, PIANO), "air", "song"),
    _e("harmonica and guitar", (HARMONICA, STEEL_GUITAR), "song", "dance"),
)


def voice_assignments(ensemble: Ensemble, n_voices: int) -> list[tuple[tuple[int, ...], ...]]:
    """Every contiguous, order-keeping way to give `n_voices` voices to the parts.

    Returns, per way, one tuple of voice indices per part. A monophonic part takes
    exactly one voice, a polyphonic part one or more. When there is one voice fewer
    than parts and the two lowest parts are monophonic, the lowest reaching lower, it
    doubles the bass voice (an octave lower where it fits), as a tuba doubles a trombone.
    """
    parts = ensemble.parts
    out = []
    for sizes in itertools.product(*[range(1, n_voices + 1) if p.poly else (1,) for p in parts]):
        if sum(sizes) != n_voices:
            continue
        starts = np.cumsum((0, *sizes[:-1]))
        out.append(tuple(tuple(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)))
    if (
        not out
        and len(parts) == n_voices + 1
        and len(parts) >= 3
        and not parts[-1].poly
        and not parts[-2].poly
        and parts[-1].low < parts[-2].low
    ):
        head = voice_assignments(Ensemble(ensemble.name, parts[:-1], ensemble.families), n_voices)
        out = [(*a, a[-1]) for a in head]
    return out


def misfit(pitches: np.ndarray, inst: Instrument) -> tuple[float, int]:
    """(fraction of notes out of range, octave shift in semitones) at the best octave
    shift of a part; ties go to the smaller shift."""
    if pitches.size == 0:
        return 0.0, 0
    best = (2.0, 0)
    for shift in (0, -12, 12, -24, 24, -36, 36):
        p = pitches + shift
        bad = float(np.mean((p < inst.low) | (p > inst.high)))
        if bad < best[0] - 1e-9:
            best = (bad, shift)
    return best


def choose_assignment(
    ensemble: Ensemble, voices: list[np.ndarray]
) -> tuple[tuple[int, ...], ...] | None:
    """The voice assignment whose parts fit their ranges best; ties go to the most even
    split (guitar duo: two voices each rather than one and three).

    Args:
        ensemble: the instrumentation.
        voices: each voice's pitches, voices ordered high to low.
    """
    best, best_cost = None, None
    for a in voice_assignments(ensemble, len(voices)):
        cost = 0.0
        for inst, idx in zip(ensemble.parts, a, strict=True):
            bad, shift = misfit(np.concatenate([voices[i] for i in idx]), inst)
            cost += bad + 0.01 * abs(shift) / 12
        cost += 0.001 * float(np.var([len(idx) for idx in a]))
        if best_cost is None or cost < best_cost - 1e-12:
            best, best_cost = a, cost
    return best


def fit_transposition(
    part_pitches: list[np.ndarray],
    instruments: list[Instrument],
    rng: np.random.Generator,
    max_semitones: int = 4,
) -> tuple[int, list[int]]:
    """A transposition of a few semitones and per-part octave shifts.

    Tries transpositions in a random order and keeps the first with every part inside
    its range after an octave shift; when none fits, the one with the fewest notes out
    of range (the caller folds those by octaves).

    Args:
        part_pitches: each part's source pitches.
        instruments: the instrument of each part.
        rng: the arrangement's generator.
        max_semitones: transpositions in [-max_semitones, max_semitones].

    Returns:
        (transposition, octave shift of each part in semitones).
    """
    best: tuple[float, int, list[int]] | None = None
    for t in rng.permutation(np.arange(-max_semitones, max_semitones + 1)):
        fits = [misfit(p + int(t), inst) for p, inst in zip(part_pitches, instruments, strict=True)]
        total = sum(f[0] for f in fits)
        if best is None or total < best[0] - 1e-9:
            best = (total, int(t), [f[1] for f in fits])
        if total == 0.0:
            break
    assert best is not None
    return best[1], best[2]


def fold_into_range(pitch: int, inst: Instrument) -> int:
    """Moves a pitch by octaves into the instrument's range (nearest end if it cannot)."""
    while pitch < inst.low:
        pitch += 12
    while pitch > inst.high:
        pitch -= 12
    return max(pitch, inst.low)


def pans(n: int) -> list[int]:
    """Stereo positions for n parts, high parts left, low parts right, as on a stage."""
    if n == 1:
        return [64]
    return [round(34 + 60 * i / (n - 1)) for i in range(n)]
