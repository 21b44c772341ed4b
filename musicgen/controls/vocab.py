"""What each control accepts: tempo and metre ranges, modes, and the instrument vocabulary.

The instruments are the names the embedded dataset's captions and manifests use (every
instrument `musicgen.synth` arranges for; a test checks they agree), with the usual other
words for each (`INSTRUMENT_SYNONYMS`): what the prompt parser reads and the LM's
instrument tokens are indexed by. Positions are ids: append, never reorder.
"""

from __future__ import annotations


class ControlError(ValueError):
    """A control a user can fix (a bpm of 0, an unknown key, chord or instrument); the
    message is one line that says what is accepted."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


BPM_RANGE = (30.0, 300.0)  # the embedded dataset spans 40-208 bpm
METER_DENOMINATORS = (1, 2, 4, 8, 16)
MAX_NUMERATOR = 16
MAX_INSTRUMENTS = 8  # instrument tokens per prompt
MAX_CHORDS = 64  # chords per progression (it repeats when the music is longer)

MODES = ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian", "locrian")
MODE_ALIASES = {"ionian": "major", "aeolian": "minor", "maj": "major", "min": "minor"}

INSTRUMENTS = (
    "accordion", "acoustic guitar", "banjo", "bass", "bassoon", "brass section", "celesta",
    "cello", "choir", "clarinet", "clavinet", "distorted guitar", "drum machine", "drums",
    "electric bass", "electric guitar", "electric piano", "fiddle", "flute", "french horn",
    "fretless bass", "glockenspiel", "guitar", "harmonica", "harp", "harpsichord",
    "jazz guitar", "lead guitar", "nylon guitar", "oboe", "organ", "pan flute", "piano",
    "piccolo", "recorder", "saxophone", "slap bass", "strings", "synth", "synth bass",
    "synth lead", "synth pad", "tin whistle", "trombone", "trumpet", "tuba",
    "upright bass", "vibraphone", "viola", "violin",
)  # fmt: skip

# Other words for an instrument -> its name in INSTRUMENTS.
INSTRUMENT_SYNONYMS = {
    "drum kit": "drums", "drum set": "drums", "drumkit": "drums", "percussion": "drums",
    "beat machine": "drum machine", "808": "drum machine",
    "keys": "piano", "grand piano": "piano", "acoustic piano": "piano",
    "rhodes": "electric piano", "e-piano": "electric piano", "wurlitzer": "electric piano",
    "bass guitar": "electric bass", "electric bass guitar": "electric bass",
    "double bass": "upright bass", "contrabass": "upright bass", "acoustic bass": "upright bass",
    "sax": "saxophone", "alto sax": "saxophone", "tenor sax": "saxophone",
    "horn": "french horn", "horn section": "brass section",
    "synthesizer": "synth", "synth strings": "synth pad", "pad": "synth pad",
    "lead synth": "synth lead", "string section": "strings", "string ensemble": "strings",
    "classical guitar": "guitar", "spanish guitar": "nylon guitar",
    "steel-string guitar": "acoustic guitar", "overdriven guitar": "distorted guitar",
    "electric organ": "organ", "hammond organ": "organ", "church organ": "organ",
    "vibes": "vibraphone", "whistle": "tin whistle", "penny whistle": "tin whistle",
    "voices": "choir", "panpipes": "pan flute", "pan pipes": "pan flute",
}  # fmt: skip
INSTRUMENT_IDS = {name: i for i, name in enumerate(INSTRUMENTS)}
