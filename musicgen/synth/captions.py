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

Template syntax: `{slot}` is a phrase rendered from the attributes; `[...]` is an optional
part, left out when any slot in it is empty (its attribute dropped or unknown); `a(n)` is
an indefinite article fitted to the next word. Slots outside brackets are always shown.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np


@dataclasses.dataclass(frozen=True)
class Caption:
    """A caption and the id of the template it was written from."""

    text: str
    template: str


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

# Noun phrases for a genre, each usable after "a(n)". Only true synonyms: nothing that
# claims a sub-style, an instrument or a tempo the attributes do not give.
GENRE_NOUNS: dict[str, tuple[str, ...]] = {
    "rock": ("rock track", "rock tune", "rock instrumental", "rock piece"),
    "house": ("house track", "house tune", "house music track", "four-on-the-floor house groove"),
    "hip-hop": ("hip-hop track", "hip hop beat", "rap instrumental", "hip-hop instrumental"),
    "jazz swing": ("swing tune", "jazz swing number", "swinging jazz piece", "swing jazz track"),
    "bossa nova": ("bossa nova", "bossa nova tune", "bossa nova groove"),
    "waltz": ("waltz", "waltz tune", "waltz piece"),
    "ambient": ("ambient piece", "ambient track", "ambient soundscape"),
    "march": ("march", "marching tune", "march piece"),
    "funk": ("funk groove", "funk track", "funk jam"),
    "reggae": ("reggae tune", "reggae track", "reggae groove"),
    "blues": ("blues", "blues number", "blues tune"),
    "techno": ("techno track", "techno tune", "techno piece"),
    "baroque chorale": ("baroque chorale", "chorale harmonisation", "chorale setting"),
    "renaissance motet": ("renaissance motet", "polyphonic motet", "motet from the renaissance"),
    "renaissance mass": ("renaissance mass movement", "renaissance mass setting"),
    "madrigal": ("madrigal", "madrigal setting"),
    "fiddle tune": ("fiddle tune", "fiddle melody"),
    "celtic folk tune": ("celtic folk tune", "celtic tune", "celtic folk melody"),
    "folk song": ("folk song", "folk tune", "folk melody"),
    "medieval ballata": ("medieval ballata", "ballata", "trecento ballata"),
    "classical": ("classical piece", "classical composition", "piece of classical music"),
}

# Bare style labels for a genre, usable as "<style> music", "in the <style> style".
GENRE_STYLES: dict[str, tuple[str, ...]] = {
    "hip-hop": ("hip-hop", "hip hop", "rap"),
    "jazz swing": ("swing", "swing jazz", "jazz swing"),
    "baroque chorale": ("baroque chorale", "chorale"),
    "renaissance motet": ("renaissance motet", "renaissance polyphony"),
    "renaissance mass": ("renaissance mass", "renaissance polyphony"),
    "fiddle tune": ("fiddle",),
    "celtic folk tune": ("celtic folk", "celtic"),
    "folk song": ("folk",),
    "medieval ballata": ("medieval", "trecento"),
}

# The genre's head noun after a composer's name, as in "a Bach chorale"; genres not here
# never get the composer as a prefix.
GENRE_HEADS: dict[str, str] = {
    "baroque chorale": "chorale",
    "renaissance motet": "motet",
    "renaissance mass": "mass movement",
    "madrigal": "madrigal",
    "medieval ballata": "ballata",
    "classical": "piece",
}

# How a composer is named in short; others go by the last word of the name.
COMPOSER_SHORT: dict[str, str] = {
    "J. S. Bach": "Bach",
    "Johann Sebastian Bach": "Bach",
    "Josquin des Prez": "Josquin",
    "Giovanni Pierluigi da Palestrina": "Palestrina",
}

# Mood synonyms. None of them is a tempo word (see TEMPO_PACE, TEMPO_ADJECTIVES), so a
# mood never reads as a claim about the tempo.
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "energetic": ("energetic", "high-energy", "vigorous"),
    "calm": ("calm", "peaceful", "tranquil", "serene"),
    "melancholic": ("melancholic", "melancholy", "wistful", "sad"),
    "joyful": ("joyful", "happy", "cheerful", "joyous"),
    "dark": ("dark", "brooding", "ominous", "gloomy"),
    "dreamy": ("dreamy", "ethereal", "hazy"),
    "solemn": ("solemn", "reverent", "sombre", "dignified"),
    "lively": ("lively", "spirited", "bouncy", "vivacious"),
    "laid-back": ("laid-back", "relaxed", "easygoing", "mellow"),
    "triumphant": ("triumphant", "victorious", "heroic", "jubilant"),
    "happy": ("happy", "cheerful", "sunny"),
    "sad": ("sad", "sorrowful", "mournful"),
    "peaceful": ("peaceful", "serene", "calm"),
    "romantic": ("romantic", "tender"),
    "tense": ("tense", "suspenseful", "uneasy"),
    "playful": ("playful", "whimsical"),
    "nostalgic": ("nostalgic", "wistful", "sentimental"),
    "uplifting": ("uplifting", "hopeful", "inspiring"),
    "mysterious": ("mysterious", "enigmatic"),
    "majestic": ("majestic", "grand", "stately"),
}

# Dynamics as a trailing phrase ("..., played softly") and as a short predicate ("soft",
# fits "Dynamics: _" and "calm and _").
# No tempo words here either: "moderate" dynamics are "mezzo-forte", not "moderate".
DYNAMICS_PHRASES: dict[str, tuple[str, ...]] = {
    "soft": ("played softly", "played quietly", "at a gentle volume"),
    "moderate": ("at mezzo-forte", "neither loud nor soft", "at an even volume"),
    "loud": ("played loud", "played loudly", "at full volume", "with loud dynamics"),
    "building": ("building in intensity", "gradually building", "with a steady crescendo"),
}
DYNAMICS_SHORT: dict[str, tuple[str, ...]] = {
    "soft": ("soft", "quiet"),
    "moderate": ("mezzo-forte", "even in volume"),
    "loud": ("loud", "forte"),
    "building": ("building", "swelling", "growing louder"),
}

