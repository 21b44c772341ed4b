"""Every experiment file loads, with and without `:debug`, into a config the launcher
accepts; the codec recipes have their anchors' shapes."""

from pathlib import Path

import pytest

from mgcore.config import ConfigError, load_experiment
from musicgen.train import _check_root

EXPERIMENTS = sorted(Path(__file__).resolve().parents[1].glob("experiments/*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_loads_with_a_debug_variant_that_is_small(path):
    full = load_experiment(str(path))
    debug = load_experiment(f"{path}:debug")
    for config in (full, debug):
        _check_root(config, str(path))
    assert debug.family == full.family
    assert debug.train.steps <= 10 < full.train.steps


@pytest.mark.parametrize(
    ("name", "sample_rate", "frame_rate", "codebooks", "size", "kbps"),
    [
        ("codec_tiny", 16000, 50.0, 4, 1024, 2.0),
        ("codec_vocos", 16000, 50.0, 4, 1024, 2.0),  # <= 200 tokens/s and 2.5 kbps
        ("codec_32k", 32000, 50.0, 4, 2048, 2.2),  # MusicGen's EnCodec tokenizer
        ("codec_44k", 44100, 44100 / 512, 9, 1024, 7.752),  # DAC 44.1 kHz
    ],
)
def test_codec_recipes_have_their_anchors_shapes(
    name, sample_rate, frame_rate, codebooks, size, kbps
):
    model = load_experiment(f"experiments/{name}.py").model
    assert model.sample_rate == sample_rate and model.frame_rate == pytest.approx(frame_rate)
    assert (model.num_codebooks, model.quantizer.codebook_size) == (codebooks, size)
    assert model.bitrate() / 1000 == pytest.approx(kbps, abs=1e-3)


@pytest.mark.parametrize("quantizer", ["ema", "factorized", "fsq"])
def test_codec_vocos_quantizers_keep_the_token_budget(quantizer):
    model = load_experiment(f"experiments/codec_vocos.py:quantizer={quantizer}").model
    assert model.quantizer.kind == quantizer and model.num_codebooks * model.frame_rate == 200
    assert 1.99 <= model.bitrate() / 1000 <= 2.0  # FSQ's 1000 entries: 1.993 kbps


def test_codec_vocos_names_its_quantizers_on_a_wrong_one():
    with pytest.raises(ConfigError, match="quantizer='rvq': choose one of factorized, ema, fsq"):
        load_experiment("experiments/codec_vocos.py:quantizer=rvq")
    assert load_experiment("experiments/codec_vocos.py").model.quantizer.kind == "ema"


@pytest.mark.parametrize(
    ("arg", "layers", "dim", "heads"),
    [("small", 24, 1024, 16), ("medium", 48, 1536, 24), ("large", 48, 2048, 32)],
)
def test_lm_recipe_has_musicgens_sizes(arg, layers, dim, heads):
    config = load_experiment(f"experiments/lm_musicgen.py:{arg}")
    model = config.model
    assert (model.layers, model.width, model.heads, model.hidden) == (layers, dim, heads, 4 * dim)
    assert (model.num_codebooks, model.card, model.pattern.kind) == (4, 2048, "delay")
    assert config.data.seconds == 30.0 and config.data.caption_dropout == 0.3


@pytest.mark.parametrize("stage", ["codec", "judge", "refiner", "lm"])
def test_reference_stages_share_one_dataset_and_one_codec(stage):
    config = load_experiment(f"experiments/reference.py:{stage}")
    debug = load_experiment(f"experiments/reference.py:{stage},debug")
    assert debug.family == config.family and debug.train.steps <= 10
    assert config.data.manifest == "data/embedded_16h/manifest.jsonl"
    if stage in ("refiner", "lm"):
        assert config.data.codec == "runs/reference/codec"
    if stage == "codec":  # reconstruction only (the module docstring says why)
        assert config.model.vocos.encoder_input == "magnitude"
        assert config.loss.adversarial_start > config.train.steps
    if stage == "lm":
        assert config.model.controls and config.data.tokens == "data/tokens/reference"
    with pytest.raises(ValueError, match="name one stage"):
        load_experiment("experiments/reference.py:codec,lm")


def test_finetune_style_split_holds_one_style_out(embedded_manifest, tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("finetune_style", "experiments/finetune_style.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = [json.loads(line) for line in Path(embedded_manifest).read_text().splitlines()]
    style = next(e["attributes"]["genre"] for e in lines if e["split"] == "train")
    mine = [e for e in lines if e["attributes"]["genre"] == style]
    counts = module.split(embedded_manifest, style, 0.01, str(tmp_path))  # one clip's worth
    assert counts["finetune"]["clips"] == 1
    assert counts["heldout"]["clips"] == len(mine) - 1
    assert counts["without"]["clips"] == len(lines) - len(mine)
    tuned = sorted(tmp_path.glob("finetune/*"))
    assert [p.suffix for p in tuned] == [".flac", ".txt"]
    assert tuned[1].read_text().strip() in {e["caption"] for e in mine if e["split"] == "train"}
    held = [json.loads(x) for x in (tmp_path / "heldout/manifest.jsonl").read_text().splitlines()]
    assert all(e["split"] == "test" and e["attributes"]["genre"] == style for e in held)
