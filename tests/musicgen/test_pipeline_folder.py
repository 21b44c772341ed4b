"""A pipeline folder is checked before use: its JSON files into typed, range-checked
configs (one line naming the file and the field), the paths it names kept inside it, and
every tensor finite and matching its checksum. The adversarial probes of issue 18, then
properties over mutated JSON and tensors: loading succeeds or raises `PretrainedError` /
`ConfigError` in one line, never anything else."""

import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from codec.model import CodecConfig
from diffusion.refiner.model import CoarseConfig, RefinerConfig
from mgcore.config import from_dict, load_experiment
from mgcore.config_types import ConfigError
from mgcore.weights import PretrainedError
from musicgen import cli
from musicgen.evaluation.judge.model import JudgeConfig
from musicgen.lm.api import LanguageModel
from musicgen.lm.model import LMConfig
from musicgen.lm.patterns import PatternConfig
from musicgen.pipeline import MusicGen
from musicgen.pipeline_folder import PipelineSettings, check_pipeline_folder
from musicgen.text import TextConfig, TextEncoderError
from musicgen.text.bert import BertConfig, minilm_folder
from musicgen.text.files import TOKENIZER_FILE
from musicgen.text.t5 import T5Config

JSON_FILES = ("pipeline.json", "lm/lm.json", "refiner/refiner.json", "refiner/codec/codec.json")
WEIGHT_FILES = ("lm/model.safetensors", "refiner/model.safetensors",
                "refiner/codec/model.safetensors")  # fmt: skip


@pytest.fixture(scope="module")
def saved(tiny_pipeline_folder):
    """The tiny pipeline's folder (saved once a session): copied before any change."""
    return tiny_pipeline_folder


def _copy(saved: Path, parent: Path) -> Path:
    return Path(shutil.copytree(saved, Path(tempfile.mkdtemp(dir=parent)) / "pipe"))


def _edit(folder: Path, name: str, change) -> None:
    path = folder / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _with(section: str, **values):
    return lambda meta: {**meta, section: {**meta[section], **values}}


def _one_line_refusal(folder: Path) -> str:
    with pytest.raises((PretrainedError, ConfigError)) as info:
        MusicGen.from_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------- the probes
def _ratios(meta):
    seanet = {**meta["config"]["seanet"], "ratios": [2, 0, 4, 10]}
    return {**meta, "config": {**meta["config"], "seanet": seanet}}


PROBES = {
    "pipeline.json a list": ("pipeline.json", lambda m: [m], r"pipeline\.json holds a JSON list"),
    "pipeline.json lacks max_duration": (
        "pipeline.json",
        lambda m: {k: v for k, v in m.items() if k != "max_duration"},
        r"pipeline\.json: .*lacks required key 'max_duration'",
    ),
    "unknown sampling key": (
        "pipeline.json", _with("sampling", top_q=0.5), r"pipeline\.json: .*'sampling\.top_q'",
    ),
    "top_k lots": (
        "pipeline.json", _with("sampling", top_k="lots"), r"pipeline\.json: .*'sampling\.top_k'",
    ),
    "a negative temperature": (
        "pipeline.json",
        _with("sampling", temperature=-1.0),
        r"pipeline\.json: sampling temperature must be",
    ),
    "max_duration NaN": (
        "pipeline.json",
        lambda m: {**m, "max_duration": math.nan},
        r"pipeline\.json: .*max_duration",
    ),
    "max_duration 1e308": (
        "pipeline.json",
        lambda m: {**m, "max_duration": 1e308},
        r"pipeline\.json: PipelineSettings\.max_duration must be in \(0, 3600\]",
    ),
    "num_layers 100000": (
        "lm/lm.json", _with("config", num_layers=100000), r"lm\.json: LMConfig\.num_layers must",
    ),
    "num_layers within bounds, not the weights'": (
        "lm/lm.json", _with("config", num_layers=400), r"holds 1 layers but the config's num_lay",
    ),
    "a zero codec ratio": (
        "refiner/codec/codec.json", _ratios, r"codec/codec\.json: CodecConfig\.seanet\.ratios\[1\]",
    ),
    "text.path escaping": (
        "lm/lm.json", _with("text", path="../../../../etc"), r"lm\.json field text\.path .*outside",
    ),
    "text.path absolute": (
        "lm/lm.json", _with("text", path="/etc"), r"lm\.json field text\.path names '/etc'.*outs",
    ),
    "another codec's LM": (
        "lm/lm.json", _with("config", card=128), r"lm is not the LM of .*128 codes",
    ),
    "refiner window overlap": (
        "refiner/refiner.json",
        lambda m: {**m, "overlap_seconds": 1e9},
        r"refiner\.json: SavedFields\.overlap_seconds must be in",
    ),
    "lm.json a nested list": (
        "lm/lm.json", lambda m: json.loads("[" * 10 + "]" * 10), r"lm\.json holds a JSON list",
    ),
}  # fmt: skip


