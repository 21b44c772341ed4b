"""`mgcore.hf`: config.json, single and sharded safetensors, the tensor tracker, the fill."""

import json
import re

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from mgcore.hf import (
    Tensors,
    converting,
    field,
    fill,
    model_type,
    read_config,
    read_json,
    read_tensors,
)
from mgcore.weights import PretrainedError


class OtherError(PretrainedError):
    """Stands for a caller's own error class (the text encoders' `TextEncoderError`)."""


def test_read_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    assert read_config(tmp_path) == {"model_type": "t5", "d_model": 8}

    missing = tmp_path / "none"
    message = f"{missing}/config.json is missing; the folder must hold the model's config.json"
    with pytest.raises(PretrainedError, match=f"^{re.escape(message)}$"):
        read_config(missing)
    with pytest.raises(OtherError, match="is missing"):
        read_config(missing, OtherError)

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PretrainedError, match=r"config\.json can't be read \(.*\); save the model"):
        read_config(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(OtherError, match=r"list\.json holds a JSON list, not an object"):
        read_json(tmp_path / "list.json", OtherError)


def test_read_tensors_single_and_sharded(tmp_path):
    a, b = np.arange(3, dtype=np.float32), np.ones((2, 2), np.float16)
    save_file({"a": a, "b": b}, str(tmp_path / "model.safetensors"))
    tensors = read_tensors(tmp_path)
    assert sorted(tensors) == ["a", "b"] and tensors["b"].dtype == np.float16
    np.testing.assert_array_equal(tensors["a"], a)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"a": a}, str(sharded / "one.safetensors"))
    save_file({"b": b}, str(sharded / "two.safetensors"))
    index = {"weight_map": {"a": "one.safetensors", "b": "two.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    tensors = read_tensors(sharded)
    assert sorted(tensors) == ["a", "b"]
    np.testing.assert_array_equal(tensors["b"], b)

    (sharded / "two.safetensors").write_bytes(b"garbage")
    with pytest.raises(OtherError, match=r"two\.safetensors can't be read \(.*\); save the model"):
        read_tensors(sharded, OtherError)
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(PretrainedError, match=r"index\.json lists no weight_map"):
        read_tensors(sharded)
    empty = tmp_path / "empty"
    empty.mkdir()
    message = (
        f"{empty} holds no model.safetensors (nor model.safetensors.index.json); save the "
        "model with safetensors (transformers' save_pretrained does by default)"
    )
    with pytest.raises(PretrainedError, match=f"^{re.escape(message)}$"):
        read_tensors(empty)


def test_model_type_never_raises(tmp_path):
    assert model_type(tmp_path / "none") is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dac"}))
    assert model_type(tmp_path) is None  # no weights
    save_file({"a": np.zeros(1, np.float32)}, str(tmp_path / "model.safetensors"))
    assert model_type(tmp_path) == "dac"
    (tmp_path / "config.json").write_text("[]")
    assert model_type(tmp_path) is None
    (tmp_path / "config.json").write_text("{")
    assert model_type(tmp_path) is None


def test_tensors_track_what_the_conversion_took():
    src = Tensors({"a": np.array([1, 2], np.int64), "b": np.zeros(2), "c": np.zeros(1)}, "ckpt")
    assert src.has("a") and not src.has("z")
    taken = src.take("a")
    assert taken.dtype == np.float32 and taken.tolist() == [1.0, 2.0]
    assert src.unused() == ["b", "c"] and src.unused(lambda n: n == "c") == ["b"]
    message = (
        "2 tensors of ckpt map to nothing in the model its config.json describes, "
        "e.g. ['b', 'c']; is config.json from the same model?"
    )
    with pytest.raises(PretrainedError, match=f"^{re.escape(message)}$"):
        src.check_all_used()
    src.check_all_used(lambda n: n in ("b", "c"))

    strict = Tensors({}, "ckpt", OtherError)
    message = (
        "ckpt lacks tensor 'z', which its config.json implies; is config.json from the same model?"
    )
    with pytest.raises(OtherError, match=f"^{re.escape(message)}$"):
        strict.take("z")


def test_fill_is_fill_model_with_the_hint():
    def make():
        return nnx.Linear(2, 3, rngs=nnx.Rngs(0))

    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = fill(make, {"kernel": kernel, "bias": np.ones(3, np.float32)}, "w")
    np.testing.assert_array_equal(model.kernel[...], kernel)
    np.testing.assert_array_equal(model.bias[...], np.ones(3))

    message = "w: weight bias has shape (2,), the config needs (3,); is config.json from"
    with pytest.raises(OtherError, match=f"^{re.escape(message)}"):
        fill(make, {"kernel": kernel, "bias": np.ones(2, np.float32)}, "w", OtherError)
    with pytest.raises(PretrainedError, match=r"w: 1 weights fill no variable, e\.g\. \['x'\]"):
        fill(make, {"kernel": kernel, "bias": np.ones(3), "x": np.ones(1)}, "w")


def test_read_tensors_refuses_non_finite_tensors_and_shards_outside_the_folder(tmp_path):
    bad = np.array([1.0, np.inf], np.float32)
    save_file({"a": np.zeros(2, np.float32), "b": bad}, str(tmp_path / "model.safetensors"))
    message = f"{tmp_path}/model.safetensors: tensor 'b' holds 1 NaN or infinite values of 2"
    with pytest.raises(OtherError, match=f"^{re.escape(message)}"):
        read_tensors(tmp_path, OtherError)
    assert list(read_tensors(tmp_path, keep=lambda name: name == "a")) == ["a"]  # b never read

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    index = {"weight_map": {"a": "../model.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(
        PretrainedError, match=r"weight_map names '\.\./model\.safetensors'.*outside"
    ):
        read_tensors(sharded)


def test_config_fields_are_typed_and_a_bad_one_is_one_line_naming_the_file():
    fields = {"layers": 4, "eps": 1e-5, "rate": 16000.0, "flag": True, "name": "x"}
    assert field(fields, "layers", int) == 4 and field(fields, "eps", float) == 1e-5
    assert field(fields, "missing", int, 7) == 7
    for key, kind, message in (
        ("rate", int, "field 'rate' must be an integer, got 16000.0"),
        ("flag", int, "field 'flag' must be an integer, got True"),
        ("name", float, "field 'name' must be a finite number, got 'x'"),
        ("missing", int, "field 'missing' is missing"),
    ):
        with pytest.raises(OtherError, match=f"^hf/config.json: {re.escape(message)}$"):
            with converting("hf/config.json", OtherError):
                field(fields, key, kind)
    with pytest.raises(PretrainedError, match=r"^hf/config\.json lacks the field 'd_model'"):
        with converting("hf/config.json"):
            fields["d_model"]
    with pytest.raises(PretrainedError, match=r"^hf/config\.json: float division by zero$"):
        with converting("hf/config.json"):
            1.0 / fields["layers"] / 0
