"""`Controls`: what a user asks of the music besides the words, each part optional.

    Controls(bpm=126, key="E", mode="minor", time_signature=(4, 4),
             instruments=("piano", "drums"), chords=("Am", "F", "C", "G"))
    Controls.make(bpm=126, key="E minor", time_signature="4/4",
                  instruments="piano,drums", chords="Am F C G")   # from user text

They come from the API and the CLI (`make`), from the prompt (`parse.parse_prompt`), and,
for training, from a manifest's attributes (`from_attributes`). `downbeat` is where the
first bar starts, in seconds from the start of the audio (0 for generation: the music
starts on a downbeat); the chords are one per bar from the bar that holds time 0, and
repeat when the music is longer. A bad value raises `ControlError` in one line that says
what is accepted.
"""

from __future__ import annotations

import dataclasses
import math
import re

from musicgen.controls.chords import NO_CHORD, parse_progression
from musicgen.controls.pitch import PITCH_NAMES, parse_pitch_class
from musicgen.controls.vocab import (
    BPM_RANGE,
    INSTRUMENT_IDS,
    INSTRUMENT_SYNONYMS,
    MAX_CHORDS,
    MAX_INSTRUMENTS,
    MAX_NUMERATOR,
    METER_DENOMINATORS,
    MODE_ALIASES,
    MODES,
    ControlError,
)

FIELDS = ("bpm", "time_signature", "key", "instruments", "chords")  # what dropout drops


@dataclasses.dataclass(frozen=True)
class Controls:
    """Tempo, metre, key and mode, instruments and chords; None where not asked.

    Attributes:
      bpm: quarter-note beats per minute (30-300).
      time_signature: (numerator, denominator), e.g. (6, 8).
      key: the tonic's pitch class as a sharp name ("F#"); `mode` with it.
      mode: "major", "minor" or a church mode (`vocab.MODES`).
      instruments: names of `vocab.INSTRUMENTS`, in the order asked, without repeats.
      chords: one chord per bar (`chords.QUALITIES`), "N" for none.
      downbeat: seconds from the start to the first downbeat (bars and chords align to it).
    """

    bpm: float | None = None
    time_signature: tuple[int, int] | None = None
    key: str | None = None
    mode: str | None = None
    instruments: tuple[str, ...] | None = None
    chords: tuple[str, ...] | None = None
    downbeat: float = 0.0

    def __post_init__(self):
        if self.bpm is not None:
            bpm = _finite(self.bpm, "bpm")
            if not BPM_RANGE[0] <= bpm <= BPM_RANGE[1]:
                raise ControlError(
                    f"bpm must lie in {BPM_RANGE[0]:g}-{BPM_RANGE[1]:g}, got {self.bpm!r}"
                )
            object.__setattr__(self, "bpm", bpm)
        if self.time_signature is not None:
            object.__setattr__(self, "time_signature", _meter(self.time_signature))
        if (self.key is None) != (self.mode is None):
            raise ControlError("give a key with its mode, e.g. 'E minor', or neither")
        if self.key is not None:
            object.__setattr__(self, "key", PITCH_NAMES[parse_pitch_class(self.key)])
            object.__setattr__(self, "mode", _mode(self.mode))
        if self.instruments is not None:
            names = _instruments(self.instruments)
            object.__setattr__(self, "instruments", names or None)
        if self.chords is not None:
            chords = self.chords
            chords = parse_progression(chords if isinstance(chords, str) else " ".join(chords))
            if len(chords) > MAX_CHORDS:
                raise ControlError(f"at most {MAX_CHORDS} chords (one per bar), got {len(chords)}")
            object.__setattr__(self, "chords", chords)
        downbeat = _finite(self.downbeat, "downbeat")
        object.__setattr__(self, "downbeat", downbeat)

    # -- building -----------------------------------------------------------------------

    @classmethod
    def make(
        cls,
        *,
        bpm=None,
        key: str | None = None,
        time_signature=None,
        instruments=None,
        chords=None,
    ) -> Controls:
        """Controls from what a user types: `key="E minor"` (or "F#m", "B-flat major"),
        `time_signature="3/4"`, `instruments="piano,drums"` (or a list), `chords="Am F C G"`."""
        tonic = mode = None
        if key is not None:
            tonic, mode = parse_key(key)
        if isinstance(instruments, str):
            instruments = [s for s in re.split(r"\s*[,+;]\s*", instruments.strip()) if s]
        return cls(bpm=bpm, time_signature=time_signature, key=tonic, mode=mode,
                   instruments=instruments, chords=chords)  # fmt: skip

    @classmethod
    def from_attributes(cls, attributes: dict) -> Controls:
        """The controls a manifest entry's attributes state (what a clip truly is);
        instruments outside the vocabulary and values out of range are left out."""
        a = attributes or {}
        fields = {}
        for name, value in (
            ("bpm", a.get("bpm")),
            ("time_signature", a.get("time_signature")),
            ("chords", a.get("chords")),
        ):
            if value not in (None, "", []):
                try:
                    Controls(**{name: value})
                    fields[name] = value
                except ControlError:
                    pass
        if a.get("key") and a.get("mode"):
            try:
                Controls(key=a["key"], mode=a["mode"])
                fields.update(key=a["key"], mode=a["mode"])
            except ControlError:
                pass
        known = [n for n in a.get("instruments") or () if str(n).lower() in INSTRUMENT_IDS]
        if known:
            fields["instruments"] = known
        downbeat = a.get("downbeat")
        if downbeat is not None and math.isfinite(float(downbeat)):
            fields["downbeat"] = float(downbeat)
        return cls(**fields)

    def merged(self, fallback: Controls) -> Controls:
        """These controls, with `fallback`'s where these give none (explicit over parsed).
        The downbeat goes with the tempo: it is the fallback's when its tempo is used."""
        out = {}
        for f in dataclasses.fields(self):
            mine = getattr(self, f.name)
            out[f.name] = mine if mine is not None else getattr(fallback, f.name)
        if self.key is None:
            out["mode"] = fallback.mode
        out["downbeat"] = self.downbeat if self.bpm is not None else fallback.downbeat
        return Controls(**out)

    def without(self, *names: str) -> Controls:
        """These controls with the named ones (`FIELDS`) dropped."""
        drop = {}
        for name in names:
            if name not in FIELDS:
                raise ControlError(f"unknown control {name!r}; the controls are {FIELDS}")
            drop[name] = None
            if name == "key":
                drop["mode"] = None
        return dataclasses.replace(self, **drop)

    # -- reading ------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in FIELDS)

    @property
    def bar_seconds(self) -> float | None:
        """One bar's length (None without a tempo); 4/4 when no metre is given."""
        if self.bpm is None:
            return None
        num, den = self.time_signature or (4, 4)
        return num * 4.0 / den * 60.0 / self.bpm

    def to_dict(self) -> dict:
        """JSON-ready, the asked fields only (`from_dict` reads it back)."""
        out = {}
        if self.bpm is not None:
            out["bpm"] = self.bpm
        if self.time_signature is not None:
            out["time_signature"] = "{}/{}".format(*self.time_signature)
        if self.key is not None:
            out["key"], out["mode"] = self.key, self.mode
        if self.instruments is not None:
            out["instruments"] = list(self.instruments)
        if self.chords is not None:
            out["chords"] = list(self.chords)
        if self.downbeat:
            out["downbeat"] = self.downbeat
        return out

    @classmethod
    def from_dict(cls, value: dict) -> Controls:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - fields
        if unknown:
            raise ControlError(f"unknown controls {sorted(unknown)}; the controls are {FIELDS}")
        return cls(**value)

    def describe(self) -> str:
        """One line for people: "126 bpm, 4/4, E minor, piano + drums, chords Am F C G"."""
        parts = []
        if self.bpm is not None:
            parts.append(f"{self.bpm:g} bpm")
        if self.time_signature is not None:
            parts.append("{}/{}".format(*self.time_signature))
        if self.key is not None:
            parts.append(f"{self.key} {self.mode}")
        if self.instruments is not None:
            parts.append(" + ".join(self.instruments))
        if self.chords is not None:
            parts.append("chords " + " ".join(self.chords))
        return ", ".join(parts) if parts else "none"

    def chord_at_bar(self, bar: int) -> str:
        """The chord of bar `bar` (0: the bar that holds time 0), the progression repeating."""
        if not self.chords:
            return NO_CHORD
        return self.chords[bar % len(self.chords)]


