"""The LM's control arrays: beat and bar phase, chords per bar, global ids."""

import numpy as np
import pytest

from musicgen.controls import Controls
from musicgen.controls.features import FRAME_FEATURES, frame_features, global_arrays


def test_beat_and_bar_phase_from_the_downbeat():
    c = Controls.make(bpm=120, time_signature="3/4")
    f = frame_features(c, 0.0, 200, 50.0)  # 0.5 s a beat = 25 frames, a bar = 75
    assert f.shape == (200, FRAME_FEATURES)
    np.testing.assert_allclose(f[[0, 25, 50, 75], 1], 1.0, atol=1e-6)  # every beat
    np.testing.assert_allclose(f[[0, 75, 150], 3], 1.0, atol=1e-6)  # every bar
    np.testing.assert_allclose(f[25, 2:4], [np.sin(2 * np.pi / 3), np.cos(2 * np.pi / 3)],
                               atol=1e-6)  # fmt: skip
    shifted = frame_features(
        Controls(bpm=120.0, time_signature=(3, 4), downbeat=0.2), 0.0, 60, 50.0
    )
    np.testing.assert_allclose(shifted[10, 1:4:2], 1.0, atol=1e-6)  # the downbeat at frame 10
    later = frame_features(c, 1.0, 10, 50.0)  # a window starting at 1 s continues the grid
    np.testing.assert_allclose(later, f[50:60], atol=1e-5)


def test_what_is_not_asked_is_zero():
    f = frame_features(Controls.make(bpm=100), 0.0, 30, 50.0)
    assert np.abs(f[:, 2:]).max() == 0.0  # no metre: no bar grid imposed, no chords
    assert np.abs(frame_features(Controls(), 0.0, 30, 50.0)).max() == 0.0
    dropped = frame_features(Controls.make(bpm=100, chords="C"), 0.0, 30, 50.0, beat=False)
    assert np.abs(dropped[:, :4]).max() == 0.0 and dropped[:, 4:].sum() == 30 * 3


@pytest.mark.parametrize("downbeat", [0.0, 0.5])
def test_chords_change_at_bar_lines(downbeat):
    """One chord per bar from the bar that holds time 0 (a pickup's bar first)."""
    c = Controls(bpm=60.0, time_signature=(2, 4), chords=("C", "F", "G"), downbeat=downbeat)
    f = frame_features(c, 0.0, 700, 100.0)  # 2 s a bar
    names = {(1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0): "C", (1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0): "F",
             (0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1): "G"}  # fmt: skip
    label = lambda i: names[tuple(int(x) for x in f[i, 4:])]  # noqa: E731
    first_bar_end = round(100 * (downbeat if downbeat else 2.0))
    assert label(0) == "C" and label(first_bar_end - 1) == "C"
    assert label(first_bar_end) == "F" and label(first_bar_end + 200) == "G"
    assert label(first_bar_end + 400) == "C"  # the progression repeats


def test_global_ids():
    arrays = global_arrays([Controls.make(key="F#m", instruments="piano,drums", bpm=90,
                                          time_signature="6/8"), Controls()])  # fmt: skip
    assert arrays["tonic"].tolist() == [6, -1] and arrays["mode"].tolist() == [1, -1]
    assert arrays["bpm"].tolist() == [90.0, 0.0]
    assert arrays["meter"].tolist() == [[6, 8], [0, 0]]
    assert arrays["instruments"][0, :3].tolist()[2] == -1
    assert arrays["instruments"][1].max() == -1
