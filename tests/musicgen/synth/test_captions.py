"""Caption writer: the template splits, variety of wording and truthfulness to attributes."""

import re

import numpy as np
import pytest

from musicgen.synth.caption_templates import HELD_OUT_TEMPLATES, TRAIN_TEMPLATES
from musicgen.synth.caption_words import (
    DYNAMICS_PHRASES,
    DYNAMICS_SHORT,
    GENRE_NOUNS,
    GENRE_STYLES,
    METER_NAMES,
    MOOD_WORDS,
    NO_DRUMS,
    TEMPO_ADJECTIVES,
    TEMPO_PACE,
    tempo_word,
)
from musicgen.synth.captions import Caption, write_caption
from musicgen.synth.score import GM_PROGRAMS

JAZZ = {
    "genre": "jazz swing",
    "bpm": 96,
    "key": "F",
    "mode": "minor",
    "time_signature": "4/4",
    "instruments": ["drums", "electric bass", "piano", "saxophone"],
    "ensemble": "jazz quartet",
    "mood": "melancholic",
    "dynamics": "soft",
    "has_drums": True,
    "source": "procedural",
    "source_work": "procedural jazz swing",
    "composer": None,
}
CHORALE = {
    "genre": "baroque chorale",
    "bpm": 72,
    "key": "Bb",
    "mode": "major",
    "time_signature": "3/4",
    "instruments": ["violin", "violin", "viola", "cello"],
    "ensemble": "string quartet",
    "mood": "solemn",
    "dynamics": "building",
    "has_drums": False,
    "source": "music21",
    "source_work": "Bach chorale BWV 66.6",
    "composer": "J. S. Bach",
}
FIDDLE = {
    "genre": "fiddle tune",
    "bpm": 150,
    "key": "F#",
    "mode": "mixolydian",
    "time_signature": "6/8",
    "instruments": ["fiddle", "acoustic guitar", "banjo", "double bass", "mandolin", "accordion"],
    "ensemble": None,
    "mood": "lively",
    "dynamics": "loud",
    "has_drums": False,
    "source": "music21",
    "source_work": "Ryan's Mammoth Collection: The Kesh",
    "composer": None,
}
HOUSE = {
    "genre": "house",
    "bpm": 124,
    "key": "A",
    "mode": "minor",
    "time_signature": "4/4",
    "instruments": ["drums", "synth bass", "synth pad", "electric piano"],
    "ensemble": None,
    "mood": "energetic",
    "dynamics": "moderate",
    "has_drums": True,
    "source": "procedural",
    "source_work": "procedural house",
    "composer": None,
}
UNKNOWN = {
    "genre": "polka",
    "bpm": 80,
    "key": "E",
    "mode": "dorian",
    "time_signature": "2/4",
    "instruments": ["accordion", "tuba", "clarinet"],
    "ensemble": None,
    "mood": "bittersweet",
    "dynamics": "fading",
    "has_drums": False,
    "source": "procedural",
    "source_work": "procedural polka",
    "composer": None,
}
ALL_ATTRIBUTES = [JAZZ, CHORALE, FIDDLE, HOUSE, UNKNOWN]