# Tempo bands by bpm: [0, 80) slow, [80, 110) moderate, [110, 135) upbeat, [135, ∞) fast.
# A tempo word in a caption is always one of its band's words below.
TEMPO_BANDS: tuple[tuple[int, str], ...] = ((80, "slow"), (110, "moderate"), (135, "upbeat"))
TEMPO_FASTEST = "fast"
# Words for "a(n) <word> tempo/pace".
TEMPO_PACE: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "leisurely", "unhurried"),
    "moderate": ("moderate", "medium"),
    "upbeat": ("brisk", "upbeat"),
    "fast": ("fast", "quick", "rapid"),
}
# Words before the genre noun, as in "a mid-tempo waltz".
TEMPO_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slow-paced", "unhurried"),
    "moderate": ("mid-tempo", "medium-tempo", "moderately paced"),
    "upbeat": ("upbeat", "up-tempo", "brisk"),
    "fast": ("fast", "fast-paced", "quick"),
}
BPM_UNITS = ("bpm", "BPM", "beats per minute")

# Named metres, used beside the plain "3/4".
METER_NAMES: dict[str, tuple[str, ...]] = {
    "4/4": ("common time",),
    "3/4": ("triple time",),
    "2/4": ("duple time",),
    "6/8": ("compound duple time",),
}

# Phrases for a clip without drums (only said when the list names no drums).
NO_DRUMS = ("no drums", "drumless", "without drums")

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

# Attributes a slot renders; a slot shows when any of them is kept.
_SLOT_ATTRS: dict[str, tuple[str, ...]] = {
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
_SLOT_RE = re.compile(r"\{(\w+)\}")
_KEEP_SPACE = "\ue000"  # a private-use character standing for a space inside a name
_PART_RE = re.compile(r"\[([^\[\]]*)\]|([^\[\]]+)")


def tempo_word(bpm: float) -> str:
    """The tempo band of `bpm`: "slow" below 80, "moderate" below 110, "upbeat" below 135,
    else "fast"."""
    for upper, word in TEMPO_BANDS:
        if bpm < upper:
            return word
    return TEMPO_FASTEST


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


def _parts(pattern: str) -> list[tuple[bool, str]]:
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
        attrs = _SLOT_ATTRS[slot]
        return not attrs or any(self.keep.get(x) and self.available[x] for x in attrs)

    def can_fill(self, template: Template) -> bool:
        """Whether every slot outside brackets has something to say."""
        for optional, text in _parts(template.pattern):
            for slot in _SLOT_RE.findall(text):
                attrs = _SLOT_ATTRS[slot]
                if not optional and attrs and not any(self.available[x] for x in attrs):
                    return False
        return True

    def _shown_attrs(self, parts: list[tuple[bool, str]]) -> set[str]:
        shown = set()
        for _, text in parts:
            slots = _SLOT_RE.findall(text)
            if all(self._shows(s) for s in slots):
                shown |= {x for s in slots for x in _SLOT_ATTRS[s] if self.keep.get(x)}
        return {x for x in shown if self.available[x]}

    def _choose_kept(self, parts: list[tuple[bool, str]]) -> None:
        rng = self.rng
        self.keep = {x: bool(rng.random() >= p) for x, p in DROP_PROBABILITY.items()}
        for optional, text in parts:  # slots outside brackets are always shown
            for slot in _SLOT_RE.findall(text):
                attrs = [x for x in _SLOT_ATTRS[slot] if self.available[x]]
                if not optional and attrs and not any(self.keep[x] for x in attrs):
                    self.keep[attrs[0]] = True
        # Name at least two attributes besides the genre where the template allows it.
        used = [x for _, t in parts for s in _SLOT_RE.findall(t) for x in _SLOT_ATTRS[s]]
        while len(self._shown_attrs(parts)) < _MIN_SHOWN:
            dropped = sorted({x for x in used if self.available[x] and not self.keep[x]})
            if not dropped:
                break
            self.keep[_pick(rng, dropped)] = True

    def fill(self, template: Template) -> str:
        """The caption text from `template`; draws the keep/drop choices first."""
        parts = _parts(template.pattern)
        self._choose_kept(parts)
        slots = set(_SLOT_RE.findall(template.pattern))
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
            names = _SLOT_RE.findall(text)
            if optional and not all(self._shows(s) for s in names):
                continue
            values = {s: self._render(s) for s in names}
            if optional and not all(values.values()):
                continue
            out.append(text.format_map(values))
        return _tidy("".join(out))

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
        return _pick(self.rng, forms).replace(". ", "." + _KEEP_SPACE)

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


def _tidy(text: str) -> str:
    """Articles, spacing and capitals of a filled template."""
    text = re.sub(
        r"\b([Aa])\(n\) (\S+)", lambda m: f"{_cap_like(m[1], _article(m[2]))} {m[2]}", text
    )
    text = re.sub(r"[ \t\n]+", " ", text).strip()
    text = re.sub(r" +([,.;:])", r"\1", text)
    # Capitals at sentence starts; ". " inside names was shielded by _KEEP_SPACE.
    text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m[1] + m[2].upper(), text)
    return text.replace(_KEEP_SPACE, " ")


def _cap_like(model: str, word: str) -> str:
    return word.capitalize() if model.isupper() else word
