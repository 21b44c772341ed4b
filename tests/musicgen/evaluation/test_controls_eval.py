"""The controls section of `eval generate`, on audio whose tempo, beats and chords are known."""

import numpy as np
import pytest

from musicgen.controls import Controls
from musicgen.evaluation import controls_eval
from musicgen.evaluation.controls_eval import Case, asked_beats, measure, summarise

RATE = 22050


def _song(bpm: float, chords: list[list[int]], seconds: float) -> np.ndarray:
    """Clicks on every beat over sustained triads, one per 4/4 bar."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    bar = 4 * 60.0 / bpm
    for i, triad in enumerate(chords):
        on = (t >= i * bar) & (t < (i + 1) * bar)
        for midi in triad:
            f = 440.0 * 2 ** ((midi - 69) / 12)
            x[on] += 0.2 * np.sin(2 * np.pi * f * t[on]) + 0.05 * np.sin(4 * np.pi * f * t[on])
    for beat in np.arange(0, seconds, 60.0 / bpm):
        s = int(beat * RATE)
        n = min(400, len(x) - s)
        x[s : s + n] += np.hanning(400)[:n] * np.random.default_rng(s).normal(size=n)
    return x[None].astype(np.float32)


def test_a_song_that_follows_its_controls_scores_fully():
    progression = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # C Am F G
    audio = _song(120.0, progression, 8.0)[None]
    asked = Controls.make(bpm=120, time_signature="4/4", chords="C Am F G", key="C major")
    row = summarise(measure(audio, RATE, [Case("", asked, True)], 8.0, None, 0.5))
    assert row["tempo"] == 1.0 and row["tempo_n"] == 1
    assert row["beat_f"] >= 0.9
    assert row["chords"] == 1.0
    assert row["key"] == 1.0
    assert row["instruments"] is None and row["instruments_n"] == 0
    assert row["clap"] is None  # no judge
    wrong = Controls.make(bpm=97, chords="F# D#m")
    row = summarise(measure(audio, RATE, [Case("", wrong, True)], 8.0, None, 0.5))
    assert row["tempo"] == 0.0 and row["beat_f"] < 0.5 and row["chords"] == 0.0


def test_the_asked_grid_starts_at_the_downbeat():
    grid = asked_beats(Controls(bpm=120.0, downbeat=0.8), 3.0)
    np.testing.assert_allclose(grid, [0.3, 0.8, 1.3, 1.8, 2.3, 2.8])
    assert asked_beats(Controls(), 3.0).size == 0


def test_each_condition_asks_what_it_says():
    from musicgen.evaluation.prompts import asked
    from musicgen.evaluation.scoring import Clip

    attributes = {"genre": "folk song", "bpm": 97, "key": "D", "mode": "major",
                  "time_signature": "3/4", "instruments": ["fiddle"], "has_drums": False,
                  "chords": ["D", "G"], "downbeat": 0.4}  # fmt: skip
    prompt = "A folk song at 97 bpm with fiddle."
    clip = Clip({"attributes": attributes}, prompt, "caption", asked(prompt, attributes), None)
    (truth,) = controls_eval.cases([clip], "truth")
    assert truth.asked.downbeat == 0.4 and truth.asked.chords == ("D", "G")
    (parsed,) = controls_eval.cases([clip], "parsed")
    assert parsed.asked == Controls(bpm=97.0, instruments=("fiddle",))
    (given,) = controls_eval.cases([clip], "given")
    assert given.prompt == "A folk song." and given.asked.chords is None
    assert given.asked.downbeat == 0.0 and given.asked.key == "D"
    (chords,) = controls_eval.cases([clip], "given with chords")
    assert chords.asked.chords == ("D", "G")
    with pytest.raises(ValueError, match="unknown condition"):
        controls_eval.cases([clip], "nope")


def test_every_condition_gets_a_row_and_done_audio_is_not_generated_again():
    from musicgen.evaluation.prompts import asked
    from musicgen.evaluation.scoring import Clip, GenerateEvalConfig

    attributes = {"genre": "rock", "bpm": 120, "key": "C", "mode": "major",
                  "time_signature": "4/4", "instruments": ["drums"], "has_drums": True,
                  "chords": ["C", "Am", "F", "G"]}  # fmt: skip
    song = _song(120.0, [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]], 8.0)
    prompts = ["A rock track at 120 bpm in C major.", "Rock with drums."]
    clips = [Clip({"attributes": attributes}, p, "caption", asked(p, attributes), None)
             for p in prompts]  # fmt: skip
    real = np.stack([song, song])
    calls = []

    def generate(prompts, controls):
        calls.append(controls is None)
        return real, RATE

    rows = controls_eval.evaluate_controls(
        generate, real, RATE, clips, GenerateEvalConfig(), None, np.array([1, 0]),
        round_trip=(real, RATE), done={"parsed": (real, RATE)},
    )  # fmt: skip
    assert len(rows) == 3 + len(controls_eval.ROWS)
    assert calls == [False, False, True]  # given, given with chords, text alone
    assert rows["real clips, true controls (ceiling)"]["chords"] == 1.0
    assert rows["model, controls parsed from the prompt"]["tempo_n"] == 1  # one states a bpm
