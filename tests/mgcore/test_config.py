"""Tests for mgcore.config: experiment loading, typed overrides, save and reload."""

import dataclasses
import json
import math
import pathlib
import re
import textwrap

import numpy as np
import pytest

from mgcore.bounds import check_number, within
from mgcore.config import (
    ConfigError,
    apply_overrides,
    describe,
    from_dict,
    load_experiment,
    load_saved_config,
    parse_arg,
    save_config,
    to_dict,
)

EXPERIMENT = textwrap.dedent(
    """
    from __future__ import annotations

    import dataclasses
    from typing import Literal

    from mgcore.config import parse_arg


    @dataclasses.dataclass(frozen=True)
    class Model:
        dim: int = 512
        heads: int = 8
        norm: Literal["rms", "layer"] = "rms"
        dropout: float = 0.1
        channels: tuple[int, ...] = (64, 128, 256)


    @dataclasses.dataclass(frozen=True)
    class Train:
        steps: int = 100_000
        lr: float = 3e-4
        warmup: int | None = None
        bf16: bool = True
        tags: tuple[str, ...] = ("lm",)
        name: str = "lm"

        def __post_init__(self):
            if self.steps <= 0:
                raise ValueError("steps must be positive")


    @dataclasses.dataclass(frozen=True)
    class Config:
        model: Model = Model()
        train: Train = Train()
        seed: int = 0


    def get_config(arg: str) -> Config:
        args = parse_arg(arg, known=("size", "debug"))
        sizes = {"small": 256, "base": 512, "large": 1024}
        config = Config(model=Model(dim=sizes[args.get("size", "base")]))
        if args.get("debug") == "true":
            config = dataclasses.replace(
                config,
                model=dataclasses.replace(config.model, dim=16, heads=2, channels=(4, 8)),
                train=dataclasses.replace(config.train, steps=2, bf16=False),
            )
        return config
    """
)


@dataclasses.dataclass(frozen=True)
class Plain:
    rates: tuple[float, ...] = ()
    path: pathlib.Path = pathlib.Path("data")


@pytest.fixture
def exp(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "lm.py"
    path.write_text(EXPERIMENT)
    return str(path)


def _message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- parse_arg and variants


def test_parse_arg():
    assert parse_arg("") == {}
    assert parse_arg("size=small,debug") == {"size": "small", "debug": "true"}
    assert parse_arg(" size = large , ") == {"size": "large"}


def test_parse_arg_rejects_unknown_with_suggestion():
    with pytest.raises(ConfigError) as excinfo:
        parse_arg("sise=small", known=("size", "debug"))
    assert _message(excinfo) == (
        "unknown config argument 'sise'; did you mean 'size'?; this experiment accepts: debug, size"
    )


def test_variants(exp):
    base = load_experiment(exp)
    assert base.model.dim == 512 and base.model.heads == 8 and base.train.steps == 100_000
    assert load_experiment(exp + ":size=small").model.dim == 256
    debug = load_experiment(exp + ":debug")
    assert (debug.model.dim, debug.model.heads, debug.model.channels) == (16, 2, (4, 8))
    assert (debug.train.steps, debug.train.bf16) == (2, False)
    both = load_experiment(exp + ":size=small,debug")
    assert both.model.dim == 16 and both.train.steps == 2
    assert load_experiment(exp + ":size=large").model.dim == 1024


def test_loading_twice_gives_equal_configs(exp):
    assert load_experiment(exp) == load_experiment(exp)


# ---------------------------------------------------------------- overrides


def test_overrides_of_each_type(exp):
    config = load_experiment(
        exp,
        [
            "model.dim=3",
            "model.dropout=3",
            "train.lr=1e-4",
            "train.bf16=FALSE",
            "train.warmup=500",
            "model.norm=layer",
            "model.channels=1,2,3",
            "train.tags=(' a', 'b,c')",
            "train.name=hello world",
            "seed=7",
        ],
    )
    assert config.model.dim == 3
    assert config.model.dropout == 3.0 and isinstance(config.model.dropout, float)
    assert config.train.lr == 1e-4
    assert config.train.bf16 is False
    assert config.train.warmup == 500
    assert config.model.norm == "layer"
    assert config.model.channels == (1, 2, 3)
    assert config.train.tags == (" a", "b,c")
    assert config.train.name == "hello world"
    assert config.seed == 7
    # Untouched fields keep their values.
    assert config.model.heads == 8 and config.train.steps == 100_000


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("Yes", True), ("1", True), ("no", False), ("0", False), ("False", False)],
)
def test_bool_spellings(exp, text, value):
    assert load_experiment(exp, [f"train.bf16={text}"]).train.bf16 is value


