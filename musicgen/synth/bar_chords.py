"""The chord of each bar of a piece, read from its notes, for the manifest's `chords`.

One labeller serves both sources: procedural pieces (whose progressions are written in
roman numerals against a mode) and arranged corpus works (which carry no chord symbols).
Each bar's pitched notes are weighed by how long they sound inside the bar (the lowest
sounding note counts double: it is usually the root), and the bar gets the triad of
`musicgen.controls.chords` (major, minor, diminished, augmented) whose tones cover most of
that weight, the root's own weight breaking ties. A bar with no pitched note is "N". These
are the chords the music plays, so a chord estimator on the audio can be scored against
them, and the LM conditioned on them.
"""

from __future__ import annotations

import numpy as np

from musicgen.controls.chords import chord_name
from musicgen.synth.score import Piece

_TRIADS = {"": (0, 4, 7), "m": (0, 3, 7), "dim": (0, 3, 6), "aug": (0, 4, 8)}
_BASS_WEIGHT = 2.0


def bar_length_beats(time_signature: tuple[int, int]) -> float:
    """Quarter-note beats in one bar of `time_signature` (6/8: 3.0)."""
    num, den = time_signature
    return num * 4.0 / den


def bar_chords(piece: Piece) -> list[str]:
    """One chord name per bar, from the bar that holds beat 0 to the last sounding bar.

    Bars start at `piece.downbeat` (beats) and every bar length after it; with a pickup
    (downbeat > 0) the first listed bar is the one before the first downbeat.
    """
    bar = bar_length_beats(piece.time_signature)
    notes = [n for t in piece.tracks if not t.is_drum for n in t.notes if n.duration > 0]
    if not notes:
        return []
    first = np.floor((0.0 - piece.downbeat) / bar + 1e-9)
    count = int(np.ceil((piece.beats - piece.downbeat) / bar - 1e-9) - first)
    weights = np.zeros((max(count, 0), 12))
    bass = np.full((max(count, 0),), 10**3)
    bass_pc = np.zeros((max(count, 0),), int)
    for n in notes:
        start, end = n.start, n.start + n.duration
        b0 = int(np.floor((start - piece.downbeat) / bar + 1e-9) - first)
        b1 = int(np.ceil((end - piece.downbeat) / bar - 1e-9) - first)
        for b in range(max(b0, 0), min(b1, count)):
            lo = piece.downbeat + (b + first) * bar
            overlap = min(end, lo + bar) - max(start, lo)
            if overlap <= 1e-9:
                continue
            weights[b, n.pitch % 12] += overlap
            if n.pitch < bass[b]:
                bass[b], bass_pc[b] = n.pitch, n.pitch % 12
    sounding = bass < 10**3
    weights[np.flatnonzero(sounding), bass_pc[sounding]] *= _BASS_WEIGHT
    return [_label(w) for w in weights]


def _label(weights_12: np.ndarray) -> str:
    total = weights_12.sum()
    if total <= 1e-9:
        return "N"
    best, best_score = "N", -1.0
    for root in range(12):
        for quality, tones in _TRIADS.items():
            covered = sum(weights_12[(root + t) % 12] for t in tones)
            score = covered / total + 1e-3 * weights_12[root] / total
            if score > best_score + 1e-12:
                best, best_score = chord_name(root, quality), score
    return best
