"""What a prompt asks for: the attributes a caption of the embedded dataset states.

Adherence is scored only where the prompt asks: a generation from "a slow folk tune" has no
bpm to hit. A caption states the tempo when it writes the clip's bpm as a number, the key
when it writes the tonic (in any spelling the caption writer uses: "G#", "G-sharp",
"G sharp", "G♯") followed by "major" or "minor", and an instrument when it names it (also
in the plural, "two violins"). The captions are truthful (`musicgen.synth.captions`), so a
stated value is the clip's own.
"""

from __future__ import annotations

import dataclasses
import re

_ACCIDENTALS = {"#": r"(?:#|♯|-sharp| sharp)", "b": r"(?:b|♭|-flat| flat)"}


@dataclasses.dataclass(frozen=True)
class Asked:
    """The attributes one prompt states (None / empty where it does not)."""

    bpm: float | None
    key: str | None  # tonic as the attributes spell it, e.g. "G#"
    mode: str | None  # "major" or "minor"
    instruments: tuple[str, ...]
    has_drums: bool


def states_bpm(caption: str, bpm: float) -> bool:
    """Whether the caption writes `bpm` as a number ("97 bpm", "at 97 beats per minute")."""
    return re.search(rf"(?<![\d.]){round(float(bpm))}(?![\d.])", caption) is not None


def states_key(caption: str, key: str, mode: str) -> bool:
    """Whether the caption names the tonic `key` with the mode `mode` (major/minor only)."""
    mode = str(mode).lower()
    if mode not in ("major", "minor") or not key:
        return False
    key = str(key).strip().replace("♯", "#").replace("♭", "b")
    letter, accidental = key[0].upper(), key[1:]
    if accidental and accidental not in _ACCIDENTALS:
        return False
    tonic = re.escape(letter) + (_ACCIDENTALS[accidental] if accidental else r"(?![#♯b♭-])")
    # The tonic is a capital letter: "in a minor key" states no tonic.
    return re.search(rf"(?<![A-Za-z]){tonic}\s+(?i:{mode})\b", caption) is not None


def named_instruments(caption: str, instruments) -> tuple[str, ...]:
    """The clip's instruments that the caption names (singular or plural)."""
    named = []
    for name in instruments or ():
        pattern = rf"(?<![A-Za-z]){re.escape(str(name))}(?:e?s)?(?![A-Za-z])"
        if re.search(pattern, caption, re.IGNORECASE):
            named.append(str(name))
    return tuple(named)


def asked(caption: str, attributes: dict) -> Asked:
    """What `caption`, written for a clip with `attributes`, asks of a generation."""
    bpm = attributes.get("bpm")
    key, mode = attributes.get("key"), attributes.get("mode")
    return Asked(
        bpm=float(bpm) if bpm is not None and states_bpm(caption, bpm) else None,
        key=key if key and mode and states_key(caption, key, mode) else None,
        mode=str(mode).lower() if key and mode and states_key(caption, key, mode) else None,
        instruments=named_instruments(caption, attributes.get("instruments")),
        has_drums=bool(attributes.get("has_drums", False)),
    )
