"""Controls: every form a user types, the bad values refused in one line, precedence."""

import pytest

from musicgen.controls import ControlError, Controls, canonical_instrument, parse_key
from musicgen.controls.chords import chord_chroma, harte, parse_progression


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("E minor", ("E", "minor")),
        ("F#m", ("F#", "minor")),
        ("F sharp minor", ("F#", "minor")),
        ("B-flat major", ("A#", "major")),
        ("Bb", ("A#", "major")),
        ("E♭ major", ("D#", "major")),
        ("D dorian", ("D", "dorian")),
        ("a aeolian", ("A", "minor")),
    ],
)
def test_keys_in_every_spelling(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"bpm": 0}, "bpm must lie in 30-300"),
        ({"bpm": 2000}, "bpm must lie in 30-300"),
        ({"bpm": float("nan")}, "finite"),
        ({"bpm": "fast"}, "must be a number"),
        ({"key": "H minor"}, "unknown key 'H minor'"),
        ({"key": "E lydianish"}, "unknown mode"),
        ({"chords": "Am Xq"}, "unknown chord 'Xq'"),
        ({"chords": ""}, "progression is empty"),
        (
            {"instruments": "piano,kazoo"},
            "unknown instrument 'kazoo'; known instruments: accordion",
        ),
        ({"time_signature": "4/3"}, "time signature must be N/D"),
        ({"time_signature": "0/4"}, "time signature must be N/D"),
    ],
)
def test_bad_values_say_what_is_accepted(kwargs, says):
    with pytest.raises(ControlError, match=says) as err:
        Controls.make(**kwargs)
    assert "\n" not in str(err.value)


def test_make_reads_user_text():
    c = Controls.make(bpm=126, key="E minor", time_signature="6/8",
                      instruments="Piano, drum kit, sax", chords="Am | F | C | G7")  # fmt: skip
    assert c == Controls(126.0, (6, 8), "E", "minor", ("piano", "drums", "saxophone"),
                         ("Am", "F", "C", "G7"))  # fmt: skip
    assert c.describe() == "126 bpm, 6/8, E minor, piano + drums + saxophone, chords Am F C G7"
    assert Controls.from_dict(c.to_dict()) == c
    assert c.bar_seconds == pytest.approx(3 * 60 / 126)


def test_explicit_values_win_over_parsed_ones():
    explicit = Controls.make(bpm=90, instruments="violin")
    parsed = Controls.make(bpm=126, key="E minor", instruments="piano")
    assert explicit.merged(parsed) == Controls(90.0, None, "E", "minor", ("violin",))
    assert parsed.without("key", "bpm") == Controls(instruments=("piano",))
    with pytest.raises(ControlError, match="unknown control 'tempo'"):
        parsed.without("tempo")


def test_attributes_give_the_truth_and_skip_what_is_unknown():
    attributes = {"bpm": 97, "key": "Bb", "mode": "aeolian", "time_signature": "3/4",
                  "instruments": ["piano", "theremin"], "chords": ["Gm", "Eb"],
                  "downbeat": 0.31}  # fmt: skip
    c = Controls.from_attributes(attributes)
    assert c == Controls(97.0, (3, 4), "A#", "minor", ("piano",), ("Gm", "D#"), 0.31)
    assert Controls.from_attributes({"bpm": 5000, "key": "C"}) == Controls()


def test_chords_parse_to_chroma_and_mir_eval_labels():
    assert parse_progression("Am, F,C  G") == ("Am", "F", "C", "G")
    assert chord_chroma("Am") == (1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0)
    assert chord_chroma("G7") == (0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1)
    assert chord_chroma("N") == (0,) * 12
    assert [harte(c) for c in ("Am", "Bbmaj7", "C/G", "N")] == ["A:min", "A#:maj7", "C:maj", "N"]
    progression = Controls.make(chords="Am F")
    assert [progression.chord_at_bar(b) for b in range(5)] == ["Am", "F", "Am", "F", "Am"]


def test_instrument_synonyms_and_plurals():
    assert canonical_instrument("Violins") == "violin"
    assert canonical_instrument("double bass") == "upright bass"
    assert canonical_instrument("Rhodes") == "electric piano"
