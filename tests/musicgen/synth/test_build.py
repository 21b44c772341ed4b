"""`musicgen data synth`: a valid manifest, leak-free splits, truthful files, resumable."""

import collections
import json

import pytest

from mgcore import audio
from mgcore.data.manifest import iter_manifest
from musicgen.synth import build


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = build.synth_dataset(out, 0.02, seed=0, workers=2, progress=False)
    return out, summary


def test_manifest_is_valid_and_matches_the_audio(dataset):
    out, summary = dataset
    entries = list(iter_manifest(out / "manifest.jsonl"))  # validates every line
    assert len(entries) == summary["clips"] >= 3
    for e in entries:
        info = audio.audio_info(e["path"])
        assert (info.sample_rate, info.channels) == (44100, 2) == (e["sample_rate"], e["channels"])
        assert abs(info.duration - e["duration"]) < 1e-3
        a = e["attributes"]
        assert isinstance(a["bpm"], int) and a["instruments"] and a["key"] and a["mode"]
        assert a["source"] in ("procedural", "music21") and e["caption"]
        assert ("caption_held_out" in e) == (e["split"] != "train")
    assert json.loads((out / "dataset.json").read_text())["clips"] == summary["clips"]
    assert summary["hours"] >= 0.02


@pytest.mark.parametrize("seed", [0, 1])
def test_plan_is_deterministic_and_splits_never_share_a_composition(seed):
    jobs = build.plan(2.0, seed)
    assert jobs == build.plan(2.0, seed) and jobs != build.plan(2.0, seed + 1)
    split_of = collections.defaultdict(set)
    for j in jobs:
        split_of[(j.source, j.composition, j.composition_seed)].add(j.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert len({j.arrangement_seed for j in jobs}) == len(jobs)
    counts = collections.Counter(j.split for j in jobs)
    assert counts["valid"] > 0 and counts["test"] > 0 and counts["train"] > 5 * counts["test"]
    assert 0.3 < sum(j.source == "procedural" for j in jobs) / len(jobs) < 0.7
    assert 2.0 * 3600 <= sum(j.seconds for j in jobs) <= 2.0 * 3600 + 2 * build.CLIP_SECONDS[1]
    corpus_jobs = [j for j in jobs if j.source == "music21"]
    essen = sum(j.composition.startswith("essenFolksong/") for j in corpus_jobs)
    assert essen / len(corpus_jobs) < 0.45  # uniform draws would give 57 %


def test_a_work_drawn_twice_stays_in_one_split():
    keys = ["music21/bach/bwv66.6/0"] * 3 + [f"procedural/rock/{i}" for i in range(40)]
    splits = build._assign_splits(keys, seed=0)
    assert len(set(splits[:3])) == 1
    assert {"train", "valid", "test"} <= set(splits)


def test_a_rerun_resumes_and_rewrites_the_same_manifest(dataset, tmp_path):
    out, _ = dataset
    before = (out / "manifest.jsonl").read_text()
    clips = sorted((out / "audio").glob("*.flac"))
    untouched = {p: p.stat().st_mtime_ns for p in clips[1:]}
    clips[0].unlink()  # as if the build had been killed before this clip
    (out / "manifest.jsonl").unlink()
    build.synth_dataset(out, 0.02, seed=0, workers=1, progress=False)
    assert (out / "manifest.jsonl").read_text() == before
    assert clips[0].is_file()
    assert {p: p.stat().st_mtime_ns for p in clips[1:]} == untouched


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="hours must be > 0"):
        build.synth_dataset(tmp_path, 0.0)
    from musicgen.synth.render import RenderError

    with pytest.raises(RenderError, match="no General MIDI SoundFont"):
        build.synth_dataset(tmp_path, 0.01, soundfont=tmp_path / "missing.sf2")
