"""Caption templates and their syntax, for the caption writer of `captions.py`.

Two disjoint sets of templates: `TRAIN_TEMPLATES` for training, and `HELD_OUT_TEMPLATES`,
with other sentence structures, held out for evaluation.

Template syntax: `{slot}` is a phrase rendered from the attributes; `[...]` is an optional
part, left out when any slot in it is empty (its attribute dropped or unknown); `a(n)` is
an indefinite article fitted to the next word. Slots outside brackets are always shown.
`SLOT_ATTRS` says which attributes each slot renders, `pattern_parts` splits a pattern into
its parts, and `tidy` fits the articles, spacing and capitals of a filled template.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Template:
    """A caption template: a stable id and a pattern in the syntax of the module docstring."""

    id: str
    pattern: str


def _numbered(split: str, patterns: tuple[str, ...]) -> tuple[Template, ...]:
    return tuple(Template(f"{split}/{i:02d}", p) for i, p in enumerate(patterns, start=1))


# Ids are positions: append new templates, never reorder, so ids in manifests stay valid.
TRAIN_TEMPLATES: tuple[Template, ...] = _numbered("train", (
    "a(n) [{mood} ]{genre}[ {tempo_pp}][ {key_pp}][, featuring {instruments}][, {dynamics}].",
    "a(n) [{tempo_adj} ]{genre}[ for {instruments}][ {key_pp}][ {meter_pp}]."
    "[ The mood is {mood}.]",
    "{genre}[ with {instruments}][, {details}].",
    "[{mood} ]{style} music[ {tempo_pp}][, played by {instruments}][ {key_pp}][, {dynamics}].",
    "a(n) [{key_short} ]{genre}[ {source}][ with {instruments}][ {tempo_pp}].[ It sounds {mood}.]",
    "This [{mood} ]{genre}[ {source}] features {instruments}[, {tempo_pp}][, {key_pp}].",
    "[{mood}, ]{tempo_adj} {style}[ {key_pp}][ with {instruments}][ {meter_pp}].",
    "[{mood} ]{genre} {tempo_pp}[, {key_pp}][, {meter_pp}][, with {instruments}][, {dynamics}].",
    "a(n) {genre}[ {source}][ {key_pp}][ {tempo_pp}][ for {instruments}][, {mood} in mood].",
    "{tempo_short}, {key_short}[, {meter_short}]: a(n) [{mood} ]{genre}[ with {instruments}].",
    "a(n) [{mood} ]{genre} with {instruments}[, {tempo_pp}][, {key_pp}][, {dynamics}].",
    "{genre}[ {source}].[ {tempo_short}.][ {key_short}.][ {instruments}.][ {mood}.]",
    "a(n) [{mood} ]{genre}[ {meter_pp}][ {key_pp}][, {tempo_pp}][, {dynamics}][, {source}].",
    "{instruments}[, {details}] — {genre}[ {source}].",
    "a(n) [{mood} ]piece in the {style} style[ for {instruments}][ {tempo_pp}][ {key_pp}].",
    "{key_short} {style}[ {tempo_pp}][, {mood} and {dyn_short}][, for {instruments}].",
))  # fmt: skip

# Other sentence shapes and connectives than any training template: labelled fields,
# instruments as the subject, "Built around", "There is ... character", second person.
HELD_OUT_TEMPLATES: tuple[Template, ...] = _numbered("heldout", (
    "Genre: {style}.[ Tempo: {tempo_short}.][ Key: {key_short}.][ Meter: {meter_short}.]"
    "[ Instruments: {instruments}.][ Mood: {mood}.][ Dynamics: {dyn_short}.]",
    "{play} a(n) [{mood} ]{genre}[ {tempo_pp}][ {key_pp}][, {dynamics}].",
    "Built around {instruments}, this [{mood} ]{genre} unfolds[ {tempo_pp}][ {key_pp}]"
    "[ {meter_pp}].",
    "There is a(n) [{mood} ]{style} character to this[ {tempo_adj}] piece[ for {instruments}]"
    "[, set {key_pp}][, {source}].",
    "If you enjoy {style} music, try this[ {tempo_adj}] one[ {key_pp}][, carried by {instruments}]"
    "[ — {mood} throughout].",
    "Listen for {instruments}[ {key_pp}]: a(n) [{mood} ]{style} arrangement[ {tempo_pp}]"
    "[ {source}].",
))  # fmt: skip

# Attributes a slot renders; a slot shows when any of them is kept.
SLOT_ATTRS: dict[str, tuple[str, ...]] = {
    "genre": (),
    "style": (),
    "mood": ("mood",),
    "tempo_pp": ("tempo",),
    "tempo_adj": ("tempo",),
    "tempo_short": ("tempo",),
    "key_pp": ("key",),
    "key_short": ("key",),
    "meter_pp": ("meter",),
    "meter_short": ("meter",),
    "dynamics": ("dynamics",),
    "dyn_short": ("dynamics",),
    "instruments": ("instruments", "ensemble"),
    "play": ("instruments", "ensemble"),
    "source": ("source",),
    "details": ("tempo", "key", "meter", "mood", "dynamics", "drums"),
}
SLOT_RE = re.compile(r"\{(\w+)\}")
KEEP_SPACE = "\ue000"  # a private-use character standing for a space inside a name
_PART_RE = re.compile(r"\[([^\[\]]*)\]|([^\[\]]+)")


def pattern_parts(pattern: str) -> list[tuple[bool, str]]:
    """Splits a pattern into (optional, text) parts."""
    return [(opt != "", opt or req) for opt, req in _PART_RE.findall(pattern)]


def _article(word: str) -> str:
    """ "a" or "an" before `word`, by sound: "an F minor", "an 80 bpm", "a euphonium"."""
    letter = re.match(r"([A-Z])[#b♯♭]?(?![A-Za-z])", word)
    if letter:  # a note name or other single letter, read by its name
        return "an" if letter.group(1) in "AEFHILMNORSX" else "a"
    if word[:1].isdigit():
        return "an" if re.match(r"8|1[18](?!\d)", word) else "a"
    lower = word.lower()
    if lower.startswith(("eu", "uni", "use", "usu", "one", "ukul")):
        return "a"
    return "an" if lower[:1] in "aeiou" or lower.startswith(("hour", "honest")) else "a"


def tidy(text: str) -> str:
    """Articles, spacing and capitals of a filled template."""
    text = re.sub(
        r"\b([Aa])\(n\) (\S+)", lambda m: f"{_cap_like(m[1], _article(m[2]))} {m[2]}", text
    )
    text = re.sub(r"[ \t\n]+", " ", text).strip()
    text = re.sub(r" +([,.;:])", r"\1", text)
    # Capitals at sentence starts; ". " inside names was shielded by KEEP_SPACE.
    text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m[1] + m[2].upper(), text)
    return text.replace(KEEP_SPACE, " ")


def _cap_like(model: str, word: str) -> str:
    return word.capitalize() if model.isupper() else word