def test_optional_and_tuple_forms(exp):
    config = load_experiment(exp, ["train.warmup=10"])
    assert apply_overrides(config, ["train.warmup=none"]).train.warmup is None
    assert apply_overrides(config, ["train.warmup=NULL"]).train.warmup is None
    assert apply_overrides(config, ["model.channels=(1, 2)"]).model.channels == (1, 2)
    assert apply_overrides(config, ["model.channels=[5]"]).model.channels == (5,)
    assert apply_overrides(config, ["model.channels=7"]).model.channels == (7,)
    assert apply_overrides(config, ["model.channels="]).model.channels == ()
    assert apply_overrides(config, ["train.tags=a, b"]).train.tags == ("a", "b")


def test_last_override_wins_and_frozen_kept(exp):
    config = load_experiment(exp, ["train.steps=5", "train.steps=9"])
    assert config.train.steps == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.steps = 1  # type: ignore[misc]
    assert dataclasses.is_dataclass(config.train)
    assert type(config).__dataclass_params__.frozen


def test_overrides_applied_in_one_rebuild(exp):
    # __post_init__ rejects steps <= 0 only on the final result, and the input is untouched.
    base = load_experiment(exp)
    config = apply_overrides(base, ["train.steps=0", "train.steps=4"])
    assert config.train.steps == 4 and base.train.steps == 100_000


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stpes=3", "unknown config key 'train.stpes'; did you mean 'train.steps'?"),
        ("modle.dim=3", "unknown config key 'modle.dim'; did you mean 'model.dim'?"),
        ("zzz=3", "unknown config key 'zzz'; see describe(config) for the keys"),
        ("train.steps=1.5", "config key 'train.steps' wants an int, got '1.5'"),
        ("train.lr=fast", "config key 'train.lr' wants a float, got 'fast'"),
        ("train.bf16=maybe", "config key 'train.bf16' wants a bool (true/false), got 'maybe'"),
        ("train.warmup=soon", "config key 'train.warmup' wants int | None, got 'soon'"),
        ("model.norm=batch", "config key 'model.norm' must be one of 'rms', 'layer'; got 'batch'"),
        ("model.channels=1,x", "config key 'model.channels[1]' wants an int, got 'x'"),
        (
            "model.channels=(1, 'x')",
            "config key 'model.channels[1]' wants int, got 'x' (str)",
        ),
        (
            "train.steps",
            "override 'train.steps' is not 'key=value'; write e.g. --set train.steps=1000",
        ),
        ("=3", "override '=3' is not 'key=value'; write e.g. --set train.steps=1000"),
        (
            "model=small",
            "config key 'model' is a section, not a value; set one of its keys, "
            "e.g. 'model.dim=...'",
        ),
        (
            "train.steps.x=1",
            "config key 'train.steps.x' goes past 'train.steps', which is a value, "
            "not a section; set 'train.steps=...' instead",
        ),
    ],
)
def test_override_errors(exp, override, message):
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(exp, [override])
    assert _message(excinfo) == message


# ---------------------------------------------------------------- loading errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.py"
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(f"{path}:debug")
    assert (
        _message(excinfo) == f"experiment file {path} not found; check the path given to --config"
    )


