"""Natural-language captions for the synthetic dataset, written from a clip's attributes.

A caption comes from one of a fixed set of templates, filled with phrases drawn from
vocabulary tables: synonyms, several spellings of tempo, key and metre, attributes
left out at random. Varied wording keeps the text encoder from keying on one sentence
shape, as with the LLM-rephrased captions of MusicGen and the tag-to-text augmentation
of Noise2Music. A second, disjoint set of templates with other sentence structures is
held out for evaluation, to measure how far conditioning generalises to unseen wording.

Captions are truthful: every stated value is the attributes' own (tempo words follow
the bpm bands of `tempo_word`, instruments come only from the list, the key and mode are
the attributes' key and mode).

This module holds the writer; the templates and their syntax are in `caption_templates.py`,
the vocabulary tables in `caption_words.py`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from musicgen.synth.caption_templates import (
    HELD_OUT_TEMPLATES,
    KEEP_SPACE,
    SLOT_ATTRS,
    SLOT_RE,
    TRAIN_TEMPLATES,
    Template,
    pattern_parts,
    tidy,
)
from musicgen.synth.caption_words import (
    BPM_UNITS,
    COMPOSER_SHORT,
    DYNAMICS_PHRASES,
    DYNAMICS_SHORT,
    GENRE_HEADS,
    GENRE_NOUNS,
    GENRE_STYLES,
    METER_NAMES,
    MOOD_WORDS,
    NO_DRUMS,
    TEMPO_ADJECTIVES,
    TEMPO_PACE,
    tempo_word,
)


@dataclasses.dataclass(frozen=True)
class Caption:
    """A caption and the id of the template it was written from."""

    text: str
    template: str


# How likely each attribute is left out of a caption; genre is always kept.
DROP_PROBABILITY: dict[str, float] = {
    "mood": 0.3,
    "tempo": 0.2,
    "key": 0.3,
    "meter": 0.5,
    "instruments": 0.2,
    "ensemble": 0.35,
    "dynamics": 0.5,
    "source": 0.4,
    "drums": 0.6,
}
_MIN_SHOWN = 2  # attributes besides the genre that a caption names when it can

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
_MAJOR_MINOR = ("major", "minor")
_DRUM_NAMES = ("drums", "drum kit", "percussion")


def write_caption(attributes: dict, rng: np.random.Generator, split: str = "train") -> Caption:
    """Writes a caption for one clip.

    Args:
        attributes: the clip's attributes (genre, bpm, key, mode, time_signature,
            instruments, ensemble, mood, dynamics, has_drums, source, source_work, composer).
        rng: all random choices come from it, so a seeded generator gives the same caption.
        split: "train" draws from TRAIN_TEMPLATES, "held_out" from HELD_OUT_TEMPLATES.
    """
    if split == "train":
        templates = TRAIN_TEMPLATES
    elif split == "held_out":
        templates = HELD_OUT_TEMPLATES
    else:
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    writer = _Writer(attributes, rng)
    usable = [t for t in templates if writer.can_fill(t)]
    template = usable[int(rng.integers(len(usable)))]
    return Caption(text=writer.fill(template), template=template.id)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _join(items: list[str], rng: np.random.Generator) -> str:
    if len(items) <= 2:
        return " and ".join(items)
    last = ", and " if rng.random() < 0.3 else " and "  # with or without the Oxford comma
    return ", ".join(items[:-1]) + last + items[-1]


def _plural(name: str) -> str:
    if name.endswith(("ss", "sh", "ch", "x")):
        return name + "es"
    return name + "s"


def _grouped(names: list[str]) -> list[str]:
    """Repeated names counted once, in first-seen order: ["violin", "violin"] -> ["two violins"]."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        counts[name] += 1
    out = []
    for name, n in counts.items():
        # Words, not digits, so the only number in a caption besides the metre is the bpm.
        many = _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else "several"
        plural = name.endswith("s") and not name.endswith("ss")  # "drums": no "two drums"
        out.append(name if n == 1 or plural else f"{many} {_plural(name)}")
    return out


