"""Longest copied runs of codec frames: known answers, a brute-force reference, a cache."""

import json

import numpy as np
import pytest

from musicgen.evaluation.memorisation import (
    FrameIndex,
    Match,
    copied_seconds,
    memorisation_summary,
)
from musicgen.lm import token_cache

K, V = 4, 1024


@pytest.fixture(scope="module")
def train() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, V, (K, int(f))).astype(np.int16) for f in rng.integers(200, 400, 20)]


@pytest.fixture(scope="module")
def index(train) -> FrameIndex:
    return FrameIndex(train)


def brute_force(train: list[np.ndarray], query_KxF: np.ndarray) -> int:
    """Longest common run by dynamic programming over every (query, training) frame pair."""
    best = 0
    for clip_KxF in train:
        equal_QxT = (query_KxF[:, :, None] == clip_KxF[:, None, :]).all(0)
        run = np.zeros(clip_KxF.shape[1] + 1, np.int64)
        for row in equal_QxT:
            run[1:] = np.where(row, run[:-1] + 1, 0)
            best = max(best, int(run.max()))
    return best


def test_a_copied_run_is_found_exactly_with_its_place(train, index):
    query = np.random.default_rng(1).integers(0, V, (K, 200))
    query[:, 50:87] = train[7][:, 100:137]
    assert index.longest_run(query) == Match(frames=37, clip=7, offset=100, query_offset=50)
    assert index.longest_run(query)[0] == 37


def test_random_codes_copy_nothing(index):
    queries = list(np.random.default_rng(2).integers(0, V, (30, K, 300)))
    assert [m.frames for m in index.longest_runs(queries)] == [0] * 30
    assert index.longest_runs(queries)[0] == Match(0, -1, -1, -1)


def test_every_codebook_must_match_and_runs_stay_in_one_clip(train, index):
    query = train[3][:, 10:70].copy()
    query[2, 25] = (query[2, 25] + 1) % V  # frame 25 differs in one codebook
    assert index.longest_run(query) == Match(34, 3, 36, 26)
    assert FrameIndex(train, num_codebooks=2).longest_run(query) == Match(60, 3, 10, 0)
    across = np.concatenate([train[4][:, -12:], train[5][:, :9]], axis=1)
    assert index.longest_run(across) == Match(12, 4, train[4].shape[1] - 12, 0)


def test_matches_a_brute_force_reference_on_repetitive_codes():
    """Two- or three-letter alphabets: many equal frames, blocks and near misses."""
    rng = np.random.default_rng(3)
    for trial in range(12):
        v, k = int(rng.integers(2, 4)), int(rng.integers(1, 3))
        train = [rng.integers(0, v, (k, int(rng.integers(1, 40)))) for _ in range(3)]
        queries = [rng.integers(0, v, (k, int(rng.integers(1, 30)))) for _ in range(3)]
        found = [m.frames for m in FrameIndex(train).longest_runs(queries)]
        assert found == [brute_force(train, q) for q in queries], trial


def test_wide_frames_past_64_bits_are_compared_exactly():
    """9 codebooks of 4096 codes (108 bits a frame) and codes unseen in training."""
    rng = np.random.default_rng(4)
    train = [rng.integers(0, 4096, (9, 300)) for _ in range(5)]
    query = rng.integers(0, 5000, (9, 120))
    query[:, 30:71] = train[2][:, 200:241]
    query[8, 71] = train[2][8, 241] + 4096  # a code no training frame has
    assert FrameIndex(train).longest_run(query) == Match(41, 2, 200, 30)


def test_stop_frames_such_as_silence_copy_nothing(train):
    silence = np.full((K, 1), 7, np.int16)  # not a code frame of `train` (too unlikely)
    with_gap = [train[0], np.concatenate([train[1][:, :50], silence.repeat(80, 1)], axis=1)]
    query = np.concatenate([silence.repeat(60, 1), train[1][:, :20]], axis=1)
    frames, clip, offset, query_offset = FrameIndex(with_gap).longest_run(query)
    assert (frames, clip, query_offset) == (60, 1, 0) and 50 <= offset <= 70  # any 60 of 80
    stopped = FrameIndex(with_gap, stop_frames=1)
    assert stopped.longest_run(query) == Match(20, 1, 0, 60)
    assert stopped.longest_run(silence.repeat(60, 1)) == Match(0, -1, -1, -1)


def test_summary_share_over_the_threshold(train, index):
    queries = [t[:, :120].copy() for t in train[:4]]
    queries[0][:, :] = 0  # copies nothing (code 0 everywhere is not in training)
    queries[1][:, 100:] = 0  # copies 100 frames: 4 s at 25 frames/s
    summary = memorisation_summary(index, queries, frame_rate=25.0, threshold_seconds=4.0)
    assert [r["frames"] for r in summary["runs"]] == [0, 100, 120, 120]
    assert [r["seconds"] for r in summary["runs"]] == [0.0, 4.0, 4.8, 4.8]
    assert summary["copied_share"] == 0.5
    assert (summary["max_seconds"], summary["median_seconds"]) == (4.8, 4.4)
    assert copied_seconds(250, 50.0) == 5.0
    np.testing.assert_array_equal(copied_seconds(np.array([0, 25]), 50.0), [0.0, 0.5])


def _write_cache(root, clips: list[np.ndarray], frame_rate: float = 50.0) -> None:
    """A token cache as `encode_dataset` lays it out: one shard, its index, cache.json."""
    root.mkdir()
    np.save(root / token_cache.shard_name("train", 0), np.concatenate(clips, axis=1))
    offsets = np.cumsum([0] + [c.shape[1] for c in clips])
    with (root / "train.jsonl").open("w") as f:
        for i, c in enumerate(clips):
            line = dict(shard=0, offset=int(offsets[i]), frames=c.shape[1], caption="", path="")
            f.write(json.dumps(line) + "\n")
    meta = {
        "format": token_cache.FORMAT,
        "version": token_cache.VERSION,
        "codec": {"frame_rate": frame_rate, "num_codebooks": K, "codebook_size": V},
        "dtype": "int16",
        "splits": {"train": {"clips": len(clips), "frames": int(offsets[-1]), "complete": True}},
    }
    (root / token_cache.META_FILE).write_text(json.dumps(meta))


def test_from_token_cache(train, tmp_path):
    _write_cache(tmp_path / "tokens", train[:6])
    query = np.concatenate([np.zeros((K, 5), np.int16), train[5][:, 40:90]], axis=1)
    for cache in (tmp_path / "tokens", token_cache.TokenCache(tmp_path / "tokens")):
        found = FrameIndex.from_token_cache(cache, split="train")
        assert found.num_frames == sum(t.shape[1] for t in train[:6])
        assert found.longest_run(query) == Match(50, 5, 40, 5)
    coarse = FrameIndex.from_token_cache(tmp_path / "tokens", num_codebooks=1)
    assert coarse.num_codebooks == 1