@pytest.mark.parametrize("probe", PROBES, ids=list(PROBES))
def test_a_probe_is_refused_in_one_line_naming_file_and_field(saved, tmp_path, probe):
    name, change, pattern = PROBES[probe]
    folder = _copy(saved, tmp_path)
    _edit(folder, name, change)
    message = _one_line_refusal(folder)
    assert re.search(pattern, message), message


def test_a_deeply_nested_or_huge_json_file_is_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "lm" / "lm.json").write_text("[" * 100_000)
    assert "lm.json is not valid JSON" in _one_line_refusal(folder)
    (folder / "lm" / "lm.json").write_text(" " * (17 << 20))
    assert "too large for a config file" in _one_line_refusal(folder)


def _patch(path: Path, offset: int, change) -> None:
    """Rewrites 64 KB (or what there is) of the data section from `offset` on."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little") + offset
    block = np.frombuffer(bytes(data[start : start + 65536]), np.uint8)
    data[start : start + len(block)] = change(block).tobytes()
    path.write_bytes(bytes(data))


def test_nan_bytes_or_flipped_bytes_in_the_weights_are_refused(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    weights = folder / "lm" / "model.safetensors"
    _patch(weights, 0, lambda b: np.full(len(b) // 4, np.nan, np.float32).view(np.uint8))
    assert re.search(r"lm/model\.safetensors: tensor '.*' holds \d+ NaN", _one_line_refusal(folder))

    folder = _copy(saved, tmp_path)
    weights = folder / "lm" / "model.safetensors"
    _patch(weights, 0, lambda b: b ^ np.uint8(1))  # the lowest mantissa bits: still finite
    message = _one_line_refusal(folder)
    assert re.search(r"lm/model\.safetensors does not match its checksum", message), message

    for change in (lambda d: d[:-100], lambda d: d + b"\0" * 100):  # length vs its header
        folder = _copy(saved, tmp_path)
        weights = folder / "refiner" / "codec" / "model.safetensors"
        weights.write_bytes(change(weights.read_bytes()))
        assert "codec/model.safetensors can't be read" in _one_line_refusal(folder)


def test_the_cli_refuses_a_broken_folder_in_one_line(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path)
    _edit(folder, "lm/lm.json", _with("config", num_layers=100000))
    out = tmp_path / "out.wav"
    argv = ["generate", "x", "--checkpoint", str(folder), "--duration", "0.2", "--no-progress",
            "-o", str(out)]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lm.json: LMConfig.num_layers must be in [1, 512]" in err[0], err
    assert not out.exists()


# ---------------------------------------------------------------------------- what loads
def test_settings_round_trip_and_a_folder_without_checksums_still_loads(saved, tmp_path):
    settings = check_pipeline_folder(saved)
    assert isinstance(settings, PipelineSettings)
    assert (settings.max_duration, settings.sampling.top_k, settings.refine_steps) == (2.0, 20, 2)
    folder = _copy(saved, tmp_path)
    for name in WEIGHT_FILES:  # as written before checksums were kept
        path = folder / name
        with safe_open(str(path), framework="numpy") as f:
            flat = {k: f.get_tensor(k) for k in f.keys()}
        save_file(flat, str(path), metadata={"format": "x"})
    loaded = MusicGen.from_pretrained(folder)
    assert (loaded.max_duration, loaded.sampling, loaded.refine_steps) == (
        2.0, settings.sampling, 2,
    )  # fmt: skip


def test_settings_that_could_not_be_loaded_are_not_saved(tiny_pipeline, tmp_path):
    tiny = tiny_pipeline
    bad = MusicGen(tiny.lm, tiny.codec, tiny.refiner)
    bad.max_duration = 1e6
    with pytest.raises(ConfigError, match=r"max_duration must be in \(0, 3600\]"):
        bad.save_pretrained(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_text_encoder_folder_is_copied_into_the_saved_lm(tiny_pipeline, tmp_path):
    """An encoder named by a path travels with the LM (config.json, tokenizer.json and its
    tensors) and is read back from inside the folder; the installed MiniLM is not copied."""
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    shutil.copyfile(minilm_folder() / TOKENIZER_FILE, encoder / TOKENIZER_FILE)
    save_file({"bert.w": np.ones(3, np.float32)}, str(encoder / "model.safetensors"))
    lm = tiny_pipeline.lm
    named = LanguageModel(lm.model, TextConfig(path=str(encoder)), lm.window_seconds,
                          lm.frame_rate)  # fmt: skip
    folder = named.save_pretrained(tmp_path / "lm")
    assert json.loads((folder / "lm.json").read_text())["text"]["path"] == "text"
    assert sorted(p.name for p in (folder / "text").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json",
    ]  # fmt: skip
    loaded = LanguageModel.from_pretrained(folder)
    assert loaded.text_config.path == str((folder / "text").resolve())
    shutil.rmtree(folder / "text")
    with pytest.raises(TextEncoderError, match=r"lm\.json field text\.path.*does not exist"):
        LanguageModel.from_pretrained(folder)
    assert not (tmp_path / "plain").exists()
    lm.save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / "text").exists()


# ---------------------------------------------------------------------------- the configs
@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: LMConfig(num_layers=100000), r"LMConfig\.num_layers must be in \[1, 512\]"),
        (lambda: LMConfig(dim=30, num_heads=4), "not a multiple of 4 heads"),
        (lambda: LMConfig(dropout=math.nan), r"LMConfig\.dropout must be in \[0, 1\)"),
        (lambda: LMConfig(num_codebooks=2, pattern=PatternConfig(delays=(0, 1, 2))), "3 delays"),
        (lambda: CodecConfig(sample_rate=100), r"CodecConfig\.sample_rate must be in"),
        (lambda: CoarseConfig(hop_length=0), r"CoarseConfig\.hop_length must be in"),
        (lambda: RefinerConfig(noise_dim=15), "noise_dim must be even"),
        (lambda: JudgeConfig(width=100, heads=3), "not a multiple of 3"),
        (lambda: JudgeConfig(window_seconds=math.inf), r"JudgeConfig\.window_seconds"),
        (lambda: TextConfig(max_length=10**9), "use at most 8192"),
        (lambda: BertConfig(num_layers=0), r"BertConfig\.num_layers must be in"),
        (lambda: T5Config(1, 8, 4, 2, 1, 8, layer_norm_epsilon=-1.0), r"layer_norm_epsilon"),
    ],
)
def test_config_bounds_are_one_line_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert isinstance(info.value, ConfigError | PretrainedError)


def test_the_full_size_recipes_are_within_bounds():
    for size in ("small", "medium", "large"):
        model = load_experiment(f"experiments/lm_musicgen.py:{size}").model
        assert from_dict(LMConfig, {"size": size, "text_dim": 768}).layers == model.layers
    for name in ("codec_32k", "codec_44k", "refiner_encodec32"):
        assert load_experiment(f"experiments/{name}.py").model is not None


def test_hugging_face_config_fields_are_checked_in_one_line():
    with pytest.raises(TextEncoderError, match=r"^enc/config\.json: field 'hidden_size' must be"):
        BertConfig.from_hf({"hidden_size": "wide"}, "enc/config.json")
    with pytest.raises(TextEncoderError, match=r"^t5/config\.json: field 'd_kv' is missing"):
        T5Config.from_hf({"vocab_size": 8, "d_model": 8}, "t5/config.json")
    with pytest.raises(TextEncoderError, match=r"T5Config\.num_layers must be in \[1, 512\]"):
        T5Config.from_hf({"vocab_size": 8, "d_model": 8, "d_kv": 4, "num_heads": 2,
                          "num_layers": 10**6, "d_ff": 8})  # fmt: skip


# ---------------------------------------------------------------------------- properties
def _paths(node, prefix=()):
    """Every (key path) into a JSON tree, leaves and sections alike."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()  # fmt: skip
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _json_cases(folder: Path) -> list[tuple[str, tuple]]:
    return [(name, path) for name in JSON_FILES
            for path in _paths(json.loads((folder / name).read_text()))]  # fmt: skip