# Every instrument name a caption could plausibly say: GM programs plus everyday names.
INSTRUMENT_VOCAB = set(GM_PROGRAMS) | {
    "piano", "drums", "drum kit", "percussion", "bass", "electric bass", "double bass",
    "guitar", "electric guitar", "acoustic guitar", "saxophone", "sax", "trumpet", "violin",
    "viola", "cello", "organ", "church organ", "synth", "synth bass", "synth pad", "synth lead",
    "flute", "clarinet", "oboe", "bassoon", "horn", "french horn", "trombone", "tuba", "harp",
    "harpsichord", "strings", "choir", "vocals", "voice", "vibraphone", "marimba", "accordion",
    "banjo", "mandolin", "fiddle", "bagpipes", "tin whistle", "congas", "bongos", "shaker",
    "tambourine", "recorder", "lute", "electric piano", "rhodes", "timpani", "glockenspiel",
    "cymbals", "hi-hat", "snare", "kick", "ukulele", "sitar", "keyboard", "keys", "pad",
}  # fmt: skip
MODES = ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian", "aeolian", "locrian")
KEY_RE = re.compile(
    r"\b([A-G])(#|b|♯|♭|-sharp|-flat| sharp| flat)? (?i:(" + "|".join(MODES) + r"))\b"
)
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _draw(attributes, split="train", n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [write_caption(attributes, rng, split) for _ in range(n)]


def _without(text: str, phrases) -> str:
    for phrase in sorted((p for p in phrases if p), key=len, reverse=True):
        text = re.sub(re.escape(phrase.lower()), " ", text)
    return text


def _assert_truthful(text: str, a: dict) -> None:
    # Text that names things other than instruments and values: names, titles, genres.
    genre = a["genre"].lower()
    names = [a["source_work"], a["composer"], a["ensemble"]]
    names += GENRE_NOUNS.get(genre, ()) + GENRE_STYLES.get(genre, ())
    body = _without(text.lower(), [n.lower() for n in names if n])
    cased = text
    for n in names:
        if n:
            cased = cased.replace(n, " ")

    # Tempo: any number with a bpm unit is the bpm; any tempo word is from the bpm's band.
    for number in re.findall(r"(\d+)[ -](?:bpm|beats per minute)", body):
        assert int(number) == a["bpm"], text
    for number in re.findall(r"\b\d+\b", re.sub(r"\d+/\d+", " ", body)):
        assert int(number) == a["bpm"], text
    band = tempo_word(a["bpm"])
    for other in TEMPO_PACE:
        if other == band:
            continue
        for word in TEMPO_PACE[other] + TEMPO_ADJECTIVES[other]:
            assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", body), (word, text)

    # Key: every tonic + mode phrase is the attributes' own, and so is every mode word.
    for tonic, accidental, mode in KEY_RE.findall(cased):
        accidental = {"": "", "#": "#", "♯": "#", "b": "b", "♭": "b"}.get(
            accidental, "#" if "sharp" in accidental else "b"
        )
        assert (tonic + accidental, mode.lower()) == (a["key"], a["mode"]), text
    for mode in re.findall(r"\b(" + "|".join(MODES) + r")\b", body):
        assert mode == a["mode"], text

    # Metre.
    for meter in re.findall(r"\d+/\d+", body):
        assert meter == a["time_signature"], text
    named = {"common time": "4/4", "triple time": "3/4", "compound duple": "6/8"}
    for phrase, meter in named.items():
        if phrase in body:
            assert meter == a["time_signature"], text
    if re.search(r"(?<!compound )duple time", body):
        assert a["time_signature"] == "2/4", text

    # Instruments: none outside the list; counts ("two violins") as in the list.
    listed = [n.lower() for n in a["instruments"]]
    for word, plural in re.findall(r"\b(two|three|four|five|six) ([a-z ]+?s)\b", body):
        names = [n for n in (plural[:-1], plural[:-2]) if n in listed]
        assert names and listed.count(names[0]) == NUMBER_WORDS[word], text
    rest = _without(body, ["no drums", "without drums", "drumless"])
    for name in sorted(set(listed), key=len, reverse=True):
        rest = re.sub(rf"\b{re.escape(name)}(e?s)?\b", " ", rest)
    for name in INSTRUMENT_VOCAB - set(listed):
        assert not re.search(rf"\b{re.escape(name)}s?\b", rest), (name, text)


def _assert_well_formed(text: str) -> None:
    assert (text[0].isupper() or text[0].isdigit()) and text.endswith("."), text
    assert not re.search(r"[{}\[\]]|a\(n\)|  | [,.;:]|,,|\.\.", text), text
    assert not re.search(r"\b[Aa] [aeiou]|\b[Aa]n [b-df-hj-np-tv-z]", text), text
    assert not re.search(r"\b[Aa] [AEF][#b]? |\b[Aa]n [BCDG][#b]? ", text), text
    assert "None" not in text, text


def test_tempo_word_bands():
    assert [tempo_word(b) for b in (40, 79, 80, 109, 110, 134, 135, 200)] == [
        "slow", "slow", "moderate", "moderate", "upbeat", "upbeat", "fast", "fast",
    ]  # fmt: skip


def test_template_sets_disjoint():
    train_ids = {t.id for t in TRAIN_TEMPLATES}
    held_ids = {t.id for t in HELD_OUT_TEMPLATES}
    assert len(train_ids) == len(TRAIN_TEMPLATES) >= 12
    assert len(held_ids) == len(HELD_OUT_TEMPLATES) >= 5
    assert not train_ids & held_ids
    assert not {t.pattern for t in TRAIN_TEMPLATES} & {t.pattern for t in HELD_OUT_TEMPLATES}


def _tokens(pattern: str) -> set[str]:
    slots = set(re.findall(r"\{(\w+)\}", pattern))
    literal = re.sub(r"\{\w+\}|a\(n\)", " ", pattern)
    return slots | {w.lower() for w in re.findall(r"[A-Za-z]+", literal)}


def test_held_out_templates_use_unseen_wording():
    """Each held-out template has a word or a phrase shape no training template has."""
    seen = set().union(*(_tokens(t.pattern) for t in TRAIN_TEMPLATES))
    for t in HELD_OUT_TEMPLATES:
        assert _tokens(t.pattern) - seen, t.id


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_split_draws_only_from_its_templates(split):
    allowed = {t.id for t in (TRAIN_TEMPLATES if split == "train" else HELD_OUT_TEMPLATES)}
    used = set()
    for a in ALL_ATTRIBUTES:
        for caption in _draw(a, split, n=150):
            assert isinstance(caption, Caption)
            used.add(caption.template)
    assert used <= allowed
    assert used == allowed  # every template is reachable


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="split"):
        write_caption(JAZZ, np.random.default_rng(0), "test")


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_variety(split):
    drawn = _draw(JAZZ, split)
    texts = [c.text for c in drawn]
    assert len(set(texts)) >= 150
    assert len({c.template for c in drawn}) >= (12 if split == "train" else 5)
    lengths = [len(t.split()) for t in texts]
    assert max(lengths) - min(lengths) >= 10 and len(set(lengths)) >= 10
    lowered = [t.lower() for t in texts]
    assert any("bpm" in t for t in lowered) and any("beats per minute" in t for t in lowered)
    assert any(re.search(r"\b96\b", t) is None and "mid-tempo" in t for t in lowered)
    assert any(re.search(r"\b96\b", t) for t in lowered)
    # Several genre and mood synonyms, and attributes in more than one order.
    assert sum(any(g in t for t in lowered) for g in GENRE_NOUNS["jazz swing"]) >= 3
    assert sum(any(m in t for t in lowered) for m in MOOD_WORDS["melancholic"]) >= 3
    assert any(t.find("f minor") < t.find("96") for t in lowered if "f minor" in t and "96" in t)
    assert any(t.find("f minor") > t.find("96") for t in lowered if "f minor" in t and "96" in t)


