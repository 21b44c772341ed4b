"""`musicgen data prepare --annotate`: estimated controls written into a user's manifest."""

import json

import numpy as np
import pytest

from mgcore.audio import save_audio
from musicgen import cli
from musicgen.controls.annotate import annotate_manifest


def _clicks(bpm: float, seconds: float, rate: int = 22050) -> np.ndarray:
    x = np.zeros((1, int(seconds * rate)), np.float32)
    for t in np.arange(0.0, seconds, 60.0 / bpm):
        start = int(t * rate)
        x[0, start : start + 300] += np.hanning(300) * np.sin(np.arange(300) * 1.1)
    return x


def test_prepare_annotate_fills_tempo_and_key_marked_as_estimated(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    save_audio(audio / "clicks.wav", _clicks(132.0, 8.0), 22050)
    (audio / "clicks.txt").write_text("a click track")
    out = tmp_path / "manifest.jsonl"
    argv = ["data", "prepare", "--audio-dir", str(audio), "--out", str(out), "--annotate"]
    assert cli.main(argv) == 0
    assert "annotated 1 clips: 1 bpm, 1 key" in capsys.readouterr().out
    (entry,) = [json.loads(line) for line in out.read_text().splitlines()]
    attributes = entry["attributes"]
    assert attributes["bpm"] == pytest.approx(132.0, rel=0.04)
    assert attributes["estimated"] == ["bpm", "downbeat", "key", "mode"]
    assert entry["path"] == "clicks.wav" or not entry["path"].startswith("/")


def test_known_attributes_are_kept(embedded_manifest, tmp_path):
    from pathlib import Path

    from mgcore.data.manifest import REQUIRED_ATTRIBUTES

    source = Path(embedded_manifest)
    entries = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    for e in entries:
        e["path"] = str(source.parent / e["path"])
    entries[0]["attributes"] = dict.fromkeys(REQUIRED_ATTRIBUTES)  # the user's: nothing known
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    counts = annotate_manifest(manifest, progress=False)
    assert counts["clips"] == len(entries) and counts["bpm"] == 1 and counts["key"] == 1
    after = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert after[0]["attributes"]["estimated"] == ["bpm", "downbeat", "key", "mode"]
    assert after[1:] == entries[1:]  # the true attributes, untouched
