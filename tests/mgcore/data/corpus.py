"""A small corpus with good clips next to every kind of bad file, and its manifest."""

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from mgcore import audio
from mgcore.data.manifest import write_manifest

# How many files of each bad kind the corpus holds, by the reason code they get.
BAD_KINDS = {
    "missing": 1,
    "empty": 1,
    "not_audio": 2,  # random bytes named .wav, and a text file named .flac
    "unsupported": 1,  # an .m4a that libsndfile cannot decode
    "truncated": 2,  # a WAV whose header promises more, a FLAC cut short
    "no_samples": 1,  # a WAV header with no data
    "non_finite": 2,  # NaN-filled and inf-holding float WAVs
    "silent": 1,
    "too_short": 1,
    "directory": 1,
}


def _tone(rng, seconds, sr, channels):
    t = np.arange(int(seconds * sr)) / sr
    f = rng.uniform(110, 880)
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size)
    return np.repeat(x[None], channels, 0).astype(np.float32)


def _wav_header_only(path: Path, declared_frames: int, present_frames: int) -> Path:
    data = np.zeros(present_frames, "<i2").tobytes()
    declared = declared_frames * 2
    header = b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", declared)
    path.write_bytes(header + data)
    return path


def make_corpus(root: Path, rng: np.random.Generator, n_good: int = 6) -> tuple[Path, list[str]]:
    """Writes good and bad files under `root` and a manifest naming all of them.

    Returns:
        (manifest path, absolute paths of the good files).
    """
    root.mkdir(parents=True, exist_ok=True)
    good = []
    for i in range(n_good):
        sr, ch = [(44100, 2), (32000, 1), (48000, 2), (22050, 1)][i % 4]
        good.append(audio.save_audio(root / f"good_{i}.flac", _tone(rng, 2.5 + i % 3, sr, ch), sr))
    bad = [root / "gone.wav"]
    (root / "empty.wav").write_bytes(b"")
    bad.append(root / "empty.wav")
    (root / "garbage.wav").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (root / "notes.flac").write_text("not audio at all\n" * 50)
    bad += [root / "garbage.wav", root / "notes.flac"]
    (root / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    bad.append(root / "song.m4a")
    bad.append(_wav_header_only(root / "truncated.wav", 48000, 8000))
    whole = audio.save_audio(root / "whole.flac", _tone(rng, 3.0, 44100, 2), 44100)
    (root / "cut.flac").write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    whole.unlink()
    bad.append(root / "cut.flac")
    bad.append(_wav_header_only(root / "zero.wav", 0, 0))
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = _tone(rng, 2.0, 16000, 1)
        x[0, 1000:] = value
        sf.write(root / name, x.T, 16000, subtype="FLOAT")
        bad.append(root / name)
    audio.save_audio(root / "silence.wav", np.zeros((1, 32000), np.float32), 16000)
    audio.save_audio(root / "blip.wav", _tone(rng, 0.3, 16000, 1), 16000)
    (root / "folder.wav").mkdir()
    bad += [root / "silence.wav", root / "blip.wav", root / "folder.wav"]
    assert len(bad) == sum(BAD_KINDS.values())
    entries = []
    for i, path in enumerate(good + bad):
        entries.append(
            {
                "path": path.name,
                "duration": 2.5,
                "sample_rate": 44100,
                "channels": 2,
                "caption": f"clip number {i}",
                "attributes": {
                    "genre": "test",
                    "bpm": 120,
                    "key": "C",
                    "mode": "major",
                    "instruments": ["sine"],
                },
                "split": "train",
            }
        )
    manifest = root / "manifest.jsonl"
    write_manifest(manifest, entries)
    return manifest, [str(p) for p in good]
