"""`musicgen eval codec`: the table's numbers are the metrics of the decoded clips."""

import json

import flax.nnx as nnx
import numpy as np
import pytest

from codec.api import Codec
from codec.eval import REFERENCE_RATE, evaluate_codec
from codec.model import CodecConfig, CodecModel
from codec.quantizer import QuantizerConfig
from codec.seanet import SEANetConfig
from mgcore import audio, audio_metrics, loudness
from mgcore.data.manifest import ManifestIndex
from musicgen import cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = CodecConfig(
        sample_rate=16000,
        seanet=SEANetConfig.dac(
            n_filters=4, ratios=(2, 4, 4, 10), dimension=16, decoder_dim=16, n_residual_layers=1
        ),
        quantizer=QuantizerConfig(kind="factorized", num_codebooks=3, codebook_size=32, dim=16),
    )
    with nnx.use_eager_sharding(False):
        codec = Codec(CodecModel(config, rngs=nnx.Rngs(0)))
    return str(codec.save_pretrained(tmp_path_factory.mktemp("codec") / "c"))


def test_report_numbers_are_the_metrics_of_the_decodings(checkpoint, manifest):
    report = evaluate_codec(checkpoint, manifest, split="train", max_clips=2, seconds=0.5,
                            n_codebooks=(1, 2), progress=False)  # fmt: skip
    assert report.clips == 2 and sorted(report.per_codebooks) == [1, 2]
    assert report.per_codebooks[2]["kbps"] == pytest.approx(50 * 2 * 5 / 1000)
    assert len(report.perplexity) == 3 and all(1 <= p <= 32 for p in report.perplexity)
    assert all(0 < u <= 1 for u in report.used_fraction)
    # Clip 0 and 1 again, by hand: the means in the report are theirs.
    codec = Codec.from_pretrained(checkpoint)
    sums = dict.fromkeys(("si_sdr", "mel", "lsd"), 0.0)
    for i in range(2):
        path = ManifestIndex(manifest, "train")[i]["path"]
        original, _ = audio.load_audio(path, sample_rate=REFERENCE_RATE, channels=1, duration=0.5)
        original = np.clip(loudness.normalize_loudness(original, REFERENCE_RATE, -16.0), -1, 1)
        wav = audio.resample(original, REFERENCE_RATE, 16000)
        decoded = codec.decode(codec.encode(wav)[:2], num_samples=wav.shape[-1])
        sums["si_sdr"] += float(audio_metrics.si_sdr(decoded[None], wav[None])[0]) / 2
        sums["mel"] += float(audio_metrics.mel_distance(decoded[None], wav[None], 16000)[0]) / 2
        up = audio.resample(decoded, 16000, REFERENCE_RATE)[None, :, : original.shape[-1]]
        sums["lsd"] += float(audio_metrics.log_spectral_distance(
            up, original[None, :, : up.shape[-1]], REFERENCE_RATE, min_hz=8000)[0]) / 2  # fmt: skip
    got = report.per_codebooks[2]
    assert got["si_sdr"] == pytest.approx(sums["si_sdr"], rel=1e-5)
    assert got["mel_distance"] == pytest.approx(sums["mel"], rel=1e-5)
    assert got["lsd_above_8khz"] == pytest.approx(sums["lsd"], rel=1e-5)


def test_cli_writes_json_and_markdown(checkpoint, manifest, tmp_path, capsys):
    args = ["eval", "codec", "--checkpoint", checkpoint, "--manifest", manifest, "--split",
            "train", "--clips", "1", "--seconds", "0.5", "--codebooks", "1", "3",
            "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0
    table = capsys.readouterr().out
    assert "| 1 | 0.25 |" in table and "| 3 | 0.75 |" in table
    saved = json.loads((tmp_path / "codec_eval.json").read_text())
    assert sorted(saved["per_codebooks"]) == ["1", "3"] and saved["clips"] == 1
    assert (tmp_path / "codec_eval.md").read_text().count("\n| ") >= 5
    assert cli.main(["eval", "codec", "--checkpoint", str(tmp_path / "none"), "--manifest",
                     manifest]) == 1  # fmt: skip
    assert "is not a folder" in capsys.readouterr().err
