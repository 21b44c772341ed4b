"""`musicgen eval generate`: the scoring on inputs with known answers, and the whole
harness on the debug LM and judge (ceiling, floor and model rows; report files)."""

import json

import numpy as np
import pytest

from musicgen import cli
from musicgen.evaluation import scoring
from musicgen.evaluation.prompts import asked
from musicgen.evaluation.scoring import Clip, GenerateEvalConfig, Scored

RATE = 22050


def click_track(bpm: float, seconds: float = 8.0) -> np.ndarray:
    x = np.zeros(round(seconds * RATE), np.float32)
    for start in np.arange(0, seconds, 60.0 / bpm):
        i = round(start * RATE)
        x[i : i + 200] += np.hanning(400)[200:] * np.sin(np.arange(200) * 0.9)
    return x[None]


ATTRS = {"bpm": 120, "key": "A", "mode": "minor", "has_drums": True,
         "instruments": ["piano", "drums"]}  # fmt: skip


def clip(prompt: str, attrs=ATTRS) -> Clip:
    return Clip({"attributes": attrs}, prompt, "caption", asked(prompt, attrs), np.zeros((1, 1)))


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10):
        for seed in range(5):
            p = scoring.derangement(n, seed)
            assert sorted(p) == list(range(n)) and not (p == np.arange(n)).any()


def test_summarise_counts_only_what_the_prompts_ask():
    clips = [
        clip("A minor piano piece with drums at 120 bpm"),  # asks tempo, key, piano+drums
        clip("piano and drums at 120 bpm"),  # asks tempo, instruments
        clip("a sad song in A minor"),
    ]  # asks key only
    scored = Scored(
        tempo=[121.0, 240.0, None], key=[("A", "minor"), None, ("C", "major")],
        probs_NxL=np.array([[0.9, 0.8], [0.9, 0.1], [0.2, 0.2]]),
        embed_NxD=np.eye(3), clap_N=np.array([0.5, 0.0, 1.0]), copied_frames=[300, 10, 250],
    )  # fmt: skip
    row = scoring.summarise(scored, clips, GenerateEvalConfig(), frame_rate=50.0,
                            instruments=("piano", "drums"))  # fmt: skip
    assert (row["tempo_match"], row["tempo_octave"], row["tempo_n"]) == (0.5, 0.5, 2)
    # Key: A minor asked twice; C major is A minor's relative key.
    assert (row["key_match"], row["key_relative"], row["key_n"]) == (0.5, 0.5, 2)
    # Instruments: clip 0 hears both, clip 1 misses drums, clip 2 names none.
    assert (row["instruments_match"], row["instruments_n"]) == (0.5, 2)
    assert row["clap"] == pytest.approx(0.5)
    # 300 frames = 6 s > 5 s copies; 250 frames = 5 s does not.
    assert row["copy_share"] == pytest.approx(1 / 3)
    assert row["copy_longest_s_max"] == pytest.approx(6.0)


def test_silence_is_a_tempo_miss_not_left_out():
    clips = [clip("drums at 120 bpm"), clip("drums at 120 bpm")]
    scored = Scored(tempo=[120.0, 0.0], key=[None, None], probs_NxL=None, embed_NxD=None,
                    clap_N=None, copied_frames=None)  # fmt: skip
    row = scoring.summarise(scored, clips, GenerateEvalConfig())
    assert (row["tempo_match"], row["tempo_n"]) == (0.5, 2)


def test_adherence_hook_on_click_tracks():
    prompts = ["drums at 120 bpm", "drums at 90 bpm"]
    audio = [click_track(120), click_track(120)]
    out = scoring.adherence(audio, RATE, prompts, [ATTRS, {**ATTRS, "bpm": 90}])
    assert out["eval/adherence_tempo_n"] == 2.0
    assert out["eval/adherence_tempo_match"] == pytest.approx(0.5)
    assert "eval/adherence_key_match" not in out  # no prompt names a key


