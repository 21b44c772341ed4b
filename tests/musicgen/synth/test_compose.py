"""Procedural composition: valid notes, exact lengths, the two seeds' roles, clear grooves,
and a tempo that librosa hears as the piece's `bpm`."""

import shutil
import time

import numpy as np
import pytest

from musicgen.synth.compose import DYNAMICS, compose
from musicgen.synth.harmony import DARK_MODES, MODES
from musicgen.synth.score import DRUM_KEYS
from musicgen.synth.styles import DRUM_STYLES, STYLES

ATTRIBUTE_KEYS = {
    "genre", "mood", "dynamics", "ensemble", "source", "source_work", "composer", "composition_id",
}  # fmt: skip
NOTE_NAMES = {
    "C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
    "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
}  # fmt: skip
BACKBEAT_DRUMS = {DRUM_KEYS[d] for d in ("snare", "clap", "side_stick", "pedal_hat")}


def _bar_beats(piece) -> float:
    num, den = piece.time_signature
    return num * 4 / den


def _line(track, before: float) -> list[tuple[float, int]]:
    """(onset, interval from the previous note) of a monophonic track's notes before a time."""
    notes = sorted((n.start, n.pitch) for n in track.notes if n.start < before - 1e-9)
    return [(round(s, 6), p - q) for (s, p), (_, q) in zip(notes[1:], notes[:-1], strict=True)]


def test_at_least_eight_styles_with_the_promised_metres():
    assert len(STYLES) >= 8
    assert STYLES["waltz"].time_signature == (3, 4)
    assert STYLES["march"].time_signature in ((2, 4), (4, 4))
    assert {"rock", "house", "hip-hop", "jazz swing", "bossa nova", "ambient"} <= set(STYLES)
    for style in STYLES.values():
        lo, hi = style.bpm
        assert 60 <= lo <= hi <= 170, style.name
        assert set(style.modes) <= set(MODES), style.name
        for lineup in style.lineups:
            roles = [p.role for p in lineup.parts]
            assert "melody" in roles and "bass" in roles, (style.name, lineup)
            assert {"chords", "pad", "arp"} & set(roles), (style.name, lineup)
            assert all(0 <= p.program < 128 for p in lineup.parts)
        grids = [style.bass, style.comp]
        if style.drums is not None:
            kit = style.drums
            grids += [[g for _, g in kit.main], [g for _, g in kit.alt], [g for _, g in kit.fill]]
        for g in (g.replace(" ", "") for group in grids for g in group):
            assert len(g) % style.steps_per_bar == 0, (style.name, g)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_notes_are_valid_and_the_length_is_whole_bars(style):
    for comp_seed, arr_seed, seconds in ((0, 0, 10.0), (11, 5, 23.7), (2**40, 3, 30.0)):
        piece = compose(style, comp_seed, arr_seed, seconds)
        bar_seconds = _bar_beats(piece) * 60.0 / piece.bpm
        assert seconds <= piece.seconds < seconds + bar_seconds + 1e-6
        assert piece.beats / _bar_beats(piece) == pytest.approx(
            round(piece.beats / _bar_beats(piece))
        )
        assert (
            piece.bpm == int(piece.bpm)
            and STYLES[style].bpm[0] <= piece.bpm <= STYLES[style].bpm[1]
        )
        assert sum(not t.is_drum for t in piece.tracks) <= 15
        notes = [n for t in piece.tracks for n in t.notes]
        assert len(notes) > 20 * seconds / 10
        assert all(0 <= n.pitch <= 127 for n in notes)
        assert all(n.duration > 0 and n.start >= 0 for n in notes)
        assert all(n.start + n.duration <= piece.beats + 1e-9 for n in notes)
        assert all(1 <= n.velocity <= 127 and isinstance(n.velocity, int) for n in notes)
        assert all(0 <= t.pan <= 127 and 0 <= t.volume <= 127 for t in piece.tracks)
        assert piece.has_drums == (STYLES[style].drums is not None)
        for t in piece.tracks:
            if t.is_drum:
                assert {n.pitch for n in t.notes} <= set(DRUM_KEYS.values())


@pytest.mark.parametrize("style", sorted(STYLES))
def test_attributes(style):
    piece = compose(style, 1234, 99, 15.0)
    a = piece.attributes
    assert set(a) == ATTRIBUTE_KEYS
    assert a["genre"] == STYLES[style].genre
    assert a["mood"] in STYLES[style].moods_major + STYLES[style].moods_minor
    assert a["dynamics"] in DYNAMICS and a["dynamics"] in STYLES[style].dynamics
    assert a["ensemble"] is None or isinstance(a["ensemble"], str)
    assert a["source"] == "procedural" and a["composer"] is None
    assert a["source_work"] == f"procedural {style} composition 1234"
    assert a["composition_id"] == f"procedural/{style}/1234"
    assert piece.key in NOTE_NAMES and piece.mode in STYLES[style].modes
    moods = STYLES[style].moods_minor if piece.mode in DARK_MODES else STYLES[style].moods_major
    assert a["mood"] in moods
    assert all(isinstance(name, str) and name for name in piece.instrument_names())


