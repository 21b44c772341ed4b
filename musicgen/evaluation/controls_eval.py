"""Does the music follow its controls? The controls section of `musicgen eval generate`.

For an LM trained with controls, the held-out clips of `scoring.pick_clips` are generated
under four conditions and scored against what each asked, beside the real clips:

- **real clips, true controls (ceiling)**: each clip against its own manifest controls;
- **shuffled controls (floor)**: each real clip against another clip's controls;
- **codec round trip, true controls**: the real clips through the LM's codec, the best an
  LM over its codes can show;
- **controls parsed from the prompt**: the caption, with what `parse_prompt` reads of it
  (what `MusicGen.generate` does with a prompt), scored on what the caption states;
- **controls given, prompt names none**: a genre-only prompt ("A folk tune.") with the
  clip's true tempo, metre, key and instruments given explicitly (`--bpm` and the rest);
- **controls and chords given**: the same with the clip's chords, one per bar;
- **text alone (controls dropped)**: the caption without controls (the path that reads
  the words), scored on what the caption states.

Metrics: tempo within 4 % of the asked bpm (drum-bearing clips; octave errors apart,
`music.tempo_match`), the beat F-measure (mir_eval, 70 ms window) of the beats librosa's
tracker finds against the asked grid (the bpm's beats from the downbeat; drum-bearing
clips), key and mode (major and minor keys; `music.key_match`), the chord of each bar
(constant-Q chroma over the bar against the 24 major and minor triads) against the asked
one with mir_eval's major/minor comparison, every asked instrument heard by the judge, and
the judge's CLAP score of the audio against its prompt.
Generated clips start on a downbeat, so their asked grid starts at 0.
"""

from __future__ import annotations

import dataclasses

import librosa
import mir_eval
import numpy as np

from musicgen.controls import Controls
from musicgen.controls.chords import chord_name, harte
from musicgen.controls.estimate import estimate_beats
from musicgen.controls.parse import parse_prompt
from musicgen.evaluation import music
from musicgen.synth.caption_words import GENRE_NOUNS

BEAT_WINDOW = 0.07  # mir_eval's default F-measure window, seconds
SKIP_SECONDS = 1.0  # beats before this are not scored (trackers settle in the first beats)
_TRIADS = {"": (0, 4, 7), "m": (0, 3, 7)}


@dataclasses.dataclass(frozen=True)
class Case:
    """One generation (or real clip) and what it was asked to follow."""

    prompt: str
    asked: Controls
    has_drums: bool


def asked_beats(controls: Controls, seconds: float) -> np.ndarray:
    """The asked beat grid in seconds (empty without a tempo)."""
    if controls.bpm is None:
        return np.zeros((0,))
    period = 60.0 / controls.bpm
    first = controls.downbeat % period
    return np.arange(first, seconds, period)


def bar_chords(audio: np.ndarray, rate: int, controls: Controls, seconds: float) -> list:
    """(bar index, estimated chord) of each whole bar of the asked grid in the audio."""
    if controls.bpm is None:
        return []
    bar = controls.bar_seconds
    y = music.mono(audio, rate)
    chroma_12xF = librosa.feature.chroma_cqt(
        y=y, sr=music.ANALYSIS_RATE, hop_length=music.CHROMA_HOP, norm=None
    )
    hop = music.CHROMA_HOP / music.ANALYSIS_RATE
    first = int(np.floor(-controls.downbeat / bar + 1e-9))  # the bar that holds time 0
    out = []
    start = controls.downbeat + first * bar
    index = 0
    while start + bar <= seconds + 1e-6:
        if start >= 0:
            lo, hi = round(start / hop), round((start + bar) / hop)
            mean = chroma_12xF[:, lo:hi].mean(1)
            out.append((index, _triad(mean)))
        start += bar
        index += 1
    return out


def _triad(chroma_12: np.ndarray) -> str:
    if not chroma_12.sum() > 0:
        return "N"
    scores = {
        chord_name(root, q): sum(chroma_12[(root + t) % 12] for t in tones)
        for root in range(12)
        for q, tones in _TRIADS.items()
    }
    return max(scores, key=scores.get)


