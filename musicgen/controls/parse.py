"""Controls read out of a prompt, deterministically: `parse_prompt("126 BPM, E minor")`.

What it reads (everything else, "slow", "fast", "dreamy", stays with the text encoder):

- tempo: a number with a unit: "126 BPM", "at 90 beats per minute", "around 132 bpm",
  "a tempo of 100 bpm"; also "tempo: 120" / "tempo 120";
- key and mode: a capital tonic with an optional accidental in any spelling ("F#",
  "F sharp", "F-sharp", "F♯", "Bb", "B-flat", "B flat") and a mode word ("major",
  "minor", "dorian", ...; "m" as in "F#m"): "in F sharp minor", "B-flat major", "F#m",
  "E Dorian". "in a minor key" names no tonic and reads as nothing;
- metre: "3/4", "6/8", "in 3/4 time", and the names "common time" (4/4), "cut time"
  (2/2), "waltz time" and "triple time" (3/4), "duple time" (2/4), "compound duple time"
  (6/8);
- instruments: the vocabulary's names and their synonyms (`vocab.INSTRUMENT_SYNONYMS`),
  singular or plural, longest first ("electric bass" before "bass"); a name after "no",
  "without" or "minus" is not asked.

Explicit controls win over what the prompt says (`Controls.merged`).
"""

from __future__ import annotations

import re

from musicgen.controls.types import Controls, canonical_instrument
from musicgen.controls.vocab import BPM_RANGE, INSTRUMENT_IDS, INSTRUMENT_SYNONYMS, MODES

_BPM_RE = re.compile(
    r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s*(?:-\s*)?(?:bpm|b\.p\.m\.?|beats\s+(?:per|a|each)\s+minute)\b"
    r"|\btempo\s*(?:of|:|=)?\s*(\d{2,3}(?:\.\d+)?)(?![\d.])(?!\s*/)",
    re.IGNORECASE,
)
_TONIC = r"([A-G](?:\s?-?\s?(?:sharp|flat)|[#♯b♭])?)"
_MODE_WORDS = "|".join([*MODES, "ionian", "aeolian", "maj", "min"])
_KEY_RE = re.compile(
    rf"(?<![A-Za-z]){_TONIC}\s*(?:(?i:({_MODE_WORDS}))\b|(m)(?![A-Za-z]))",
)
_METER_NAMES = {
    "compound duple time": "6/8",
    "common time": "4/4",
    "cut time": "2/2",
    "waltz time": "3/4",
    "triple time": "3/4",
    "duple time": "2/4",
}
_METER_RE = re.compile(
    r"(?<![\d/.])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])|\b("
    + "|".join(re.escape(name) for name in _METER_NAMES)
    + r")\b",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:no|without|minus|not|except)\s+(?:\w+\s+)?$", re.IGNORECASE)


def _instrument_pattern() -> re.Pattern:
    words = sorted({*INSTRUMENT_IDS, *INSTRUMENT_SYNONYMS}, key=len, reverse=True)
    alternatives = "|".join(re.escape(w).replace(r"\ ", r"[\s-]+") for w in words)
    return re.compile(rf"(?<![A-Za-z])(?:{alternatives})(?:e?s)?(?![A-Za-z])", re.IGNORECASE)


_INSTRUMENT_RE = _instrument_pattern()


def parse_prompt(prompt: str) -> Controls:
    """The controls a prompt states (the module docstring says which forms are read)."""
    text = str(prompt)
    return Controls(
        bpm=_bpm(text),
        time_signature=_meter(text),
        **_key(text),
        instruments=_instruments(text) or None,
    )


def _bpm(text: str) -> float | None:
    for m in _BPM_RE.finditer(text):
        value = float(m.group(1) or m.group(2))
        if BPM_RANGE[0] <= value <= BPM_RANGE[1]:
            return value
    return None


def _key(text: str) -> dict:
    for m in _KEY_RE.finditer(text):
        tonic, mode = m.group(1), (m.group(2) or "minor").lower()
        mode = {"maj": "major", "min": "minor", "ionian": "major", "aeolian": "minor"}.get(
            mode, mode
        )
        tonic = re.sub(r"\s+", " ", tonic)
        return {"key": tonic, "mode": mode}
    return {}


def _meter(text: str) -> tuple[int, int] | None:
    for m in _METER_RE.finditer(text):
        if m.group(3):
            num, den = _METER_NAMES[m.group(3).lower()].split("/")
        else:
            num, den = m.group(1), m.group(2)
        try:
            return Controls(time_signature=(int(num), int(den))).time_signature
        except ValueError:
            continue
    return None


def _instruments(text: str) -> list[str]:
    found = []
    for m in _INSTRUMENT_RE.finditer(text):
        if _NEGATION.search(text[: m.start()]):
            continue
        word = re.sub(r"[\s-]+", " ", m.group(0).lower())
        found.append(canonical_instrument(word))
    return list(dict.fromkeys(found))


def resolve(prompt: str, explicit: Controls | None = None, fallback: Controls | None = None):
    """What a prompt is generated with: `explicit` controls, then what the prompt states,
    then `fallback` (a continued clip's estimate)."""
    return (explicit or Controls()).merged(parse_prompt(prompt)).merged(fallback or Controls())