BAD_VALUES = st.sampled_from(
    [None, math.nan, math.inf, -math.inf, 1e308, -1, 0, -0.5, 10**30, 3, 0.25, "lots", "",
     True, [], {}, [1, 2], {"x": 1}, [[[]]]]
)  # fmt: skip
MUTATIONS = st.one_of(
    st.tuples(st.just("set"), BAD_VALUES),
    st.tuples(st.just("drop"), st.none()),
    st.tuples(st.just("unknown key"), st.none()),
    st.tuples(st.just("wrap in a list"), st.none()),
)


def _mutate(tree, path, mutation):
    kind, value = mutation
    if not path:
        return {"format": 1} if kind == "drop" else [tree] if kind != "set" else value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if kind == "set":
        parent[key] = value
    elif kind == "drop":
        del parent[key]
    elif kind == "unknown key" and isinstance(parent[key], dict):
        parent[key]["surprise"] = 1
    elif kind == "unknown key" and isinstance(parent, dict):
        parent["surprise"] = 1
    else:  # wrapped in a list (or, in a list, a key where a number was)
        parent[key] = [parent[key]] if kind == "wrap in a list" else {"surprise": 1}
    return tree


@given(data=st.data(), mutation=MUTATIONS)
def test_mutated_json_loads_or_is_refused_in_one_line(saved, tmp_path, data, mutation):
    name, path = data.draw(st.sampled_from(_json_cases(saved)))
    folder = _copy(saved, tmp_path)
    tree = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps(_mutate(tree, path, mutation)))
    try:
        MusicGen.from_pretrained(folder)
    except (PretrainedError, ConfigError) as err:
        assert "\n" not in str(err) and str(err)
    finally:
        shutil.rmtree(folder.parent)


