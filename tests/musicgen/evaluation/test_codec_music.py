"""`musicgen eval codec`'s music rows: the real clips and every decoding scored with
`eval generate`'s estimators, against each clip's caption and labels."""

import json

import flax.nnx as nnx
import numpy as np
import pytest

from codec.api import Codec
from codec.model import CodecModel
from mgcore import audio, loudness
from mgcore.data.manifest import ManifestIndex
from musicgen import cli
from musicgen.evaluation import scoring
from musicgen.evaluation.judge.api import Judge
from musicgen.evaluation.prompts import asked
from tests.codec.test_vocos import vocos_config

SECONDS = 2.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = vocos_config()
    with nnx.use_eager_sharding(False):
        codec = Codec(CodecModel(config, rngs=nnx.Rngs(0)))
    return str(codec.save_pretrained(tmp_path_factory.mktemp("codec") / "c"))


def test_music_rows_score_real_clips_and_decodings_as_eval_generate(
    checkpoint, embedded_manifest, judge_debug, tmp_path, capsys
):
    args = ["eval", "codec", "--checkpoint", checkpoint, "--manifest", embedded_manifest,
            "--split", "train", "--clips", "2", "--seconds", str(SECONDS),
            "--judge", str(judge_debug[0]), "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| real clips |" in out and "| 2 codebooks |" in out and "CLAP ↑" in out
    report = json.loads((tmp_path / "codec_eval.json").read_text())
    music = report["music"]
    assert list(music) == ["real clips", "1 codebook", "2 codebooks"]
    assert "| 2 codebooks |" in (tmp_path / "codec_eval.md").read_text()
    assert (tmp_path / "spectrograms.png").stat().st_size > 1000
    assert report["encode_x_realtime"] > 0 and report["decode_x_realtime"] > 0
    entries = [ManifestIndex(embedded_manifest, "train")[i] for i in range(2)]
    wants = [asked(e["caption"], e["attributes"]) for e in entries]
    for row in music.values():
        assert row["clips"] == 2
        assert row["key_n"] == sum(bool(w.key) for w in wants)
        assert row["tempo_n"] == sum(bool(w.bpm and w.has_drums) for w in wants)
        assert -1 <= row["clap"] <= 1
    # The real row, by hand: what the codec is given (mono, -16 LUFS, at 44.1 kHz),
    # scored by eval generate's functions.
    judge = Judge.from_pretrained(judge_debug[0])
    clips = [scoring.Clip(e, e["caption"], "caption", w, np.zeros((1, 0)))
             for e, w in zip(entries, wants, strict=True)]  # fmt: skip
    real = []
    for e in entries:
        wav, _ = audio.load_audio(e["path"], sample_rate=scoring.REAL_RATE, channels=1,
                                  duration=SECONDS)  # fmt: skip
        real.append(np.clip(loudness.normalize_loudness(wav, scoring.REAL_RATE, -16.0), -1, 1))
    text = judge.text_embeddings([e["caption"] for e in entries])
    config = scoring.GenerateEvalConfig()
    by_hand = scoring.summarise(scoring.measure(real, scoring.REAL_RATE, clips, judge, text),
                                clips, config, instruments=judge.instruments)  # fmt: skip
    assert music["real clips"]["clap"] == pytest.approx(by_hand["clap"], abs=1e-5)
    for name in ("key_match", "tempo_match", "instruments_match"):
        assert music["real clips"].get(name) == by_hand.get(name)
    # The 2-codebook row, by hand: each clip through the codec, back at 44.1 kHz.
    codec = Codec.from_pretrained(checkpoint)
    decoded = []
    for wav in real:
        low = audio.resample(wav, scoring.REAL_RATE, codec.sample_rate)
        out = codec.decode(codec.encode(low)[:2], num_samples=low.shape[-1])
        decoded.append(audio.resample(out, codec.sample_rate, scoring.REAL_RATE))
    round_trip = scoring.measure(decoded, scoring.REAL_RATE, clips, judge, text)
    assert music["2 codebooks"]["clap"] == pytest.approx(
        float(np.mean(round_trip.clap_N)), abs=1e-5
    )
    assert music["2 codebooks"]["clap"] != pytest.approx(music["real clips"]["clap"], abs=1e-3)