def test_deterministic():
    for style in STYLES:
        assert compose(style, 5, 6, 20.0) == compose(style, 5, 6, 20.0)


def _melody(piece):
    return piece.tracks[0]  # tracks come melody first


def _bass(piece):
    return [t for t in piece.tracks if not t.is_drum][-1]  # ... and bass last before drums


@pytest.mark.parametrize("style", sorted(STYLES))
def test_composition_seed_fixes_the_music_and_arrangement_seed_the_performance(style):
    pieces = [compose(style, 77, arr, 25.0) for arr in range(6)] + [compose(style, 77, 0, 20.0)]
    assert len({(p.mode, p.attributes["mood"], p.time_signature) for p in pieces}) == 1
    # Tempo, key or instrumentation differ between arrangements.
    assert len({(p.bpm, p.key, tuple(p.instrument_names())) for p in pieces}) >= 4
    bar = _bar_beats(pieces[0])
    for p in pieces[1:]:
        # Same intervals at the same onsets, up to the shorter piece's final (cadence) bar.
        shared = (min(pieces[0].beats, p.beats) // bar - 1) * bar
        for track in (_melody, _bass):
            a, b = _line(track(pieces[0]), shared), _line(track(p), shared)
            assert len(a) >= 3 and a == b, (style, track.__name__)
    other = compose(style, 78, 0, 25.0)
    shared = (min(other.beats, pieces[0].beats) // bar - 1) * bar
    assert _line(_melody(other), shared) != _line(_melody(pieces[0]), shared)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_melody_is_in_the_stated_key_and_mode(style):
    st = STYLES[style]
    for arr in range(4):
        piece = compose(style, 31 + arr, arr, 20.0)
        tonic = NOTE_NAMES[piece.key]
        scale = set(MODES[piece.mode])
        degrees = [(n.pitch - tonic) % 12 for n in piece.tracks[0].notes]
        assert degrees, "the melody should play in 20 s"
        in_scale = np.mean([d in scale for d in degrees])
        # Blues dominant sevenths and the harmonic-minor V borrow a note or two.
        assert in_scale >= (0.8 if st.dominant or st.major_v else 1.0), (style, piece.key)


@pytest.mark.parametrize("style", DRUM_STYLES)
def test_kick_on_the_downbeat_and_the_backbeats(style):
    st = STYLES[style]
    for arr in range(3):
        piece = compose(style, 100 + arr, arr, 30.0)
        bar = _bar_beats(piece)
        n_bars = round(piece.beats / bar)
        drums = next(t for t in piece.tracks if t.is_drum)
        hits = {(round(n.start, 3), n.pitch) for n in drums.notes}
        kicks = [(round(b * bar, 3), DRUM_KEYS["kick"]) in hits for b in range(n_bars)]
        assert np.mean(kicks) >= 0.95, style
        for beat in st.backbeats:
            back = [
                any((round(b * bar + beat, 3), k) in hits for k in BACKBEAT_DRUMS)
                for b in range(n_bars)
            ]
            assert np.mean(back) >= 0.65, (style, beat)  # fills take the place of some


def test_compose_is_fast():
    compose("rock", 0, 0, 30.0)
    for style in STYLES:
        t0 = time.perf_counter()
        compose(style, 3, 4, 30.0)
        assert time.perf_counter() - t0 < 0.1, style


def _tempo_class(bpm: float, estimate: float) -> str:
    if abs(estimate / bpm - 1) <= 0.04:
        return "agrees"
    if any(abs(estimate / (bpm * f) - 1) <= 0.04 for f in (0.5, 2.0, 1.5, 2 / 3)):
        return "octave"
    return "wrong"


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs the fluidsynth CLI")
def test_librosa_hears_the_stated_tempo():
    librosa = pytest.importorskip("librosa")
    from musicgen.synth.render import SAMPLE_RATE, find_soundfont, render_piece

    soundfont = find_soundfont()
    classes = {}
    for i, style in enumerate(DRUM_STYLES):
        piece = compose(style, 500 + i, 900 + i, 12.0)
        mono = render_piece(piece, soundfont).mean(axis=0)
        estimate = float(librosa.feature.tempo(y=mono, sr=SAMPLE_RATE)[0])
        classes[style] = (piece.bpm, round(estimate, 1), _tempo_class(piece.bpm, estimate))
    counts = {c: sum(v[2] == c for v in classes.values()) for c in ("agrees", "octave", "wrong")}
    assert counts["octave"] <= 0.2 * len(classes), classes
    assert counts["agrees"] / (counts["agrees"] + counts["wrong"]) >= 0.8, classes