def test_not_a_python_file():
    with pytest.raises(ConfigError) as excinfo:
        load_experiment("experiments/lm.yaml")
    assert _message(excinfo) == (
        "--config wants an experiment file 'path/to/file.py[:arg]', got 'experiments/lm.yaml'"
    )


def test_syntax_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("x = 1\ndef get_config(arg:\n")
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(str(path))
    message = _message(excinfo)
    assert message.startswith(f"experiment file {path} has a syntax error at line 2: ")
    assert message.endswith("; fix the file and run again")


def test_import_error_in_file(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import no_such_module_here\n")
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(str(path))
    assert _message(excinfo) == (
        f"experiment file {path} failed to import: ModuleNotFoundError: "
        "No module named 'no_such_module_here'; fix the file and run again"
    )


def test_file_without_get_config(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(str(path))
    assert _message(excinfo) == (
        f"experiment file {path} has no get_config(arg); "
        "define `def get_config(arg: str)` returning the root config dataclass"
    )


def test_get_config_returning_non_dataclass(tmp_path):
    path = tmp_path / "dict.py"
    path.write_text("def get_config(arg):\n    return {'steps': 1}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(f"{path}:debug")
    assert _message(excinfo) == (
        f"get_config('debug') in {path} returned dict, not a dataclass instance; "
        "return the root config dataclass"
    )


def test_unfrozen_config_rejected(tmp_path):
    path = tmp_path / "loose.py"
    path.write_text(
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class C:\n    steps: int = 1\n"
        "def get_config(arg):\n    return C()\n"
    )
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(str(path))
    assert _message(excinfo) == (
        "the root config (C) is not frozen; declare it with @dataclasses.dataclass(frozen=True)"
    )


def test_unknown_variant(exp):
    with pytest.raises(ConfigError) as excinfo:
        load_experiment(exp + ":sizee=small")
    assert "did you mean 'size'?" in _message(excinfo)


# ---------------------------------------------------------------- dict, JSON, describe


def test_to_dict_from_dict_round_trip(exp):
    config = load_experiment(exp + ":debug", ["train.warmup=5", "train.tags=a,b"])
    data = to_dict(config)
    assert data["model"]["channels"] == [4, 8]
    assert data["train"]["tags"] == ["a", "b"]
    assert json.loads(json.dumps(data)) == data
    rebuilt = from_dict(type(config), json.loads(json.dumps(data)))
    assert rebuilt == config
    assert isinstance(rebuilt.model.channels, tuple)
    assert isinstance(rebuilt.model.dropout, float)


def test_from_dict_type_checks(exp):
    config = load_experiment(exp)
    data = to_dict(config)
    data["train"]["steps"] = "10"
    with pytest.raises(ConfigError) as excinfo:
        from_dict(type(config), data)
    assert _message(excinfo) == "config key 'train.steps' wants int, got '10' (str)"
    data = to_dict(config)
    data["train"]["stepz"] = 10
    with pytest.raises(ConfigError) as excinfo:
        from_dict(type(config), data)
    assert _message(excinfo) == (
        "unknown config key 'train.stepz' in saved config for Train; did you mean 'steps'?"
    )
    data = to_dict(config)
    data["model"]["norm"] = "batch"
    with pytest.raises(ConfigError) as excinfo:
        from_dict(type(config), data)
    assert _message(excinfo) == "config key 'model.norm' must be one of 'rms', 'layer'; got 'batch'"
    # A key left out takes the field's default.
    data = to_dict(config)
    del data["seed"]
    assert from_dict(type(config), data) == config


def test_save_and_load_round_trip(exp, tmp_path):
    config = load_experiment(exp + ":size=small", ["train.warmup=7", "model.norm=layer"])
    path = tmp_path / "config.json"
    save_config(config, path)
    payload = json.loads(path.read_text())
    assert payload["root"]["qualname"] == "Config"
    assert payload["root"]["file"] == str(pathlib.Path(exp).resolve())
    assert payload["config"] == to_dict(config)
    assert {p.name for p in tmp_path.iterdir()} == {"lm.py", "config.json"}  # no temp file
    loaded = load_saved_config(path)
    assert loaded == config
    assert type(loaded) is type(config)


def test_save_and_load_importable_module(tmp_path):
    # A config class importable by name reloads through its module, no file stored.
    config = Plain(rates=(0.5, 2.0))
    path = tmp_path / "c.json"
    save_config(config, path)
    assert json.loads(path.read_text())["root"] == {
        "module": __name__,
        "qualname": "Plain",
    }
    assert load_saved_config(path) == config


def test_load_saved_config_errors(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_saved_config(tmp_path / "none.json")
    assert (
        _message(excinfo) == f"saved config {tmp_path / 'none.json'} not found; check the workdir"
    )
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(ConfigError) as excinfo:
        load_saved_config(path)
    assert "it was not written by save_config" in _message(excinfo)


def test_describe(exp):
    config = load_experiment(exp + ":debug")
    text = describe(config)
    assert text.splitlines() == [
        "model.dim=16",
        "model.heads=2",
        "model.norm=rms",
        "model.dropout=0.1",
        "model.channels=4,8",
        "train.steps=2",
        "train.lr=0.0003",
        "train.warmup=none",
        "train.bf16=false",
        "train.tags=('lm',)",
        "train.name=lm",
        "seed=0",
    ]
    # Every line is a valid override that reproduces the config.
    assert apply_overrides(load_experiment(exp), text.splitlines()) == config


def test_path_and_float_tuple_overrides():
    config = apply_overrides(Plain(), ["path=/tmp/x", "rates=1,2.5,1e-3"])
    assert config == Plain(rates=(1.0, 2.5, 1e-3), path=pathlib.Path("/tmp/x"))
    assert from_dict(Plain, to_dict(config)) == config


@dataclasses.dataclass(frozen=True)
class Bounded:
    layers: int = 4
    rate: float = 0.5
    widths: tuple[int, ...] = (8, 16)
    cap: int | None = None

    def __post_init__(self):
        within(self, "layers", 1, 512)
        within(self, "rate", 0.0, 1.0, high_open=True)
        within(self, "widths", 1, 4096)
        within(self, "cap", 1, 10, optional=True)


@pytest.mark.parametrize(
    ("key", "text", "value", "message"),
    [
        ("layers", "100000", 100000, "Bounded.layers must be in [1, 512], got 100000"),
        ("layers", "0", 0, "Bounded.layers must be in [1, 512], got 0"),
        ("rate", "1", 1.0, "Bounded.rate must be in [0, 1), got 1.0"),
        ("widths", "8,0", [8, 0], "Bounded.widths[1] must be in [1, 4096], got 0"),
        ("cap", "11", 11, "Bounded.cap must be in [1, 10], got 11"),
    ],
)
def test_range_checks_refuse_an_override_and_a_saved_value_alike(key, text, value, message):
    """`--set` and a saved JSON file both pass through `__post_init__`: one line each."""
    with pytest.raises(ConfigError) as excinfo:
        apply_overrides(Bounded(), [f"{key}={text}"])
    assert str(excinfo.value) == message
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        from_dict(Bounded, {key: value})


def test_check_number_takes_real_numbers_only():
    check_number(3, 1, 3, "x")
    check_number(np.int64(2), 1, 3, "x")
    check_number(10**400, 1, math.inf, "x")  # an int beyond float's range is still compared
    for value in (True, "3", None, math.inf, -math.inf):
        with pytest.raises(ConfigError, match=r"^x must be in \[1, 3\], got "):
            check_number(value, 1, 3, "x")
    assert apply_overrides(Bounded(), ["cap=none", "cap=3"]).cap == 3
    with pytest.raises(ConfigError, match=r"^Bounded\.rate must be in \[0, 1\), got nan$"):
        Bounded(rate=math.nan)