class _Writer:
    """Renders one clip's attributes into templates; holds the keep/drop choices."""

    def __init__(self, attributes: dict, rng: np.random.Generator):
        self.rng = rng
        a = attributes
        self.genre = str(a["genre"]).strip()
        self.bpm = round(float(a["bpm"]))
        self.key = str(a["key"]).strip()
        self.mode = str(a["mode"]).strip().lower()
        self.meter = str(a["time_signature"]).strip()
        self.instruments = [str(x) for x in (a.get("instruments") or [])]
        self.ensemble = a.get("ensemble") or None
        self.mood = str(a["mood"]).strip() if a.get("mood") else None
        self.dynamics = str(a["dynamics"]).strip() if a.get("dynamics") else None
        music21 = a.get("source") == "music21"  # procedural clips have no real work to cite
        self.composer = (a.get("composer") or None) if music21 else None
        self.work = (a.get("source_work") or None) if music21 else None
        names = {n.lower() for n in self.instruments}
        self.available = {
            "mood": self.mood is not None,
            "tempo": True,
            "key": bool(self.key) and bool(self.mode),
            "meter": bool(self.meter),
            "instruments": bool(self.instruments),
            "ensemble": self.ensemble is not None,
            "dynamics": self.dynamics is not None,
            "source": self.composer is not None or self.work is not None,
            "drums": not a.get("has_drums", True) and not names & set(_DRUM_NAMES),
        }
        self.keep: dict[str, bool] = {}
        self.composer_prefix = False

    def _shows(self, slot: str) -> bool:
        attrs = SLOT_ATTRS[slot]
        return not attrs or any(self.keep.get(x) and self.available[x] for x in attrs)

    def can_fill(self, template: Template) -> bool:
        """Whether every slot outside brackets has something to say."""
        for optional, text in pattern_parts(template.pattern):
            for slot in SLOT_RE.findall(text):
                attrs = SLOT_ATTRS[slot]
                if not optional and attrs and not any(self.available[x] for x in attrs):
                    return False
        return True

    def _shown_attrs(self, parts: list[tuple[bool, str]]) -> set[str]:
        shown = set()
        for _, text in parts:
            slots = SLOT_RE.findall(text)
            if all(self._shows(s) for s in slots):
                shown |= {x for s in slots for x in SLOT_ATTRS[s] if self.keep.get(x)}
        return {x for x in shown if self.available[x]}

    def _choose_kept(self, parts: list[tuple[bool, str]]) -> None:
        rng = self.rng
        self.keep = {x: bool(rng.random() >= p) for x, p in DROP_PROBABILITY.items()}
        for optional, text in parts:  # slots outside brackets are always shown
            for slot in SLOT_RE.findall(text):
                attrs = [x for x in SLOT_ATTRS[slot] if self.available[x]]
                if not optional and attrs and not any(self.keep[x] for x in attrs):
                    self.keep[attrs[0]] = True
        # Name at least two attributes besides the genre where the template allows it.
        used = [x for _, t in parts for s in SLOT_RE.findall(t) for x in SLOT_ATTRS[s]]
        while len(self._shown_attrs(parts)) < _MIN_SHOWN:
            dropped = sorted({x for x in used if self.available[x] and not self.keep[x]})
            if not dropped:
                break
            self.keep[_pick(rng, dropped)] = True

    def fill(self, template: Template) -> str:
        """The caption text from `template`; draws the keep/drop choices first."""
        parts = pattern_parts(template.pattern)
        self._choose_kept(parts)
        slots = set(SLOT_RE.findall(template.pattern))
        can_prefix = (
            self.keep["source"]
            and self.composer is not None
            and self.genre.lower() in GENRE_HEADS
            and "genre" in slots
        )
        # "a Bach chorale" names the composer; otherwise it goes in a trailing phrase.
        self.composer_prefix = can_prefix and ("source" not in slots or self.rng.random() < 0.4)
        out = []
        for optional, text in parts:
            names = SLOT_RE.findall(text)
            if optional and not all(self._shows(s) for s in names):
                continue
            values = {s: self._render(s) for s in names}
            if optional and not all(values.values()):
                continue
            out.append(text.format_map(values))
        return tidy("".join(out))

    def _render(self, slot: str) -> str:
        if not self._shows(slot):
            return ""
        return getattr(self, "_" + slot)()

    # Slot renderers: each returns a phrase, or "" when there is nothing to say.

    def _genre(self) -> str:
        g = self.genre.lower()
        if self.composer_prefix:
            return f"{self._composer_short()} {GENRE_HEADS[g]}"
        return _pick(self.rng, GENRE_NOUNS.get(g, (self.genre, f"{self.genre} piece")))

    def _style(self) -> str:
        g = self.genre.lower()
        return _pick(self.rng, GENRE_STYLES.get(g, (g if g in GENRE_NOUNS else self.genre,)))

    def _mood(self) -> str:
        return _pick(self.rng, MOOD_WORDS.get(self.mood.lower(), (self.mood,)))

    def _tempo_forms(self, bpm_units: tuple[str, ...]) -> tuple[str, str, str, str]:
        """(how, number phrase, pace word, adjective); `how` is "number", "word" or "both"."""
        rng = self.rng
        band = tempo_word(self.bpm)
        how = _pick(rng, ("number", "number", "word", "both", "both"))
        number = f"{self.bpm} {_pick(rng, bpm_units)}"
        return how, number, _pick(rng, TEMPO_PACE[band]), _pick(rng, TEMPO_ADJECTIVES[band])

    def _tempo_pp(self) -> str:
        how, number, pace, _ = self._tempo_forms(BPM_UNITS)
        if how == "number":
            return f"at {number}"
        noun = _pick(self.rng, ("tempo", "pace"))
        if how == "word":
            return f"at a(n) {pace} {noun}"
        return _pick(
            self.rng,
            (f"at a(n) {pace} {noun} of {number}", f"at a(n) {pace} {noun} ({number})"),
        )

    def _tempo_adj(self) -> str:
        how, number, _, adj = self._tempo_forms(BPM_UNITS[:2])
        return {"number": number, "word": adj, "both": f"{adj}, {number}"}[how]

    def _tempo_short(self) -> str:
        how, number, _, adj = self._tempo_forms(BPM_UNITS)
        both = _pick(self.rng, (f"{adj} ({number})", f"{number}, {adj}"))
        return {"number": number, "word": adj, "both": both}[how]

    def _tonic(self) -> str:
        k = self.key
        if len(k) == 2 and k[0] in "ABCDEFG" and k[1] in "#b♯♭":
            acc = "sharp" if k[1] in "#♯" else "flat"
            return _pick(self.rng, (k, f"{k[0]}-{acc}", f"{k[0]} {acc}"))
        return k

    def _key_short(self) -> str:
        mode = self.mode
        if mode not in _MAJOR_MINOR and self.rng.random() < 0.5:
            mode = mode.capitalize()  # modes are often capitalised: "E Dorian"
        return f"{self._tonic()} {mode}"

    def _key_pp(self) -> str:
        if self.mode in _MAJOR_MINOR:
            r = self.rng.random()
            if r < 0.1:
                return f"in a {self.mode} key"
            if r < 0.4:
                return f"in the key of {self._key_short()}"
        elif self.rng.random() < 0.3:
            return f"in the {self._key_short()} mode"
        return f"in {self._key_short()}"

    def _meter_short(self) -> str:
        return _pick(self.rng, (self.meter, f"{self.meter} time", f"{self.meter} meter"))

    def _meter_pp(self) -> str:
        options = [f"in {self.meter}", f"in {self.meter} time"]
        options += [f"in {name}" for name in METER_NAMES.get(self.meter, ())]
        return _pick(self.rng, options)

    def _dynamics(self) -> str:
        d = self.dynamics
        return _pick(self.rng, DYNAMICS_PHRASES.get(d.lower(), (f"with {d} dynamics",)))

    def _dyn_short(self) -> str:
        d = self.dynamics
        return _pick(self.rng, DYNAMICS_SHORT.get(d.lower(), (d, f"{d} dynamics")))

    def _instrument_phrase(self) -> tuple[str, bool]:
        """The instruments (with the ensemble when kept) and whether the phrase is plural."""
        rng = self.rng
        names = self.instruments if self.keep["instruments"] else []
        ensemble = self.ensemble if self.keep["ensemble"] else None
        if ensemble is not None:
            lone = len(names) == 1 and names[0].lower() in ensemble.lower()
            if not names or lone:
                return f"a(n) {ensemble}", False
            listed = _join(_grouped(names), rng)
            forms = (f"a(n) {ensemble} of {listed}", f"a(n) {ensemble} ({listed})")
            return _pick(rng, (*forms, f"a(n) {ensemble} with {listed}")), False
        items = _grouped(names)  # counted over the whole list, so "two violins" stays true
        if len(items) > 3 and rng.random() < 0.35:  # only the first few, the leading parts
            items = items[: int(rng.integers(2, len(items)))]
        plural = len(items) > 1 or (items[0].endswith("s") and not items[0].endswith("ss"))
        return _join(items, rng), plural

    def _instruments(self) -> str:
        return self._instrument_phrase()[0]

    def _play(self) -> str:
        phrase, plural = self._instrument_phrase()
        verb = _pick(self.rng, ("play", "perform"))
        return f"{phrase} {verb if plural else verb + 's'}"

    def _composer_short(self) -> str:
        name = self.composer
        return COMPOSER_SHORT.get(name, name.split()[-1])

    def _source(self) -> str:
        if self.composer_prefix:
            return ""  # already named before the genre
        forms = []
        if self.composer is not None:
            forms += [f"after {self._composer_short()}", f"by {self.composer}"]
        if self.work is not None:
            forms += [f"based on {self.work}", f"arranged from {self.work}"]
        # Shield ". " in names ("J. S. Bach", "Op. 18") from the sentence-start capitals.
        return _pick(self.rng, forms).replace(". ", "." + KEEP_SPACE)

    def _drums(self) -> str:
        return _pick(self.rng, NO_DRUMS)

    def _details(self) -> str:
        """The kept short attributes, comma-separated in random order."""
        renderers = {
            "tempo": self._tempo_short,
            "key": self._key_short,
            "meter": self._meter_short,
            "mood": self._mood,
            "dynamics": self._dyn_short,
            "drums": self._drums,
        }
        kept = [x for x in renderers if self.keep[x] and self.available[x]]
        order = self.rng.permutation(len(kept))
        return ", ".join(renderers[kept[i]]() for i in order)
