"""Asked against heard, for one generation: what the demo page and the app show.

`check_controls` measures in a generated clip what its controls asked for, with the
harness's own estimators (`musicgen.evaluation.music` for tempo and key, the judge for
instruments), and grades each as `musicgen eval generate` does: a tempo within 4 % of the
asked one, the asked key and mode, each asked instrument heard with probability over 0.5.
A control that was not asked, or cannot be measured here (a church mode, instruments
without a judge), has no grade.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from musicgen.controls.types import Controls
from musicgen.evaluation import music
from musicgen.evaluation.scoring import GenerateEvalConfig

HEARD = GenerateEvalConfig.judge_threshold  # an instrument counts as heard above this


@dataclasses.dataclass(frozen=True)
class Check:
    """One control of one clip: what was asked, what was measured, and the grade.

    Attributes:
      control: "tempo", "key" or an instrument's name.
      asked: as people write it ("126 bpm", "E minor", "asked").
      heard: what was measured ("124.9 bpm", "G major", "p = 0.81"), "" if not measured.
      ok: True / False, or None where there is no grade.
      grade: the harness's grade ("match", "octave", "relative", ...), "" if none.
    """

    control: str
    asked: str
    heard: str
    ok: bool | None
    grade: str = ""

    @property
    def mark(self) -> str:
        """A tick, a cross, or a dash where there is no grade."""
        return "–" if self.ok is None else "✓" if self.ok else "✗"


def measured(audio: np.ndarray, rate: int) -> tuple[float, str, str]:
    """(tempo in bpm, key, mode) the harness estimates in `[C, T]` or `[T]` audio."""
    return music.estimate_tempo(audio, rate), *music.estimate_key(audio, rate)


def check_controls(
    audio: np.ndarray, rate: int, controls: Controls, judge=None, estimates=None
) -> list[Check]:
    """The checks of one clip's asked controls (module docstring), in the order tempo,
    key, then the instruments as asked; `estimates` is `measured(audio, rate)` where the
    caller has it already."""
    checks = []
    if controls.bpm is not None or controls.key is not None:
        bpm, key, mode = estimates or measured(audio, rate)
    if controls.bpm is not None:
        grade = music.tempo_match(controls.bpm, bpm)
        checks.append(Check("tempo", f"{controls.bpm:g} bpm", f"{bpm:.1f} bpm",
                            grade == "match", grade))  # fmt: skip
    if controls.key is not None:
        asked = f"{controls.key} {controls.mode}"
        if controls.mode in ("major", "minor"):
            grade = music.key_match(controls.key, controls.mode, key, mode)
            checks.append(Check("key", asked, f"{key} {mode}", grade == "match", grade))
        else:  # the key profiles know major and minor only
            checks.append(Check("key", asked, f"{key} {mode}", None))
    if controls.instruments:
        probs = None
        if judge is not None:
            heard = judge.instrument_probs([audio], rate)[0]
            probs = dict(zip(judge.instruments, heard, strict=True))
        for name in controls.instruments:
            if probs is None or name not in probs:
                checks.append(Check(name, "asked", "", None))
            else:
                p = float(probs[name])
                checks.append(Check(name, "asked", f"p = {p:.2f}", p > HEARD))
    return checks
