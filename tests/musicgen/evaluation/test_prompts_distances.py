"""What a caption asks for, and the set distances, on inputs with known answers."""

import numpy as np
import pytest

from musicgen.evaluation.distances import frechet_distance, label_kl
from musicgen.evaluation.prompts import asked, named_instruments, states_bpm, states_key
from musicgen.synth.captions import write_caption

ATTRS = {
    "genre": "pop", "mood": "melancholic", "dynamics": "moderate", "ensemble": None,
    "source": "procedural", "source_work": None, "composer": None, "bpm": 97, "key": "G#",
    "mode": "minor", "time_signature": "4/4", "has_drums": True,
    "instruments": ["flute", "violin", "electric bass", "drums"],
}  # fmt: skip


def test_states_bpm_only_as_a_whole_number():
    assert states_bpm("at a medium pace (97 beats per minute)", 97)
    assert states_bpm("97 BPM, sad", 97.2)
    assert not states_bpm("at 197 bpm", 97)
    assert not states_bpm("at 97.5 bpm", 97)
    assert not states_bpm("a slow tune", 97)


@pytest.mark.parametrize(
    ("caption", "key", "mode", "expected"),
    [
        ("A G sharp minor pop song", "G#", "minor", True),
        ("in the key of G-sharp minor", "G#", "minor", True),
        ("in G# minor", "G#", "minor", True),
        ("in G minor", "G#", "minor", False),  # the accidental is part of the key
        ("in G# minor", "G", "minor", False),
        ("in Bb major", "Bb", "major", True),
        ("in B-flat major", "Bb", "major", True),
        ("in B major", "Bb", "major", False),
        ("in G sharp major", "G#", "minor", False),  # the mode must match too
        ("in the E Dorian mode", "E", "dorian", False),  # only major and minor are scored
        ("in a minor key", "A", "minor", False),  # "a" is an article, not the tonic
    ],
)
def test_states_key(caption, key, mode, expected):
    assert states_key(caption, key, mode) is expected


def test_named_instruments_singular_plural_and_not_substrings():
    names = named_instruments("two violins and an electric bass", ["violin", "bass", "flute"])
    assert names == ("violin", "bass")  # "bass" is a word of "electric bass"
    assert named_instruments("a bassoon solo", ["bass", "bassoon"]) == ("bassoon",)


def test_asked_collects_what_the_caption_states():
    a = asked("A G sharp minor tune with violins and drums at 97 bpm.", ATTRS)
    assert (a.bpm, a.key, a.mode, a.instruments, a.has_drums) == (
        97.0, "G#", "minor", ("violin", "drums"), True,
    )  # fmt: skip
    none = asked("A sad pop song.", ATTRS)
    assert (none.bpm, none.key, none.instruments) == (None, None, ())


def test_asked_is_truthful_on_written_captions():
    """Whatever a written caption states is the attributes' own value."""
    rng = np.random.default_rng(0)
    stated = {"bpm": 0, "key": 0}
    for split in ("train", "held_out"):
        for _ in range(60):
            a = asked(write_caption(ATTRS, rng, split).text, ATTRS)
            assert a.bpm in (None, 97.0) and a.key in (None, "G#")
            stated["bpm"] += a.bpm is not None
            stated["key"] += a.key is not None
    assert stated["bpm"] > 20 and stated["key"] > 20


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Shifting by mu adds |mu|^2; scaling one set by s adds tr((1 - s)^2 S) = 3 (1 - s)^2.
    assert frechet_distance(a, a + np.array([1.0, 2.0, 2.0])) == pytest.approx(9.0, abs=1e-6)
    assert frechet_distance(a, 2.0 * a) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)


def test_label_kl_known_values():
    p = np.array([[0.9, 0.1], [0.5, 0.5]])
    assert label_kl(p, p) == pytest.approx([0.0, 0.0], abs=1e-9)
    # Row 1 normalised: (0.5, 0.5) against (0.9, 0.1): 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1).
    kl = label_kl(np.array([[1.0, 1.0]]), np.array([[0.9, 0.1]]), eps=0.0)
    assert kl[0] == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(5.0), rel=1e-9)