def _finite(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ControlError(f"{name} must be a finite number, got {value!r}")
    return number


def _meter(value) -> tuple[int, int]:
    text = value if isinstance(value, str) else "/".join(map(str, value))
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    num, den = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not (1 <= num <= MAX_NUMERATOR and den in METER_DENOMINATORS):
        raise ControlError(
            f"time signature must be N/D with N in 1-{MAX_NUMERATOR} and D one of "
            f"{', '.join(map(str, METER_DENOMINATORS))} (e.g. 4/4, 3/4, 6/8), got {value!r}"
        )
    return num, den


def _mode(value: str) -> str:
    mode = MODE_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if mode not in MODES:
        raise ControlError(f"unknown mode {value!r}; the modes are {', '.join(MODES)}")
    return mode


def canonical_instrument(name: str) -> str:
    """The vocabulary's name for an instrument word ("sax" -> "saxophone")."""
    word = " ".join(str(name).lower().split())
    for form in (word, word[:-1] if word.endswith("s") else word, word[:-2]):
        if form in INSTRUMENT_IDS:
            return form
        if form in INSTRUMENT_SYNONYMS:
            return INSTRUMENT_SYNONYMS[form]
    raise ControlError(
        f"unknown instrument {name!r}; known instruments: {', '.join(INSTRUMENT_IDS)}"
    )


def _instruments(value) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value)
    out = list(dict.fromkeys(canonical_instrument(n) for n in names))
    if len(out) > MAX_INSTRUMENTS:
        raise ControlError(f"at most {MAX_INSTRUMENTS} instruments, got {len(out)}")
    return tuple(out)


_KEY_RE = re.compile(
    r"^\s*([A-G](?:#|♯|b|♭|-?\s*sharp|-?\s*flat)?)\s*(m|min|minor|maj|major|[a-z]+)?\s*$",
    re.IGNORECASE,
)


def parse_key(text: str) -> tuple[str, str]:
    """(tonic, mode) of "E minor", "F#m", "B-flat major", "D dorian", "C" (major)."""
    m = _KEY_RE.match(str(text))
    if m is None:
        raise ControlError(
            f"unknown key {text!r}: write a tonic A-G (with #, b, sharp or flat) and a mode "
            f"({', '.join(MODES)}), e.g. 'E minor', 'F#m', 'B-flat major'"
        )
    mode = m.group(2) or "major"
    mode = "minor" if mode == "m" else mode
    return PITCH_NAMES[parse_pitch_class(m.group(1))], _mode(mode)
