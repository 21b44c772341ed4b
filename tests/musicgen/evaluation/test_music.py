"""Tempo and key estimation and match grading, on synthetic audio with known answers."""

import librosa
import numpy as np
import pytest

from mgcore.audio import resample
from musicgen.evaluation import music
from musicgen.synth import compose, corpus

RATE = 22050


def click_track(bpm: float, seconds: float = 8.0, rate: int = RATE) -> np.ndarray:
    """10 ms bursts of a 1 kHz tone, one a beat, `[T]`."""
    x = np.zeros(int(seconds * rate), np.float32)
    n = int(0.01 * rate)
    burst = np.sin(2 * np.pi * 1000 * np.arange(n) / rate) * np.hanning(n)
    for t in np.arange(0, seconds - 0.01, 60.0 / bpm):
        x[int(t * rate) : int(t * rate) + n] += burst
    return x


def drum_loop(bpm: float, seconds: float = 8.0, rate: int = RATE) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth (the
    off-beat ones softer), `[2, T]`."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.15 * rate)) / rate
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t)) * t) * np.exp(-20 * t)
    snare = 0.6 * rng.standard_normal(len(t)) * np.exp(-25 * t)
    hat = np.diff(0.3 * rng.standard_normal(len(t)) * np.exp(-80 * t), prepend=0.0)
    x = np.zeros(int(seconds * rate), np.float32)
    beat = 60.0 / bpm
    for b in range(int(seconds / beat)):
        for sound, at in ((kick if b % 2 == 0 else snare, 0.0), (hat, 0.0), (0.5 * hat, 0.5)):
            i = int((b + at) * beat * rate)
            n = len(x[i : i + len(sound)])
            x[i : i + n] += sound[:n]
    return np.stack([x, x])


def chords(progression: list[list[str]], seconds: float = 1.5, rate: int = RATE) -> np.ndarray:
    """Each chord (note names with octaves) as sine tones, `[T]`."""
    t = np.arange(int(seconds * rate)) / rate
    env = np.minimum(1.0, np.minimum(t, seconds - t) / 0.02)  # no clicks at the joins
    out = []
    for chord in progression:
        hz = [librosa.note_to_hz(n) for n in chord]
        out.append(sum(np.sin(2 * np.pi * f * t) for f in hz) * env / len(chord))
    return np.concatenate(out).astype(np.float32)


C_MAJOR = chords([["C3", "C4", "E4", "G4"], ["F3", "F4", "A4", "C5"], ["G3", "G4", "B4", "D5"],
                  ["C3", "C4", "E4", "G4"]])  # fmt: skip
A_MINOR = chords([["A2", "A3", "C4", "E4"], ["D3", "D4", "F4", "A4"], ["E3", "E4", "G#4", "B4"],
                  ["A2", "A3", "C4", "E4"]])  # fmt: skip


@pytest.mark.parametrize("bpm", [60, 90, 120, 200])
def test_click_tracks_from_60_to_200_bpm(bpm):
    assert abs(music.estimate_tempo(click_track(bpm), RATE) / bpm - 1) < 0.04


@pytest.mark.parametrize("bpm", [100, 150])
def test_drum_loops_at_44k_stereo(bpm):
    loop = resample(drum_loop(bpm), RATE, 44100)
    assert abs(music.estimate_tempo(loop, 44100) / bpm - 1) < 0.04


def test_silence_has_no_tempo():
    assert music.estimate_tempo(np.zeros(RATE * 2, np.float32), RATE) == 0.0


@pytest.mark.parametrize(
    ("asked", "measured", "expected"),
    [
        (100, 100, "match"), (100, 103, "match"), (100, 96.5, "match"), (100, 104.1, "miss"),
        (100, 200, "octave"), (100, 50, "octave"), (100, 300, "octave"), (90, 30.5, "octave"),
        (100, 130, "miss"), (100, 150, "miss"), (100, 66.7, "miss"), (100, 0.0, "miss"),
    ],
)  # fmt: skip
def test_tempo_match_categories(asked, measured, expected):
    assert music.tempo_match(asked, measured) == expected


@pytest.mark.parametrize("profile", sorted(music.KEY_PROFILES))
def test_key_of_chord_progressions(profile):
    assert music.estimate_key(C_MAJOR, RATE, profile) == ("C", "major")
    assert music.estimate_key(A_MINOR, RATE, profile) == ("A", "minor")
    assert music.estimate_key(np.stack([A_MINOR, A_MINOR]), RATE, profile) == ("A", "minor")


@pytest.mark.parametrize("profile", sorted(music.KEY_PROFILES))
def test_key_of_a_chroma_is_the_rotated_profile(profile):
    for tonic in range(12):
        for mode, weights in zip(music.MODES, music.KEY_PROFILES[profile], strict=True):
            chroma = np.roll(weights, tonic)
            assert music.key_from_chroma(chroma, profile) == (music.PITCH_CLASSES[tonic], mode)
            assert music.key_correlations(chroma, profile).max() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("C", "C"), ("Db", "C#"), ("C#", "C#"), ("Bb", "A#"), ("Eb", "D#"), ("Gb", "F#"),
        ("Ab", "G#"), ("G-sharp", "G#"), ("G sharp", "G#"), ("G♯", "G#"), ("E♭", "D#"),
        ("B-flat", "A#"), ("b flat", "A#"), ("Cb", "B"), ("B#", "C"), ("E#", "F"), ("Fx", "G"),
        ("Bbb", "A"), (" a ", "A"),
    ],
)  # fmt: skip
def test_normalize_tonic(name, expected):
    assert music.normalize_tonic(name) == expected


@pytest.mark.parametrize("name", ["", "H", "C minor", "Cq", "#"])
def test_normalize_tonic_refuses_non_tonics(name):
    with pytest.raises(ValueError):
        music.normalize_tonic(name)


def test_every_spelling_of_the_synthetic_dataset_normalises():
    for module in (compose, corpus):
        for mode in ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian"):
            for pc in range(12):
                name = module.key_name(pc, mode)
                assert music.normalize_tonic(name) == music.PITCH_CLASSES[pc], (name, mode)
    assert music.normalize_mode("Aeolian") == "minor"
    assert music.normalize_mode("mixolydian") == "major"
    with pytest.raises(ValueError):
        music.normalize_mode("blues")


@pytest.mark.parametrize(
    ("asked", "estimated", "expected"),
    [
        (("C", "major"), ("C", "major"), "match"), (("Db", "major"), ("C#", "major"), "match"),
        (("C", "major"), ("A", "minor"), "relative"), (("A", "minor"), ("C", "major"), "relative"),
        (("G#", "minor"), ("B", "major"), "relative"), (("C", "major"), ("G", "major"), "fifth"),
        (("C", "major"), ("F", "major"), "fifth"), (("A", "minor"), ("E", "minor"), "fifth"),
        (("C", "major"), ("C", "minor"), "parallel"), (("C", "major"), ("D", "major"), "miss"),
        (("C", "major"), ("E", "minor"), "miss"), (("A", "minor"), ("A#", "major"), "miss"),
    ],
)  # fmt: skip
def test_key_match_categories(asked, estimated, expected):
    assert music.key_match(*asked, *estimated) == expected


def test_continuation_agreement():
    assert music.tempo_agreement(click_track(120), click_track(120, 6.0), RATE) == "match"
    assert music.tempo_agreement(click_track(120), click_track(60), RATE) == "octave"
    assert music.key_agreement(C_MAJOR, C_MAJOR[::-1].copy(), RATE) == "match"
    assert music.key_agreement(C_MAJOR, A_MINOR, RATE) == "relative"
