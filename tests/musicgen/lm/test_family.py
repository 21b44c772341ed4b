"""The token LM through the shared runtime: the debug experiment trains from its token
cache, resumes, and the result generates audio from prompts and continues a clip."""

import numpy as np
import pytest

from codec.api import load_codec
from mgcore.metrics import read_metrics
from musicgen import cli
from musicgen.lm.api import LanguageModel
from musicgen.lm.eval import evaluate_lm
from musicgen.lm.sampling import SamplingConfig
from musicgen.lm.token_cache import TokenCache

EXPERIMENT = "experiments/lm_tiny.py:debug"


@pytest.fixture(scope="module")
def trained(lm_debug):
    return lm_debug


def test_debug_experiment_trains_evaluates_and_resumes(trained):
    work, _, args = trained
    records = read_metrics(work)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    # per-codebook cross-entropy near log(64) = 4.16 for an untrained model on 64 codes
    assert all(3.0 < steps[0][f"ce_{k}"] < 5.5 for k in range(4))
    evals = [r for r in records if "eval/ce_text" in r]
    assert evals and {"eval/ce_empty_3", "eval/text_gap"} <= set(evals[-1])
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == [
        "3",
        "6",
    ]
    assert list((work / "samples").rglob("*.flac")) and list((work / "samples").rglob("*.png"))
    assert cli.main([*args, "--set", "train.steps=8"]) == 0
    assert max(r["step"] for r in read_metrics(work) if "loss" in r) == 8


def test_trained_lm_generates_and_continues(trained, tmp_path):
    work, tokens, _ = trained
    lm = LanguageModel.from_pretrained(work)
    cache = TokenCache(tokens)
    codec = load_codec(cache.root / "codec")  # the random codec the cache was encoded with
    sampling = SamplingConfig(top_k=20, cfg_coef=3.0)
    audio = lm.generate_audio(codec, ["a calm folk tune", "fast rock"], 0.7, sampling=sampling)
    assert audio.shape == (2, 1, round(0.7 * codec.sample_rate))
    assert np.isfinite(audio).all()

    clip = codec.decode(cache.codes("test", 0)[None, :, :20])[0]  # 0.4 s at 50 Hz
    prompt = codec.encode(clip[None])
    codes = lm.generate([""], 45, sampling=sampling, seed=3, prompt_codes=prompt)
    np.testing.assert_array_equal(codes[..., : prompt.shape[-1]], prompt)  # kept exactly
    more = lm.continue_audio(codec, clip, codec.sample_rate, None, 0.9, sampling=sampling)
    assert more.shape == (1, 1, round(0.9 * codec.sample_rate))

    # A saved copy samples exactly what the workdir's model samples.
    saved = LanguageModel.from_pretrained(lm.save_pretrained(tmp_path / "lm"))
    again = saved.generate([""], 45, sampling=sampling, seed=3, prompt_codes=prompt)
    np.testing.assert_array_equal(again, codes)


def test_eval_lm_reports_text_and_empty_per_weight_format(trained):
    work, tokens, _ = trained
    report = evaluate_lm(str(work), tokens=str(tokens), split="test", batch_size=2)
    assert set(report.results) == {"float32", "bfloat16", "int8"}
    assert report.windows >= 2
    base = np.asarray(report.results["float32"]["ce_text"])
    assert base.shape == (4,) and np.isfinite(base).all()
    for weights in ("bfloat16", "int8"):
        other = np.asarray(report.results[weights]["ce_text"])
        assert np.abs(other / base - 1).max() < 0.02
    assert "| float32 | empty |" in report.markdown()
    assert np.isfinite(report.results["float32"]["gap_se"])
    # Scoring the whole window as its "opening" gives the whole-window numbers exactly.
    whole = evaluate_lm(
        str(work), tokens=str(tokens), batch_size=2, head_seconds=100.0, weights=("float32",)
    )
    r = whole.results["float32"]
    np.testing.assert_allclose(r["ce_text_head"], r["ce_text"], rtol=1e-6)
    np.testing.assert_allclose(r["ce_empty_head"], r["ce_empty"], rtol=1e-6)
    np.testing.assert_allclose(r["ce_text"], base, rtol=1e-6)
