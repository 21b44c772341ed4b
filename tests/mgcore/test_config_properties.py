"""Property checks of the one place `--set` and saved configs are typed and range-checked:
any text for any key of a real experiment, and any JSON value in a saved config, gives a
config or one `ConfigError` line, never another exception."""

import dataclasses
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgcore.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_experiment,
    to_dict,
)
from mgcore.config_types import init_fields

EXPERIMENTS = ("experiments/codec_tiny.py", "experiments/lm_tiny.py",
               "experiments/refiner_tiny.py")  # fmt: skip


def _leaf_keys(config, prefix=""):
    for field in init_fields(type(config)):
        value = getattr(config, field.name)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            yield from _leaf_keys(value, key + ".")
        else:
            yield key


_CONFIGS = {spec: load_experiment(spec) for spec in EXPERIMENTS}
_KEYS = sorted({(spec, key) for spec, c in _CONFIGS.items() for key in _leaf_keys(c)})

# What a user (or a fuzzer) might type after `--set key=`.
_TEXT = st.one_of(
    st.sampled_from(["0", "-1", "-5", "1", "2", "1e400", "-1e400", "nan", "inf", "-inf",
                     "1.5", "0.0", "true", "false", "none", "", " ", "[]", "()", "1,2",
                     "(1, 2, 3)", "'x'", "float32", "bfloat16", "99999999999999999999999"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)  # fmt: skip


def _one_line(err: Exception) -> None:
    assert "\n" not in str(err) and str(err).strip()


@given(key=st.sampled_from(_KEYS), text=_TEXT)
def test_any_set_value_gives_a_config_or_one_config_error(key, text):
    spec, name = key
    try:
        config = apply_overrides(_CONFIGS[spec], [f"{name}={text}"])
    except ConfigError as err:
        _one_line(err)
        return
    # Accepted values are what the field holds, and finite where they are numbers.
    value = config
    for part in name.split("."):
        value = getattr(value, part)
    if isinstance(value, float):
        assert math.isfinite(value) or name.endswith(("ema_decay",)), (name, text, value)


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip


@given(key=st.sampled_from(_KEYS), value=_JSON)
def test_any_json_value_in_a_saved_config_gives_a_config_or_one_config_error(key, value):
    spec, name = key
    config = _CONFIGS[spec]
    data = json.loads(json.dumps(to_dict(config)))
    section = data
    *parents, leaf = name.split(".")
    for part in parents:
        section = section[part]
    section[leaf] = value
    try:
        from_dict(type(config), data)
    except ConfigError as err:
        _one_line(err)


@pytest.mark.parametrize("spec", EXPERIMENTS)
def test_the_experiments_round_trip_through_json(spec):
    config = _CONFIGS[spec]
    assert from_dict(type(config), json.loads(json.dumps(to_dict(config)))) == config
