"""What a composed piece's two seeds decide (`compose.py`).

`Composition` holds what `composition_seed` decides, everything written relative to the
tonic: mode, mood, form, chord progression per section, and each section's material
(voicings, melody, bass line and comping rhythm), built on demand. `Arrangement` holds
what `arrangement_seed` decides, how it is played: tempo, key, instruments, dynamics, mix
and drum fills.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from musicgen.synth.harmony import DARK_MODES, MODES, parse_progression, voice
from musicgen.synth.lines import Material, bass_line, melody_line
from musicgen.synth.style_types import ACCENT, Part, Style, parse_grid

# Per role: range of CC7 volume, and of distance from centre pan (side chosen per piece).
_MIX = {
    "melody": ((98, 115), (0, 14)), "chords": ((78, 96), (18, 40)), "pad": ((62, 84), (14, 34)),
    "arp": ((66, 86), (20, 44)), "bass": ((96, 110), (0, 0)),
}  # fmt: skip
FILL_POLICIES = ("section ends", "every 4 bars", "before chorus")


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _seed(value: int) -> int:
    return int(value) % (1 << 63)  # default_rng wants non-negative entropy


class Composition:
    """Everything `composition_seed` decides; section material is built on demand."""

    def __init__(self, style: Style, seed: int):
        self.style, self.seed = style, _seed(seed)
        rng = np.random.default_rng([self.seed, _crc(style.name), 0])
        self.mode = style.modes[rng.integers(len(style.modes))]
        self.scale = MODES[self.mode]
        dark = self.mode in DARK_MODES
        moods = style.moods_minor if dark else style.moods_major
        self.mood = moods[rng.integers(len(moods))]
        self.form = style.forms[rng.integers(len(style.forms))]
        parsed = [parse_progression(p, self.scale, style, dark) for p in style.progressions]
        pool = [p for p in parsed if not any(c.diminished for bar in p for c in bar)] or parsed
        order = rng.permutation(len(pool))
        self.progression = {
            k: pool[order[i % len(pool)]] for i, k in enumerate(("verse", "chorus", "bridge"))
        }
        self.bass = {k: style.bass[rng.integers(len(style.bass))] for k in ("verse", "chorus")}
        self.comp = {k: style.comp[rng.integers(len(style.comp))] for k in ("verse", "chorus")}
        self.arp_shape = int(rng.integers(3))
        self._cache: dict[tuple[str, int, int], Material] = {}

    def plan(self, n_bars: int) -> list[tuple[str, int, int, int]]:
        """(kind, bars, variant, first bar) of each section until `n_bars` are covered.

        After the form's last section it repeats from the section after the intro; a
        section's second, fourth, ... occurrence is variant 1 (a different ending).
        """
        out, bar, i, seen = [], 0, 0, {}
        while bar < n_bars:
            kind, bars = self.form[i]
            count = seen.get((kind, bars), 0)
            seen[(kind, bars)] = count + 1
            out.append((kind, bars, count % 2, bar))
            bar += bars
            i = i + 1 if i + 1 < len(self.form) else min(1, len(self.form) - 1)
        return out

    def material(self, kind: str, bars: int, variant: int) -> Material:
        key = (kind, bars, variant)
        if key not in self._cache:
            self._cache[key] = self._build(kind, bars, variant)
        return self._cache[key]

    def _build(self, kind: str, bars: int, variant: int) -> Material:
        style, spb = self.style, self.style.steps_per_bar
        tag = [self.seed, _crc(style.name), _crc(kind), bars]
        rng = np.random.default_rng([*tag, 0])
        prog = self.progression["verse" if kind == "intro" else kind]
        chords, voicing = [], None
        for b in range(bars):  # an intro plays the verse progression's last bars, as a lead-in
            bar = prog[(b - bars) % len(prog)] if kind == "intro" else prog[b % len(prog)]
            for j, chord in enumerate(bar):
                voicing = voice(chord, voicing)
                start = b * spb + j * spb // len(bar)
                chords.append((start, spb // len(bar), chord, voicing))
        mat = Material(chords, [], [], [])
        figure_kind = "chorus" if kind == "chorus" else "verse"
        mat.bass = bass_line(self.bass[figure_kind], mat, bars * spb, spb, rng)
        comp = parse_grid(self.comp[figure_kind])
        period = len(self.comp[figure_kind].replace(" ", ""))
        for rep in range(-(-bars * spb // period)):
            for s, n, c in comp:
                if rep * period + s < bars * spb:
                    mat.comp.append((rep * period + s, n, ACCENT.get(c, 0.8)))
        if kind != "intro":
            var_rng = np.random.default_rng([*tag, 1 + variant])
            mat.melody = melody_line(style, kind, mat, bars, rng, var_rng if variant else None)
        return mat


@dataclasses.dataclass(frozen=True)
class Arrangement:
    """Everything `arrangement_seed` decides."""

    bpm: int
    pitch_class: int
    parts: tuple[Part, ...]
    ensemble: str | None
    dynamics: str
    fill_policy: str
    fill_beats: int
    crash_every_section: bool
    mix: tuple[tuple[int, int], ...]  # (CC7 volume, CC10 pan) per part
    drum_volume: int
    jitter: np.ndarray  # velocity humanisation, cycled


def arrange(style: Style, seed: int) -> Arrangement:
    """The arrangement `seed` decides for a piece in `style`."""
    rng = np.random.default_rng([_seed(seed), _crc(style.name), 1])
    bpm = int(rng.integers(style.bpm[0], style.bpm[1] + 1))
    pitch_class = int(rng.integers(12))
    lineup = style.lineups[rng.integers(len(style.lineups))]
    dynamics = style.dynamics[rng.integers(len(style.dynamics))]
    fill_policy = FILL_POLICIES[rng.integers(len(FILL_POLICIES))]
    fill_beats = int(rng.integers(1, 3)) if style.steps_per_bar >= 16 else 1
    crash = bool(rng.random() < 0.5)
    side = 1 if rng.random() < 0.5 else -1
    mix, seen = [], {}
    for part in lineup.parts:
        (v_lo, v_hi), (p_lo, p_hi) = _MIX[part.role]
        # Comping and pads on opposite sides; a second part of a role mirrors the first.
        s = (side if part.role in ("chords", "arp") else -side) * (-1) ** seen.get(part.role, 0)
        seen[part.role] = seen.get(part.role, 0) + 1
        mix.append((int(rng.integers(v_lo, v_hi + 1)), 64 + s * int(rng.integers(p_lo, p_hi + 1))))
    return Arrangement(
        bpm, pitch_class, lineup.parts, lineup.ensemble, dynamics, fill_policy, fill_beats, crash,
        tuple(mix), int(rng.integers(100, 116)), rng.integers(-4, 5, size=257),
    )  # fmt: skip
