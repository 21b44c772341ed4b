"""A minimal multi-track score, the one format every dataset source produces.

Procedurally composed pieces (`compose.py`) and arranged music21 works
(`corpus.py`) both become a `Piece`; `render.py` writes it as a General MIDI file
and renders it with FluidSynth. Times are in beats (quarter notes) at one fixed
tempo, so the `bpm` attribute is true of the whole clip.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mido

DRUM_CHANNEL = 9
# Semitones of each mode's scale degrees above its tonic.
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
TICKS_PER_BEAT = 480

# General MIDI level 1 program names, 0-based program numbers.
GM_PROGRAMS = (
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano 1", "electric piano 2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music box", "vibraphone",
    "marimba", "xylophone", "tubular bells", "dulcimer",
    "drawbar organ", "percussive organ", "rock organ", "church organ",
    "reed organ", "accordion", "harmonica", "tango accordion",
    "nylon string guitar", "steel string guitar", "jazz electric guitar", "clean electric guitar",
    "muted electric guitar", "overdriven guitar", "distortion guitar", "guitar harmonics",
    "acoustic bass", "fingered electric bass", "picked electric bass", "fretless bass",
    "slap bass 1", "slap bass 2", "synth bass 1", "synth bass 2",
    "violin", "viola", "cello", "contrabass",
    "tremolo strings", "pizzicato strings", "orchestral harp", "timpani",
    "string ensemble 1", "string ensemble 2", "synth strings 1", "synth strings 2",
    "choir aahs", "voice oohs", "synth voice", "orchestra hit",
    "trumpet", "trombone", "tuba", "muted trumpet",
    "french horn", "brass section", "synth brass 1", "synth brass 2",
    "soprano sax", "alto sax", "tenor sax", "baritone sax",
    "oboe", "english horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan flute",
    "blown bottle", "shakuhachi", "whistle", "ocarina",
    "square lead", "sawtooth lead", "calliope lead", "chiff lead",
    "charang lead", "voice lead", "fifths lead", "bass and lead",
    "new age pad", "warm pad", "polysynth pad", "choir pad",
    "bowed pad", "metallic pad", "halo pad", "sweep pad",
    "rain", "soundtrack", "crystal", "atmosphere",
    "brightness", "goblins", "echoes", "sci-fi",
    "sitar", "banjo", "shamisen", "koto",
    "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle bell", "agogo", "steel drums", "woodblock",
    "taiko drum", "melodic tom", "synth drum", "reverse cymbal",
    "guitar fret noise", "breath noise", "seashore", "bird tweet",
    "telephone ring", "helicopter", "applause", "gunshot",
)  # fmt: skip
assert len(GM_PROGRAMS) == 128

# General MIDI percussion keys (channel 10) that the styles use.
DRUM_KEYS = {
    "kick": 36, "side_stick": 37, "snare": 38, "clap": 39, "snare_electric": 40,
    "tom_low": 45, "closed_hat": 42, "pedal_hat": 44, "open_hat": 46, "tom_mid": 47,
    "tom_high": 50, "crash": 49, "ride": 51, "ride_bell": 53, "tambourine": 54,
    "cowbell": 56, "shaker": 70, "cabasa": 69, "claves": 75, "conga_high": 62, "conga_low": 64,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Note:
    """One note. `start` and `duration` in beats; `velocity` 1-127."""

    pitch: int
    start: float
    duration: float
    velocity: int = 90


@dataclasses.dataclass
class Track:
    """One instrument. `name` is what captions say ("piano", "drums", ...); `program` is
    the GM program (ignored when `is_drum`); `pan` and `volume` are MIDI CC values."""

    name: str
    program: int
    notes: list[Note] = dataclasses.field(default_factory=list)
    is_drum: bool = False
    pan: int = 64
    volume: int = 100


@dataclasses.dataclass
class Piece:
    """A piece at one tempo, with the attributes its caption is written from.

    Attributes:
        tracks: at most 15 pitched tracks plus drums.
        bpm: quarter-note beats per minute.
        time_signature: (numerator, denominator), e.g. (3, 4).
        key: tonic name, e.g. "C", "F#", "Bb".
        mode: "major", "minor", "dorian", ...
        attributes: everything else true of the piece: genre, mood, dynamics,
            source, ... (see `build.py` for the manifest schema).
        downbeat: beats from the start to the first full bar's downbeat (a pickup's
            length; 0 when the piece starts on a downbeat).
    """

    tracks: list[Track]
    bpm: float
    time_signature: tuple[int, int]
    key: str
    mode: str
    attributes: dict = dataclasses.field(default_factory=dict)
    downbeat: float = 0.0

    @property
    def beats(self) -> float:
        return max((n.start + n.duration for t in self.tracks for n in t.notes), default=0.0)

    @property
    def seconds(self) -> float:
        return self.beats * 60.0 / self.bpm

    @property
    def has_drums(self) -> bool:
        return any(t.is_drum and t.notes for t in self.tracks)

    def instrument_names(self) -> list[str]:
        """Track names in order, without repeats: what the caption lists."""
        return list(dict.fromkeys(t.name for t in self.tracks if t.notes))


def write_midi(piece: Piece, path: str | Path) -> Path:
    """Writes `piece` as a type-1 General MIDI file; returns the path."""
    path = Path(path)
    pitched = [t for t in piece.tracks if not t.is_drum]
    if len(pitched) > 15:
        raise ValueError(f"at most 15 pitched tracks fit in General MIDI, got {len(pitched)}")
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    num, den = piece.time_signature
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(piece.bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
    mid.tracks.append(meta)
    channels = iter(c for c in range(16) if c != DRUM_CHANNEL)
    for track in piece.tracks:
        channel = DRUM_CHANNEL if track.is_drum else next(channels)
        mid.tracks.append(_midi_track(track, channel))
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def _midi_track(track: Track, channel: int) -> mido.MidiTrack:
    out = mido.MidiTrack()
    out.append(mido.MetaMessage("track_name", name=track.name, time=0))
    if not track.is_drum:
        out.append(mido.Message("program_change", program=track.program, channel=channel, time=0))
    out.append(mido.Message("control_change", control=7, value=track.volume, channel=channel))
    out.append(mido.Message("control_change", control=10, value=track.pan, channel=channel))
    events = []  # (tick, order, message): note-offs sort before note-ons at one tick
    for n in track.notes:
        if not 0 <= n.pitch <= 127 or n.duration <= 0:
            continue
        on = round(n.start * TICKS_PER_BEAT)
        off = max(on + 1, round((n.start + n.duration) * TICKS_PER_BEAT))
        vel = min(127, max(1, int(n.velocity)))
        events.append((on, 1, mido.Message("note_on", note=n.pitch, velocity=vel, channel=channel)))
        events.append((off, 0, mido.Message("note_off", note=n.pitch, velocity=0, channel=channel)))
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for tick, _, msg in events:
        out.append(msg.copy(time=tick - now))
        now = tick
    return out
