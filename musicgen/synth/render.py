"""Render a `Piece` to 44.1 kHz stereo audio with FluidSynth and a GM SoundFont.

FluidSynth runs as a subprocess (the `fluidsynth` Debian package): it is the
reference software synthesiser, and a subprocess keeps a crash in it from taking
the dataset builder down. The default SoundFont is Debian's TimGM6mb (small,
complete GM set); a better one such as FluidR3_GM is used when named, or when
`MUSICGEN_SOUNDFONT` points at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mgcore import audio
from musicgen.synth.score import Piece, write_midi

SAMPLE_RATE = 44100
SOUNDFONT_SEARCH = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
)
# FluidSynth's master gain: GM files at full velocity stay below 0 dBFS.
_GAIN = "0.5"
# Release and reverb tails longer than this are cut, with a fade.
_TAIL_SECONDS = 1.0


class RenderError(RuntimeError):
    """FluidSynth or the SoundFont is missing, or rendering failed."""


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """The SoundFont to render with: `soundfont`, `$MUSICGEN_SOUNDFONT`, or Debian's."""
    candidates = [soundfont] if soundfont else []
    if os.environ.get("MUSICGEN_SOUNDFONT"):
        candidates.append(os.environ["MUSICGEN_SOUNDFONT"])
    candidates += [] if soundfont else list(SOUNDFONT_SEARCH)
    for c in candidates:
        if Path(c).is_file():
            return Path(c)
    raise RenderError(
        f"no General MIDI SoundFont found (looked for {', '.join(map(str, candidates))}); "
        "install one with `bash scripts/setup.sh` (Debian: timgm6mb-soundfont) or pass --soundfont"
    )


def fluidsynth_binary() -> str:
    path = shutil.which("fluidsynth")
    if path is None:
        raise RenderError("fluidsynth is not installed; run `bash scripts/setup.sh`")
    return path


def render_midi(midi_path: Path, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Renders a MIDI file: float32 `[2, samples]` at `sample_rate`."""
    with tempfile.TemporaryDirectory(prefix="musicgen-render-") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [
            fluidsynth_binary(), "-ni", "-q", "-g", _GAIN, "-r", str(sample_rate),
            "-T", "wav", "-O", "float", "-F", str(wav), str(soundfont), str(midi_path),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.exists():
            raise RenderError(f"fluidsynth failed on {midi_path}: {done.stderr.strip()[-300:]}")
        x, _ = audio.load_audio(wav)
    return x


def render_piece(
    piece: Piece, soundfont: Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Renders `piece` to float32 stereo `[2, samples]`, tail trimmed, never clipping.

    Args:
        piece: the score.
        soundfont: a GM SoundFont (see `find_soundfont`).
        sample_rate: output rate.
        max_seconds: cut the audio to this length (with a short fade).
    """
    with tempfile.TemporaryDirectory(prefix="musicgen-midi-") as tmp:
        x = render_midi(write_midi(piece, Path(tmp) / "piece.mid"), soundfont, sample_rate)
    length = piece.seconds + _TAIL_SECONDS
    if max_seconds is not None:
        length = min(length, max_seconds)
    x = x[:, : round(length * sample_rate)]
    fade = min(x.shape[1], int(0.05 * sample_rate))
    x[:, x.shape[1] - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.abs(x).max())
    if peak > 0.98:
        x *= 0.98 / peak
    return x
