"""`prepare_manifest`: a user's folder becomes a manifest; bad files are reported, not listed."""

import json

import numpy as np
import pytest

from mgcore import audio
from mgcore.data.manifest import iter_manifest
from mgcore.data.prepare import prepare_manifest


def _folder(root, rng):
    (root / "sub").mkdir(parents=True)
    x = (0.3 * rng.standard_normal((2, 96000))).astype(np.float32)  # >= 2 s at every rate
    audio.save_audio(root / "a.wav", x, 44100)
    audio.save_audio(root / "sub" / "b.flac", x[:1], 32000)
    audio.save_audio(root / "c.flac", x, 48000)
    (root / "a.txt").write_text("a calm piano piece\n")
    (root / "sub" / "b.json").write_text(
        json.dumps(
            {
                "description": "upbeat house track",
                "genre": "house",
                "bpm": 124,
                "key": "A",
                "moods": ["happy"],
                "instrument": ["synth", "drums"],
            }
        )
    )
    (root / "broken.wav").write_text("nope")
    (root / "song.m4a").write_bytes(b"\x00" * 64)
    (root / "readme.md").write_text("not audio and not listed")


def test_sidecars_give_captions_and_bad_files_are_reported(tmp_path, rng):
    _folder(tmp_path / "music", rng)
    out = tmp_path / "out" / "manifest.jsonl"
    report = prepare_manifest(tmp_path / "music", out, progress=False)
    assert report.usable == 3 and dict(report.unusable) == {"not_audio": 1, "unsupported": 1}
    entries = {e["path"].rsplit("/", 1)[1]: e for e in iter_manifest(out)}
    assert sorted(entries) == ["a.wav", "b.flac", "c.flac"]
    assert entries["a.wav"]["caption"] == "a calm piano piece"
    assert entries["b.flac"]["caption"] == "upbeat house track"
    assert entries["b.flac"]["attributes"]["bpm"] == 124
    assert entries["b.flac"]["attributes"]["instruments"] == ["synth", "drums"]
    assert entries["c.flac"]["caption"] == "" and entries["c.flac"]["attributes"]["genre"] is None
    assert (entries["b.flac"]["sample_rate"], entries["b.flac"]["channels"]) == (32000, 1)
    assert all(e["split"] in ("train", "valid", "test") for e in entries.values())
    assert not json.loads(out.read_text().splitlines()[0])["path"].startswith("/")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "audiocraft"])
def test_captions_file_selects_files_and_wins_over_sidecars(tmp_path, rng, fmt):
    _folder(tmp_path / "music", rng)
    captions = tmp_path / f"captions.{'csv' if fmt == 'csv' else 'jsonl'}"
    if fmt == "csv":
        captions.write_text('file,caption\na.wav,"piano, solo"\nsub/b.flac,house beat\n')
    elif fmt == "jsonl":
        captions.write_text(
            '{"path": "a.wav", "text": "piano, solo"}\n'
            '{"path": "sub/b.flac", "description": "house beat"}\n'
        )
    else:  # audiocraft: paths only, captions from the sidecars
        captions.write_text(
            '{"path": "a.wav", "duration": 1.0, "sample_rate": 44100}\n'
            '{"path": "sub/b.flac", "duration": 1.0, "sample_rate": 32000}\n'
        )
    out = tmp_path / "manifest.jsonl"
    report = prepare_manifest(tmp_path / "music", out, captions=captions, progress=False)
    assert report.usable == 2
    got = sorted(e["caption"] for e in iter_manifest(out))
    if fmt == "audiocraft":
        assert got == ["a calm piano piece", "upbeat house track"]
    else:
        assert got == ["house beat", "piano, solo"]


def test_split_is_stable_and_roughly_proportional():
    from mgcore.data.prepare import split_of

    splits = [split_of(f"track_{i}.wav", 0.1, 0.1) for i in range(2000)]
    assert splits == [split_of(f"track_{i}.wav", 0.1, 0.1) for i in range(2000)]
    for name, share in (("valid", 0.1), ("test", 0.1), ("train", 0.8)):
        assert abs(splits.count(name) / 2000 - share) < 0.03
