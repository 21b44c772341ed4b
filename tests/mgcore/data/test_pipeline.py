"""The grain pipeline: skips bad files with exact counts, resumes exactly, shards, crops."""

import json
import logging

import numpy as np
import pytest

from mgcore import loudness
from mgcore.data.pipeline import AudioLoader, AudioPipelineConfig
from tests.mgcore.data.corpus import BAD_KINDS, make_corpus


@pytest.fixture
def corpus(tmp_path, rng):
    return make_corpus(tmp_path / "corpus", rng)


def _config(**kw):
    base = dict(
        sample_rate=16000,
        channels=1,
        crop_seconds=1.0,
        batch_size=2,
        seed=3,
        shard_index=0,
        shard_count=1,
    )
    return AudioPipelineConfig(**{**base, **kw})


def _drain(loader):
    return [b for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_are_skipped_counted_and_warned_once(corpus, caplog, workers):
    manifest, good = corpus
    loader = AudioLoader(manifest, "train", _config(batch_size=1, num_epochs=1, workers=workers))
    with caplog.at_level(logging.WARNING, logger="mgcore.data"):
        batches = _drain(loader)
    assert sorted(b["path"][0] for b in batches) == sorted(good)
    assert dict(loader.last_epoch_skipped) == BAD_KINDS
    per_file = [r for r in caplog.records if r.getMessage().startswith("skipping ")]
    assert len(per_file) == sum(BAD_KINDS.values())
    summary = [r for r in caplog.records if "epoch 0: skipped" in r.getMessage()]
    assert (
        len(summary) == 1 and f"skipped {sum(BAD_KINDS.values())} clips" in summary[0].getMessage()
    )


def test_batches_have_the_configured_shape_and_loudness(corpus):
    manifest, _ = corpus
    cfg = _config(
        channels=2, sample_rate=24000, crop_seconds=2.0, batch_size=3, loudness_lufs=-20.0
    )
    batch = next(AudioLoader(manifest, "train", cfg))
    assert batch["audio"].shape == (3, 2, 48000) and batch["audio"].dtype == np.float32
    assert batch["length"].tolist() == [48000] * 3
    for x in batch["audio"]:
        assert abs(float(loudness.integrated_loudness(x, 24000)) + 20.0) < 0.05
    assert all(c.startswith("clip number") for c in batch["caption"])


def test_short_clips_are_zero_padded_with_their_length(corpus):
    manifest, _ = corpus
    batch = next(
        AudioLoader(manifest, "train", _config(crop_seconds=5.0, batch_size=6, loudness_lufs=None))
    )
    lengths = sorted(batch["length"].tolist())
    assert lengths[0] == 40000 and lengths[-1] == 72000  # 2.5 s and 4.5 s clips at 16 kHz
    for x, n in zip(batch["audio"], batch["length"], strict=True):
        assert not x[:, n:].any() and x[:, :n].any()


def test_state_restores_at_the_exact_next_batch_across_epochs(corpus):
    manifest, _ = corpus
    cfg = _config(batch_size=4)  # 6 good clips: epochs end mid-batch
    first = AudioLoader(manifest, "train", cfg)
    for _ in range(3):
        next(first)
    state = json.loads(json.dumps(first.get_state()))  # survives serialisation
    expected = [next(first) for _ in range(4)]
    resumed = AudioLoader(manifest, "train", cfg)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert got["path"] == want["path"]
        np.testing.assert_array_equal(got["audio"], want["audio"])
        np.testing.assert_array_equal(got["offset"], want["offset"])
    assert resumed.epoch == first.epoch and resumed.skipped_total == first.skipped_total


def test_seed_makes_it_deterministic(corpus):
    manifest, _ = corpus
    a = [next(AudioLoader(manifest, "train", _config(seed=s))) for s in (1, 1, 2)]
    np.testing.assert_array_equal(a[0]["audio"], a[1]["audio"])
    assert not np.array_equal(a[0]["offset"], a[2]["offset"])


def test_process_shards_are_disjoint_and_cover_the_split(corpus):
    manifest, good = corpus
    seen = []
    for index in range(2):
        cfg = _config(batch_size=1, num_epochs=1, shard_index=index, shard_count=2)
        seen.append([b["path"][0] for b in AudioLoader(manifest, "train", cfg)])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(good)


def test_sequential_crops_walk_each_clip_in_order(corpus):
    manifest, good = corpus
    cfg = _config(crop="sequential", shuffle=False, batch_size=1, num_epochs=1)
    batches = _drain(AudioLoader(manifest, "train", cfg))
    windows = [(b["path"][0], float(b["offset"][0])) for b in batches]
    # Manifest durations are 2.5 s: two 1 s windows per good clip, at 0 s and 1 s.
    assert windows == [(p, o) for p in good for o in (0.0, 1.0)]


def test_caption_dropout(corpus):
    manifest, _ = corpus
    batch = next(AudioLoader(manifest, "train", _config(caption_dropout=1.0, batch_size=4)))
    assert batch["caption"] == [""] * 4


def test_empty_split_is_refused(corpus):
    manifest, _ = corpus
    with pytest.raises(ValueError, match="no clips in split 'test'"):
        AudioLoader(manifest, "test", _config())
