"""The demo's asked-against-heard checks: grades on audio with known tempo and key."""

import numpy as np

from musicgen.controls.types import Controls
from musicgen.evaluation.checks import check_controls

from .test_music import C_MAJOR, RATE, click_track


class Judge:
    """Stands in for a trained judge: fixed probabilities for a three-name vocabulary."""

    instruments = ("drums", "flute", "piano")

    def instrument_probs(self, audio, rate):
        assert len(audio) == 1 and rate == RATE
        return np.array([[0.9, 0.2, 0.51]])


def test_tempo_key_and_instruments_are_graded_as_eval_generate_grades_them():
    beats = click_track(120, seconds=6.0)
    key = np.tile(C_MAJOR, 2)[: len(beats)]
    clip = np.stack([beats + 0.5 * key[: len(beats)]] * 2)
    asked = Controls.make(bpm=120, key="C major", instruments="drums, flute, piano")
    checks = check_controls(clip, RATE, asked, Judge())
    assert [(c.control, c.asked, c.ok) for c in checks] == [
        ("tempo", "120 bpm", True), ("key", "C major", True), ("drums", "asked", True),
        ("flute", "asked", False), ("piano", "asked", True),
    ]  # fmt: skip
    assert checks[0].heard.endswith(" bpm") and abs(float(checks[0].heard[:-4]) - 120) < 4.8
    assert [c.mark for c in checks] == ["✓", "✓", "✓", "✗", "✓"]
    assert checks[3].heard == "p = 0.20"

    wrong = check_controls(clip, RATE, Controls.make(bpm=60, key="A minor"))
    assert [(c.control, c.ok, c.grade) for c in wrong] == [
        ("tempo", False, "octave"), ("key", False, "relative"),
    ]  # fmt: skip


def test_what_cannot_be_graded_has_no_mark():
    clip = np.stack([np.tile(C_MAJOR, 2)] * 2)
    checks = check_controls(clip, RATE, Controls.make(key="D dorian", instruments="piano"))
    assert [(c.control, c.ok, c.mark) for c in checks] == [("key", None, "–"), ("piano", None, "–")]
    assert checks[1].heard == ""  # no judge, nothing heard
    assert check_controls(clip, RATE, Controls()) == []
