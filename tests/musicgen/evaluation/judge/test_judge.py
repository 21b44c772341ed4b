"""The judge: its contrastive loss against the closed form, the instrument vocabulary of a
manifest, embeddings that are unit-norm, gain-free and pooled over windows exactly, and
the debug experiment through the shared runtime (trains, evaluates, resumes, loads, saves)."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mgcore.metrics import read_metrics
from mgcore.weights import PretrainedError
from musicgen import cli
from musicgen.evaluation.judge.api import Judge
from musicgen.evaluation.judge.eval import evaluate_judge
from musicgen.evaluation.judge.family import contrastive_loss
from musicgen.evaluation.judge.model import instrument_labels, instrument_vocabulary

EXPERIMENT = "experiments/judge_tiny.py:debug"


@pytest.fixture(scope="module")
def trained(judge_debug):
    """The debug experiment's workdir after 2 steps, and its command line."""
    return judge_debug


@pytest.fixture(scope="module")
def judge(trained) -> Judge:
    return Judge.from_pretrained(trained[0])


# --------------------------------------------------------------------------------- loss
def test_contrastive_loss_has_its_closed_form():
    b, s = 4, 2.0
    a_BxD = jnp.eye(b, 6)  # orthonormal rows
    # Aligned: each row's logits are s on the diagonal and 0 elsewhere, both directions.
    loss, accuracy = contrastive_loss(a_BxD, a_BxD, jnp.log(s))
    assert float(loss) == pytest.approx(math.log(1 + (b - 1) * math.exp(-s)), rel=1e-5)
    assert float(accuracy) == 1.0
    # Shifted by one: the true pair scores 0 and one wrong pair scores s.
    loss, accuracy = contrastive_loss(a_BxD, jnp.roll(a_BxD, 1, axis=0), jnp.log(s))
    assert float(loss) == pytest.approx(math.log(math.exp(s) + b - 1), rel=1e-5)
    assert float(accuracy) == 0.0
    # The scale is clamped at 100, as CLIP's.
    loss, _ = contrastive_loss(a_BxD, jnp.roll(a_BxD, 1, axis=0), jnp.log(1000.0))
    assert float(loss) == pytest.approx(100 + math.log(1 + (b - 1) * math.exp(-100)), rel=1e-5)


# --------------------------------------------------------------------------- vocabulary
def test_instrument_vocabulary_is_the_training_splits_and_labels_are_exact(tmp_path):
    rows = [("train", ["piano", "drums"]), ("train", ["violin"]), ("valid", ["harp"]),
            ("test", ["piano", "oboe"]), ("train", [])]  # fmt: skip
    manifest = tmp_path / "manifest.jsonl"
    with manifest.open("w") as f:
        for i, (split, instruments) in enumerate(rows):
            attributes = {"genre": "x", "bpm": 90, "key": "C", "mode": "major",
                          "instruments": instruments}  # fmt: skip
            f.write(json.dumps({"path": f"{i}.flac", "duration": 1.0, "sample_rate": 44100,
                                "channels": 1, "caption": "c", "attributes": attributes,
                                "split": split}) + "\n")  # fmt: skip
    vocabulary = instrument_vocabulary(str(manifest))
    assert vocabulary == ("drums", "piano", "violin")
    assert instrument_vocabulary(str(manifest), None) == (
        "drums", "harp", "oboe", "piano", "violin")  # fmt: skip
    labels = instrument_labels([{"instruments": ["piano", "oboe"]}, {"instruments": None},
                                {"instruments": ["violin", "drums"]}], vocabulary)  # fmt: skip
    np.testing.assert_array_equal(labels, [[0, 1, 0], [0, 0, 0], [1, 0, 1]])
    assert labels.dtype == np.float32


