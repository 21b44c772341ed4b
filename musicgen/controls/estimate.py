"""Controls estimated from audio: tempo and beat phase (librosa), key and mode.

What `generate_continuation` continues the grid from, and what `musicgen data prepare
--annotate` writes for a user's own audio. The estimators are the evaluation harness's
(`musicgen.evaluation.music`): the tempo is librosa's, with its prior; the beats are
librosa's beat tracker at that tempo; the key is the chroma correlated with key profiles.
The first beat stands for the downbeat (a beat tracker does not find bars), so the bar
grid and chords of a continuation may sit a beat or two off the clip's bars.
"""

from __future__ import annotations

import librosa
import numpy as np

from musicgen.controls.types import Controls
from musicgen.controls.vocab import BPM_RANGE
from musicgen.evaluation import music

MIN_SECONDS = 2.0  # shorter audio gives no tempo worth keeping


def estimate_beats(audio: np.ndarray, sample_rate: int) -> tuple[float, np.ndarray]:
    """(tempo in bpm, beat times in seconds) of `[C, T]` or `[T]` audio; (0, []) for silence."""
    y = music.mono(audio, sample_rate)
    rate, hop = music.ANALYSIS_RATE, music.TEMPO_HOP
    onsets = librosa.onset.onset_strength(y=y, sr=rate, hop_length=hop)
    if not onsets.any():
        return 0.0, np.zeros((0,))
    bpm = music.estimate_tempo(audio, sample_rate)
    _, beats = librosa.beat.beat_track(
        onset_envelope=onsets, sr=rate, hop_length=hop, bpm=bpm, units="time"
    )
    return bpm, np.asarray(beats, np.float64)


def estimate_controls(audio: np.ndarray, sample_rate: int, *, key: bool = True) -> Controls:
    """Tempo, beat phase (as `downbeat`, the first beat) and key and mode of a clip; what
    cannot be estimated (silence, under `MIN_SECONDS`, a tempo out of range) is left out."""
    x = np.asarray(audio, np.float32)
    if x.shape[-1] < MIN_SECONDS * sample_rate or not np.abs(x).max() > 0:
        return Controls()
    bpm, beats = estimate_beats(x, sample_rate)
    fields = {}
    if BPM_RANGE[0] <= bpm <= BPM_RANGE[1] and len(beats):
        period = 60.0 / bpm
        fields.update(bpm=round(bpm, 1), downbeat=float(beats[0] % period))
    if key:
        tonic, mode = music.estimate_key(x, sample_rate)
        fields.update(key=tonic, mode=mode)
    return Controls(**fields)