def test_attributes_are_sometimes_left_out():
    lowered = [c.text.lower() for c in _draw(JAZZ)]
    assert any("minor" not in t for t in lowered)
    assert any("96" not in t and "tempo" not in t and "pace" not in t for t in lowered)
    assert any(not any(m in t for m in MOOD_WORDS["melancholic"]) for t in lowered)
    # The list may be cut to its first few entries.
    assert any("saxophone" not in t and "electric bass" in t for t in lowered)


def test_genre_synonyms():
    texts = " ".join(c.text.lower() for c in _draw(dict(JAZZ, genre="hip-hop")))
    for phrase in ("hip-hop", "hip hop beat", "rap instrumental"):
        assert phrase in texts


@pytest.mark.parametrize("split", ["train", "held_out"])
@pytest.mark.parametrize("a", ALL_ATTRIBUTES, ids=lambda a: a["genre"])
def test_captions_are_truthful_and_well_formed(a, split):
    for caption in _draw(a, split, n=300):
        _assert_truthful(caption.text, a)
        _assert_well_formed(caption.text)


def _mentions(text: str, a: dict) -> set[str]:
    t = text.lower()
    moods = MOOD_WORDS.get(a["mood"], (a["mood"],))
    dyn = DYNAMICS_PHRASES.get(a["dynamics"], ()) + DYNAMICS_SHORT.get(
        a["dynamics"], (a["dynamics"],)
    )
    band = tempo_word(a["bpm"])
    sources = [s for s in (a["composer"], a["source_work"]) if s and a["source"] == "music21"]
    checks = {
        "tempo": [str(a["bpm"]), *TEMPO_PACE[band], *TEMPO_ADJECTIVES[band]],
        "key": [a["mode"]],
        "meter": [a["time_signature"], *METER_NAMES.get(a["time_signature"], ())],
        "instruments": [n.lower() for n in a["instruments"]],
        "ensemble": [a["ensemble"]] if a["ensemble"] else [],
        "mood": list(moods),
        "dynamics": list(dyn),
        "source": sources + (["bach"] if a["composer"] else []),
        "drums": list(NO_DRUMS),
    }
    return {k for k, words in checks.items() if any(w.lower() in t for w in words)}


