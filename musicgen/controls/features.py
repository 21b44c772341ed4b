"""Controls as the LM's conditioning arrays, computed on the host.

Global controls become ids and numbers per row (`global_arrays`); the model embeds them as
extra cross-attention tokens (`musicgen.lm.controls`). Time-aligned controls become
`FRAME_FEATURES` numbers per codec frame (`frame_features`), added at the LM's input:

- the beat grid: sin and cos of 2π x the frame's phase within the beat (a quarter note
  at `bpm`, counted from the downbeat); zero without a tempo;
- the bar grid: the same for the phase within the bar (`time_signature` quarter notes);
  zero without a tempo or a metre, so an unasked metre is not imposed as 4/4;
- the chord: its chroma (12 zeros and ones, C first) in each bar, bars counted from the
  one that holds time 0, the progression repeating; zero without chords. Chords without
  a tempo are timed at `DEFAULT_BPM` in 4/4.

A grid that is not asked is all zero, which no asked phase is (its sin and cos are on the
unit circle), so the model tells "not asked" from every phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicgen.controls.chords import chord_chroma
from musicgen.controls.pitch import PITCH_NAMES
from musicgen.controls.types import Controls
from musicgen.controls.vocab import INSTRUMENT_IDS, MAX_INSTRUMENTS, MODES

FRAME_FEATURES = 16  # beat sin/cos, bar sin/cos, 12 chroma
DEFAULT_BPM = 120.0
# What each array holds where nothing is asked (CFG's unconditional rows, padding rows).
NOT_ASKED = {"tonic": -1, "mode": -1, "bpm": 0, "meter": 0, "instruments": -1, "frames": 0}


def global_arrays(controls: Sequence[Controls]) -> dict[str, np.ndarray]:
    """Per row: `tonic` and `mode` int32 `[B]` (-1: none), `bpm` float32 `[B]` (0: none),
    `meter` int32 `[B, 2]` (numerator, denominator; 0: none), `instruments` int32
    `[B, MAX_INSTRUMENTS]` (vocabulary ids, -1 past the asked ones)."""
    b = len(controls)
    out = {
        "tonic": np.full((b,), -1, np.int32),
        "mode": np.full((b,), -1, np.int32),
        "bpm": np.zeros((b,), np.float32),
        "meter": np.zeros((b, 2), np.int32),
        "instruments": np.full((b, MAX_INSTRUMENTS), -1, np.int32),
    }
    for i, c in enumerate(controls):
        if c.key is not None:
            out["tonic"][i] = PITCH_NAMES.index(c.key)
            out["mode"][i] = MODES.index(c.mode)
        if c.bpm is not None:
            out["bpm"][i] = c.bpm
        if c.time_signature is not None:
            out["meter"][i] = c.time_signature
        for j, name in enumerate(c.instruments or ()):
            out["instruments"][i, j] = INSTRUMENT_IDS[name]
    return out


def frame_features(
    controls: Controls,
    start_seconds: float,
    frames: int,
    frame_rate: float,
    *,
    beat: bool | None = None,
    bar: bool | None = None,
    chords: bool | None = None,
) -> np.ndarray:
    """`[frames, FRAME_FEATURES]` float32 for frames at `start_seconds + i / frame_rate`.

    `beat`, `bar` and `chords` (default: whether the controls give what each needs) switch
    each part off, so training can drop one while timing the others with the true tempo.
    """
    c = controls
    beat = c.bpm is not None if beat is None else beat and c.bpm is not None
    bar = (c.bpm is not None and c.time_signature is not None) if bar is None else bar
    chords = bool(c.chords) if chords is None else chords and bool(c.chords)
    out = np.zeros((frames, FRAME_FEATURES), np.float32)
    t = start_seconds + np.arange(frames, dtype=np.float64) / frame_rate - c.downbeat
    bpm = c.bpm if c.bpm is not None else DEFAULT_BPM
    num, den = c.time_signature or (4, 4)
    beats = t * bpm / 60.0
    bar_beats = num * 4.0 / den
    if beat:
        angle = 2 * np.pi * beats
        out[:, 0], out[:, 1] = np.sin(angle), np.cos(angle)
    if bar and c.bpm is not None:
        angle = 2 * np.pi * beats / bar_beats
        out[:, 2], out[:, 3] = np.sin(angle), np.cos(angle)
    if chords:
        table = np.asarray([chord_chroma(name) for name in c.chords], np.float32)
        first = np.floor(-c.downbeat * bpm / 60.0 / bar_beats + 1e-9)
        index = (np.floor(beats / bar_beats + 1e-9) - first).astype(np.int64) % len(table)
        out[:, 4:] = table[index]
    return out