def measure(audio, rate: int, cases: list[Case], seconds: float, judge, threshold: float) -> dict:
    """Per-control lists of per-clip results (None where the case asks nothing of it)."""
    out = {"tempo": [], "beat_f": [], "key": [], "chords": [], "instruments": [], "clap": []}
    probs = None
    if judge is not None:
        embed, probs = judge.analyze(list(audio), rate)
        vocab = {name: i for i, name in enumerate(judge.instruments)}
        text = judge.text_embeddings([c.prompt for c in cases])
        out["clap"] = [float(x) for x in np.sum(embed * text, axis=-1)]
    for i, (wav, case) in enumerate(zip(audio, cases, strict=True)):
        a = case.asked
        drums = case.has_drums and a.bpm is not None
        if drums:
            bpm, beats = estimate_beats(wav, rate)
            out["tempo"].append(music.tempo_match(a.bpm, bpm))
            ref = asked_beats(a, seconds)
            out["beat_f"].append(
                mir_eval.beat.f_measure(
                    ref[ref >= SKIP_SECONDS], beats[beats >= SKIP_SECONDS], BEAT_WINDOW
                )
            )
        else:
            out["tempo"].append(None)
            out["beat_f"].append(None)
        if a.key is not None and a.mode in ("major", "minor"):
            out["key"].append(music.key_match(a.key, a.mode, *music.estimate_key(wav, rate)))
        else:
            out["key"].append(None)
        if a.chords:
            pairs = [(a.chord_at_bar(b), est) for b, est in bar_chords(wav, rate, a, seconds)]
            scores = mir_eval.chord.majmin([harte(r) for r, _ in pairs],
                                           [harte(e) for _, e in pairs])  # fmt: skip
            scores = np.asarray(scores)[np.asarray(scores) >= 0] if pairs else np.zeros(0)
            out["chords"].append(float(scores.mean()) if scores.size else None)
        else:
            out["chords"].append(None)
        asked_names = [n for n in a.instruments or () if probs is not None and n in vocab]
        if asked_names:
            out["instruments"].append(all(probs[i, vocab[n]] > threshold for n in asked_names))
        else:
            out["instruments"].append(None)
    return out


def summarise(measured: dict) -> dict:
    """A report row: shares and means with their counts."""
    row = {}
    grades = {"tempo": "match", "key": "match"}
    for name, values in measured.items():
        kept = [v for v in values if v is not None]
        row[f"{name}_n"] = len(kept)
        if not kept:
            row[name] = None
        elif name in grades:
            row[name] = float(np.mean([v == grades[name] for v in kept]))
        else:
            row[name] = float(np.mean(kept))
    return row


def genre_prompt(attributes: dict) -> str:
    """A prompt that names the genre and nothing else: "A folk tune."."""
    genre = str(attributes.get("genre", "piece"))
    noun = GENRE_NOUNS.get(genre.lower(), (genre,))[0]
    article = "An" if noun[:1].lower() in "aeiou" else "A"
    return f"{article} {noun}."


def cases(clips, condition: str) -> list[Case]:
    """What each clip's generation is asked under `condition` (module docstring)."""
    out = []
    for clip in clips:
        attributes = clip.entry.get("attributes") or {}
        truth = Controls.from_attributes(attributes)
        drums = bool(attributes.get("has_drums", False))
        if condition == "truth":
            out.append(Case(clip.prompt, truth, drums))
        elif condition in ("parsed", "text alone"):
            out.append(Case(clip.prompt, parse_prompt(clip.prompt), drums))
        elif condition in ("given", "given with chords"):
            given = dataclasses.replace(truth, downbeat=0.0)
            if condition == "given":
                given = given.without("chords")
            out.append(Case(genre_prompt(attributes), given, drums))
        else:
            raise ValueError(f"unknown condition {condition!r}")
    return out


ROWS = {  # report row -> (condition, generation's controls: the asked ones or none)
    "controls parsed from the prompt": ("parsed", True),
    "controls given, prompt names none": ("given", True),
    "controls and chords given": ("given with chords", True),
    "text alone (controls dropped)": ("text alone", False),
}


def evaluate_controls(
    generate, real, real_rate: int, clips, config, judge, perm, round_trip=None, done=None
) -> dict:
    """The controls rows of the report.

    Args:
      generate: `(prompts, controls or None) -> (audio [B, C, T], rate)`.
      real: the real clips' audio at `real_rate`, `config.seconds` long.
      clips: `scoring.Clip`s; config: `GenerateEvalConfig`; judge: the judge or None.
      perm: the shuffled floor's permutation.
      round_trip: (audio, rate) of the real clips through the LM's codec, or None: what
        any LM over those codes can at best show.
      done: {condition: (audio, rate)} already generated the same way (the report's
        "model" row is the "parsed" condition), not generated again.
    """
    secs, threshold = config.seconds, config.judge_threshold
    truth = cases(clips, "truth")
    rows = {
        "real clips, true controls (ceiling)": measure(
            real, real_rate, truth, secs, judge, threshold
        ),
        "shuffled controls (floor)": measure(real[perm], real_rate, truth, secs, judge, threshold),
    }
    if round_trip is not None:
        audio, rate = round_trip
        rows["codec round trip, true controls"] = measure(
            audio, rate, truth, secs, judge, threshold
        )
    for name, (condition, with_controls) in ROWS.items():
        asked = cases(clips, condition)
        if condition in (done or {}):
            audio, rate = done[condition]
        else:
            prompts = [c.prompt for c in asked]
            audio, rate = generate(prompts, [c.asked for c in asked] if with_controls else None)
        rows[f"model, {name}"] = measure(audio, rate, asked, secs, judge, threshold)
    return {name: summarise(m) for name, m in rows.items()}