@pytest.mark.parametrize("split", ["train", "held_out"])
def test_genre_and_two_more_attributes(split):
    for a in ALL_ATTRIBUTES:
        genre_words = GENRE_NOUNS.get(a["genre"], ()) + GENRE_STYLES.get(a["genre"], (a["genre"],))
        for caption in _draw(a, split, n=100):
            t = caption.text.lower()
            assert any(g in t for g in genre_words) or "chorale" in t, caption.text
            assert len(_mentions(caption.text, a)) >= 2, caption.text


def test_key_phrasings():
    texts = [c.text for c in _draw(dict(FIDDLE, key="E", mode="dorian"), n=300)]
    assert any("in E dorian" in t or "in E Dorian" in t for t in texts)
    texts = [c.text for c in _draw(JAZZ, n=300)]
    assert any("in the key of F minor" in t for t in texts)
    assert any("in F minor" in t for t in texts)
    assert any(re.search(r"(^|, )F minor", t) for t in texts)
    sharp = " ".join(c.text for c in _draw(FIDDLE, n=300))
    assert "F#" in sharp and ("F-sharp" in sharp or "F sharp" in sharp)
    assert re.search(r"\b[Aa]n F minor", " ".join(c.text for c in _draw(JAZZ, n=300)))


def test_ensemble_with_instruments():
    texts = [c.text for c in _draw(CHORALE, n=300)]
    assert any("string quartet of two violins, viola" in t for t in texts)
    assert any("Bach chorale" in t or "after Bach" in t or "by J. S. Bach" in t for t in texts)
    assert not any("J. s." in t for t in texts)


def test_counts_stay_true_when_the_list_is_shortened():
    a = dict(UNKNOWN, instruments=["violin", "viola", "violin", "cello", "flute", "violin"])
    texts = [c.text for c in _draw(a, n=300)]
    assert any("three violins" in t for t in texts)
    assert any("three violins" in t and "flute" not in t for t in texts)  # shortened
    for t in texts:
        _assert_truthful(t, a)


def test_music21_source_without_composer_names_the_work():
    texts = [c.text for c in _draw(FIDDLE, n=300)]
    assert any(FIDDLE["source_work"] in t for t in texts)
    assert not any("procedural" in c.text for c in _draw(JAZZ, n=300))


def test_deterministic_for_a_seed():
    for a in ALL_ATTRIBUTES:
        assert _draw(a, n=50, seed=7) == _draw(a, n=50, seed=7)
        assert _draw(a, "held_out", n=50, seed=7) == _draw(a, "held_out", n=50, seed=7)
    assert _draw(JAZZ, n=50, seed=7) != _draw(JAZZ, n=50, seed=8)


def test_unknown_strings_used_as_is():
    texts = " ".join(c.text for c in _draw(UNKNOWN, n=300))
    assert "polka" in texts and "bittersweet" in texts and "fading" in texts


def test_none_and_empty_fields():
    bare = dict(JAZZ, ensemble=None, composer=None, source="music21", source_work=None)
    for caption in _draw(bare, n=100) + _draw(bare, "held_out", n=100):
        _assert_well_formed(caption.text)
        assert "jazz quartet" not in caption.text
    no_instruments = dict(UNKNOWN, instruments=[])
    for split in ("train", "held_out"):
        for caption in _draw(no_instruments, split, n=100):
            _assert_well_formed(caption.text)
            _assert_truthful(caption.text, no_instruments)
    ensemble_only = dict(CHORALE, instruments=[], ensemble="church organ")
    texts = [c.text for c in _draw(ensemble_only, n=100)]
    assert any("church organ" in t for t in texts)


def test_float_bpm_rounds():
    texts = [c.text for c in _draw(dict(JAZZ, bpm=96.0), n=100)]
    assert any(re.search(r"\b96 (bpm|BPM|beats)", t) for t in texts)
    assert not any("96.0" in t for t in texts)