def test_eval_generate_writes_ceiling_floor_and_model_rows(
    lm_debug, judge_debug, embedded_manifest, tmp_path
):
    work, _, _ = lm_debug
    out = tmp_path / "report"
    argv = ["eval", "generate", "--checkpoint", str(work), "--manifest", embedded_manifest,
            "--judge", str(judge_debug[0]), "--n", "2", "--seconds", "1", "--continuations", "2",
            "--prompt-seconds", "0.5", "--continue-seconds", "1", "--batch", "2",
            "--top-k", "20", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    report = json.loads((out / "generate_eval.json").read_text())
    rows = report["rows"]
    assert {"real clips (ceiling)", "codec round trip", "shuffled prompts (floor)",
            "model"} <= set(rows)  # fmt: skip
    real, floor = rows["real clips (ceiling)"], rows["shuffled prompts (floor)"]
    model = rows["model"]
    assert real["kl"] == pytest.approx(0.0, abs=1e-9)  # the reference against itself
    assert floor["kl"] > 0 and "fd" not in floor  # the floor's audio is the real set
    assert all(-1 <= r["clap"] <= 1 and r["clips"] == 2 for r in (real, floor, model))
    assert np.isfinite(model["fd"]) and model["fd"] >= 0
    # The model's codes come from the LM, the real clips' from the codec: both are indexed.
    assert model["copy_longest_s_mean"] >= 0 and 0 <= model["copy_share"] <= 1
    assert set(report["continuation"]) >= {"model", "real continuation (ceiling)"}
    names = {p.name for p in out.iterdir()}
    assert {"generate_eval.md", "tempo_scatter.png", "key_confusion.png",
            "spectrogram_0.png"} <= names  # fmt: skip
    md = (out / "generate_eval.md").read_text()
    assert "not comparable to published MusicCaps figures" in md and "| model |" in md
    assert "Judge on the split" in md and report["judge_check"]["clips"] >= 2


def test_adherence_hook_with_a_judge_adds_instruments_and_clap(judge_debug):
    from musicgen.evaluation.judge.api import Judge

    judge = Judge.from_pretrained(judge_debug[0])
    name = judge.instruments[0]
    prompts = [f"a tune with {name} at 120 bpm", "a tune at 120 bpm"]
    attrs = [{**ATTRS, "instruments": [name]}, {**ATTRS, "instruments": []}]
    out = scoring.adherence([click_track(120, 2.0)] * 2, RATE, prompts, attrs, judge)
    assert out["eval/adherence_instruments_n"] == 1.0  # only the first prompt names one
    assert out["eval/adherence_instruments_match"] in (0.0, 1.0)
    text = judge.text_embeddings(prompts)
    audio = judge.audio_embeddings([click_track(120, 2.0)] * 2, RATE)
    assert out["eval/adherence_clap"] == pytest.approx(float(np.mean(np.sum(text * audio, -1))))


def test_an_lm_with_controls_gets_the_controls_table_unless_left_out(
    tiny_controls_pipeline, judge_debug, embedded_manifest, tmp_path
):
    folder = tiny_controls_pipeline.save_pretrained(tmp_path / "pipe")
    argv = ["eval", "generate", "--checkpoint", str(folder), "--manifest", embedded_manifest,
            "--judge", str(judge_debug[0]), "--n", "2", "--seconds", "1", "--continuations",
            "0", "--batch", "2", "--top-k", "20"]  # fmt: skip
    for flags, table in (([], True), (["--no-controls-table"], False)):
        out = tmp_path / f"report_{table}"
        assert cli.main([*argv, *flags, "--out", str(out)]) == 0
        report = json.loads((out / "generate_eval.json").read_text())
        assert report["config"]["controls_table"] is table
        assert (report["controls"] is not None) is table
        assert report["rows"]["model"]["clips"] == 2  # the parsed-controls row either way
