"""The manifest: schema checks with line numbers, and an index whose memory is 12 bytes a clip."""

import json

import pytest

from mgcore.data.manifest import ManifestError, ManifestIndex, iter_manifest, write_manifest


def _entry(i, split="train"):
    return {
        "path": f"clips/{i}.flac",
        "duration": 10.0 + i % 7,
        "sample_rate": 44100,
        "channels": 2,
        "caption": f"caption {i}",
        "split": split,
        "attributes": {
            "genre": "jazz",
            "bpm": 100 + i % 50,
            "key": "C",
            "mode": "major",
            "instruments": ["piano"],
        },
    }


def test_index_holds_offsets_and_durations_only(tmp_path):
    n = 50_000
    path = tmp_path / "m.jsonl"
    write_manifest(path, (_entry(i, "test" if i % 10 == 0 else "train") for i in range(n)))
    index = ManifestIndex(path, "train")
    assert len(index) == n - n // 10
    assert index._offsets.nbytes + index.durations.nbytes == 12 * len(index)
    for i in (0, 1234, len(index) - 1):
        original = i + i // 9 + 1  # every 10th line went to "test"
        entry = index[i]
        assert entry["caption"] == f"caption {original}"
        assert entry["path"] == str(tmp_path / f"clips/{original}.flac")
        assert index.durations[i] == entry["duration"]


def test_schema_errors_name_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    good = json.dumps(_entry(0))
    for bad, message in (
        ("{not json", ":2: not valid JSON"),
        (json.dumps({**_entry(1), "split": "dev"}), ":2: split must be one of"),
    ):
        path.write_text(f"{good}\n{bad}\n")
        with pytest.raises(ManifestError, match=message):
            list(iter_manifest(path))
    entry = _entry(0)
    del entry["attributes"]["bpm"]
    with pytest.raises(ManifestError, match="attributes lack bpm"):
        write_manifest(path, [entry])