@given(
    data=st.data(),
    value=st.sampled_from([math.nan, math.inf, -math.inf, 1.0, -3.5]),
    keep_checksum=st.booleans(),
)
def test_mutated_tensors_are_refused_naming_the_file(saved, tmp_path, data, value, keep_checksum):
    name = data.draw(st.sampled_from(WEIGHT_FILES))
    folder = _copy(saved, tmp_path)
    path = folder / name
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        flat = {k: f.get_tensor(k) for k in f.keys()}
    floats = sorted(k for k, v in flat.items() if v.dtype.kind == "f" and v.size)
    tensor = data.draw(st.sampled_from(floats))
    array = flat[tensor].copy().reshape(-1)
    index = data.draw(st.integers(0, array.size - 1))
    if array[index] == value:
        value = 2.0 * value + 1.0
    array[index] = value
    flat[tensor] = array.reshape(flat[tensor].shape)
    if math.isfinite(value):
        keep_checksum = True  # else a finite change that no check can see: it would load
    save_file(flat, str(path), metadata=metadata if keep_checksum else {"format": "x"})
    try:
        message = _one_line_refusal(folder)
        assert name in message
        if not math.isfinite(value):
            assert f"tensor {tensor!r} holds 1 NaN or infinite values" in message
        else:
            assert "does not match its checksum" in message
    finally:
        shutil.rmtree(folder.parent)
