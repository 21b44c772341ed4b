"""The manifest's chord per bar, read from a piece's notes."""

from musicgen.synth.bar_chords import bar_chords
from musicgen.synth.build import attributes_of, plan
from musicgen.synth.score import Note, Piece, Track


def _triad(root: int, third: int, start: float, beats: float) -> list[Note]:
    return [Note(48 + root + step, start, beats) for step in (0, third, 7)]


def test_each_bar_gets_the_triad_it_plays():
    notes = _triad(9, 3, 0, 4) + _triad(5, 4, 4, 4) + _triad(0, 4, 8, 2) + _triad(7, 4, 10, 2)
    notes += [Note(76, 12, 4)]  # a lone melody note over silence: its bar is still labelled
    drums = Track("drums", 0, [Note(36, b, 0.5) for b in range(16)], is_drum=True)
    piece = Piece([Track("piano", 0, notes), drums], 120.0, (4, 4), "A", "minor")
    labels = bar_chords(piece)
    assert labels[:2] == ["Am", "F"]
    assert labels[2] in ("C", "G")  # two chords in one bar: the bar's best triad
    assert len(labels) == 4


def test_a_pickup_is_the_first_bar():
    notes = [Note(67, 0, 1), *_triad(0, 4, 1, 3), *_triad(7, 4, 4, 3)]  # 3/4, one-beat pickup
    piece = Piece([Track("piano", 0, notes)], 90.0, (3, 4), "C", "major", downbeat=1.0)
    assert bar_chords(piece)[1:] == ["C", "G"]


def test_the_manifest_records_downbeat_and_chords():
    from musicgen.synth.build import _piece

    job = plan(0.02, 0)[0]
    piece = _piece(job)
    attributes = attributes_of(piece, job)
    assert attributes["downbeat"] == 0.0  # procedural pieces start on a downbeat
    bars = piece.beats / 4
    assert len(attributes["chords"]) == round(bars)
    assert all(isinstance(c, str) and c for c in attributes["chords"])