# --------------------------------------------------------------------------- embeddings
def test_embeddings_are_unit_norm_gain_free_and_pooled_over_windows(judge, rng):
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (3000, 16000, 24000)]
    stereo = 0.1 * rng.standard_normal((2, 30000)).astype(np.float32)
    emb = judge.audio_embeddings([*clips, stereo], 16000)
    assert emb.shape == (4, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # a stereo clip is its channels' mean; a batch array is its rows
    np.testing.assert_allclose(judge.audio_embeddings([stereo.mean(0)], 16000), emb[3:],
                               atol=1e-6)  # fmt: skip
    batch = np.stack([clips[1], clips[1][::-1]])[:, None]
    np.testing.assert_allclose(judge.audio_embeddings(batch, 16000)[0], emb[1], atol=1e-6)
    # each window removes its mean dB: the gain does not matter
    np.testing.assert_allclose(judge.audio_embeddings([0.2 * clips[1]], 16000), emb[1:2],
                               atol=1e-4)  # fmt: skip
    # two full windows pool to the mean of their two poolings (equal frame counts)
    halves = [clips[1][:8000], clips[1][8000:]]
    pooled = judge.pooled_features([clips[1], *halves], 16000)
    np.testing.assert_allclose(pooled[0], pooled[1:].mean(0), rtol=1e-5, atol=1e-6)

    # resampled with soxr first: band-limited audio at 32 kHz embeds as at 16 kHz
    def tones(rate: int) -> np.ndarray:
        t = np.arange(rate) / rate
        return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t)).astype(
            np.float32
        )

    at_16k = judge.audio_embeddings([tones(16000)], 16000)[0]
    at_32k = judge.audio_embeddings([tones(32000)], 32000)[0]
    assert float(at_16k @ at_32k) > 0.999
    probs = judge.instrument_probs(clips, 16000)
    assert probs.shape == (3, len(judge.instruments)) and ((probs > 0) & (probs < 1)).all()


# ------------------------------------------------------------------------- the runtime
def test_debug_experiment_trains_evaluates_and_resumes(trained):
    work, args = trained
    steps = [r for r in read_metrics(work) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    # two captions per batch: InfoNCE starts near log 2; BCE near log 2 per label
    assert all(0 < r["contrastive"] < 3 and 0.3 < r["bce"] < 1.5 for r in steps)
    evals = [r for r in read_metrics(work) if "eval/text_to_audio_r1" in r]
    assert evals and evals[-1]["eval/retrieval_r1_chance"] == 0.5
    assert {"eval/instrument_accuracy", "eval/instrument_all_found_chance"} <= set(evals[-1])
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == [
        "1", "2"]  # fmt: skip
    assert cli.main([*args, "--set", "train.steps=3"]) == 0
    assert max(r["step"] for r in read_metrics(work) if "loss" in r) == 3


def test_saved_judge_embeds_exactly_as_the_workdirs(judge, embedded_manifest, tmp_path, rng):
    vocabulary = instrument_vocabulary(embedded_manifest)
    assert judge.instruments == list(vocabulary) and judge.config.instruments == vocabulary
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (5000, 60000)]
    emb, probs = judge.analyze(clips, 44100)
    assert emb.shape == (2, 16) and probs.shape == (2, len(vocabulary))
    captions = ["a calm folk tune with flute", "fast rock with drums", "x"]
    text = judge.text_embeddings(captions)
    assert text.shape == (3, 16) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        judge.text_embeddings(["fine", ""])

    saved = judge.save_pretrained(tmp_path / "saved")
    loaded = Judge.from_pretrained(saved, conditioner=judge.conditioner)
    assert loaded.instruments == judge.instruments
    np.testing.assert_array_equal(loaded.audio_embeddings(clips, 44100), emb)
    np.testing.assert_array_equal(loaded.instrument_probs(clips, 44100), probs)
    np.testing.assert_array_equal(loaded.text_embeddings(captions), text)

    # Weights trained under one vocabulary are refused under another.
    meta = json.loads((saved / "judge.json").read_text())
    meta["config"]["instruments"] = [*meta["config"]["instruments"][:-1], "kazoo"]
    (saved / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(PretrainedError, match="vocabulary"):
        Judge.from_pretrained(saved)
    # A text encoder path is resolved inside the folder, never outside it.
    meta["text"] = {"kind": "t5", "path": "../../../../etc"}
    (saved / "judge.json").write_text(json.dumps(meta))
    with pytest.raises(PretrainedError, match=r"field text\.path names '\.\./\.\./\.\./\.\./etc', "
                       "which is outside"):  # fmt: skip
        Judge.from_pretrained(saved)


def test_evaluate_judge_reports_scores_with_chance_levels(judge, embedded_manifest):
    report = evaluate_judge(judge, embedded_manifest, split="test", seconds=1.0)
    assert report["clips"] == 2 and report["retrieval_r1_chance"] == 0.5
    assert report["retrieval_r5_chance"] == 1.0
    assert report["text_to_audio_r5"] == 1.0  # two candidates: both within the top 5
    assert report["text_to_audio_r1"] in (0.0, 0.5, 1.0)
    for key in ("instrument_accuracy", "instrument_all_found", "instrument_all_found_chance"):
        assert 0.0 <= report[key] <= 1.0


def test_a_crop_other_than_the_window_is_refused(embedded_manifest):
    from mgcore.config import load_experiment
    from musicgen.evaluation.judge.family import make_family

    config = load_experiment(EXPERIMENT, [f"data.manifest={embedded_manifest}"])
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, crop_seconds=1))
    with pytest.raises(ValueError, match="window_seconds"):
        make_family(config)
