"""Loading a trained model from a workdir without its family: the weights (EMA where
kept) of the whole model or of one part, exactly as the checkpoint holds them."""

import dataclasses
import json
import re

import flax.nnx as nnx
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from mgcore.checkpoint import Checkpointer
from mgcore.config import save_config
from mgcore.sharding import MeshConfig, make_mesh
from mgcore.trainer import TrainConfig, init_state, train
from mgcore.weights import (
    CHECKSUM_KEY,
    PretrainedError,
    SavedFormat,
    check_count,
    checksum,
    flatten_state,
    inside,
    load_workdir_model,
    read_weights,
    to_float16,
)
from tests.fixtures.regression import (
    MLP,
    OPTIMIZER,
    RegressionConfig,
    RegressionExperiment,
    RegressionFamily,
)

TRAIN = TrainConfig(steps=4, log_every=2, save_every=2, wandb="disabled")


def _trained(workdir, optimizer=OPTIMIZER):
    config = RegressionExperiment(optimizer=optimizer, train=TRAIN)
    workdir.mkdir()
    save_config(config, workdir / "config.json")
    family = RegressionFamily(config.model)
    train(family, optimizer, TRAIN, workdir, progress=False)
    plan = init_state(family, optimizer, TRAIN, make_mesh(MeshConfig()))
    with Checkpointer(workdir / "checkpoints", save_every=1) as ckpt:
        return ckpt.restore(abstract_state=plan.abstract)[0]


def _mlp(config: dict) -> MLP:
    return MLP(config["model"]["hidden"], rngs=nnx.Rngs(0))


@pytest.mark.parametrize("ema", [False, True])
def test_the_whole_model_comes_back_with_ema_weights_where_kept(tmp_path, ema):
    optimizer = dataclasses.replace(OPTIMIZER, ema_decay=0.5 if ema else None)
    state = _trained(tmp_path / "w", optimizer)
    config, model = load_workdir_model(tmp_path / "w", _mlp)
    assert config["model"]["hidden"] == RegressionConfig().hidden
    want = flatten_state(state["ema"] if ema else state["params"])
    got = flatten_state(nnx.state(model, nnx.Param))
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the non-parameter state (a running mean) comes back too
    np.testing.assert_array_equal(model.input_mean[...], state["rest"]["input_mean"][...])
    if ema:  # the EMA is not the raw weights after 4 steps at decay 0.5
        raw = flatten_state(state["params"])
        assert any(not np.array_equal(raw[k], got[k]) for k in got)


def test_one_part_comes_back_alone(tmp_path):
    state = _trained(tmp_path / "w")
    _, layer = load_workdir_model(
        tmp_path / "w", lambda c: nnx.Linear(4, c["model"]["hidden"], rngs=nnx.Rngs(0)),
        ("hidden",),
    )  # fmt: skip
    np.testing.assert_array_equal(layer.kernel[...], state["params"]["hidden"]["kernel"][...])


def test_a_workdir_of_another_model_is_refused_in_one_line(tmp_path):
    _trained(tmp_path / "w")
    with pytest.raises(PretrainedError, match="is not a workdir of this kind of model"):
        load_workdir_model(tmp_path / "w", lambda c: MLP(c["model"]["width"], rngs=nnx.Rngs(0)))


def test_a_workdir_without_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    save_config(RegressionExperiment(), tmp_path / "config.json")
    with pytest.raises(PretrainedError, match="holds no finished checkpoint"):
        load_workdir_model(tmp_path, _mlp)


def test_a_saved_folder_round_trips_and_refuses_another_format(tmp_path):
    fmt = SavedFormat("test-mlp", 1, "mlp.json")
    model = MLP(8, rngs=nnx.Rngs(3))
    model.config = RegressionConfig(hidden=8)
    fmt.save(tmp_path, nnx.state(model), model.config, note="x")
    loaded, meta = fmt.load(tmp_path, RegressionConfig, lambda c: MLP(c.hidden, rngs=nnx.Rngs(0)))
    assert meta["note"] == "x" and fmt.holds(tmp_path)
    for name, value in flatten_state(nnx.state(model)).items():
        np.testing.assert_array_equal(flatten_state(nnx.state(loaded))[name], value)
    with pytest.raises(PretrainedError, match="is not a other v1 file"):
        SavedFormat("other", 1, "mlp.json").load(tmp_path, RegressionConfig, _mlp)


# ---------------------------------------------------------------------------- checked loads
@dataclasses.dataclass(frozen=True)
class _Fields:
    note: str
    scale: float = 1.0


def _saved_mlp(tmp_path):
    fmt = SavedFormat("test-mlp", 1, "mlp.json")
    fmt.save(tmp_path, nnx.state(MLP(8, rngs=nnx.Rngs(3))), RegressionConfig(hidden=8), note="x")
    return fmt


def _make(config):
    return MLP(config.hidden, rngs=nnx.Rngs(0))


def test_a_saved_folders_json_is_typed_and_each_refusal_names_file_and_field(tmp_path):
    fmt = _saved_mlp(tmp_path)
    assert fmt.read(tmp_path, RegressionConfig, _Fields) == (
        RegressionConfig(hidden=8),
        _Fields("x"),
    )
    path = tmp_path / "mlp.json"
    meta = json.loads(path.read_text())
    for change, message in (
        ({"config": {**meta["config"], "hidden": "8"}}, "'config.hidden' wants int"),
        ({"config": {**meta["config"], "width": 8}}, "unknown config key 'config.width'"),
        ({"config": [8]}, "section 'config' must be a mapping"),
        ({"note": None}, "'note' wants str"),
        ({"extra": 1}, "unknown config key 'extra'"),
    ):
        path.write_text(json.dumps({**meta, **change}))
        with pytest.raises(PretrainedError, match=f"^{re.escape(str(path))}: .*{message}"):
            fmt.load(tmp_path, RegressionConfig, _make, _Fields)
    path.write_text("[]")
    with pytest.raises(PretrainedError, match=r"mlp\.json holds a JSON list, not an object"):
        fmt.read(tmp_path, RegressionConfig)


def test_weights_are_checked_finite_and_against_their_checksum(tmp_path):
    fmt = _saved_mlp(tmp_path)
    path = tmp_path / "model.safetensors"
    flat, metadata = load_file(str(path)), safe_open(str(path), "numpy").metadata()
    assert metadata[CHECKSUM_KEY] == checksum(flat)
    assert read_weights(path).keys() == flat.keys()

    changed = {**flat, "out.bias": flat["out.bias"] + 1.0}  # finite, but not what was saved
    save_file(changed, str(path), metadata=metadata)
    with pytest.raises(PretrainedError, match=r"model\.safetensors does not match its checksum"):
        fmt.load(tmp_path, RegressionConfig, _make)
    save_file(changed, str(path))  # a file without a checksum (saved before they were kept)
    fmt.load(tmp_path, RegressionConfig, _make)

    broken = {**flat, "hidden.kernel": np.where(np.eye(4, 8) > 0, np.nan, flat["hidden.kernel"])}
    save_file(broken, str(path))
    message = "tensor 'hidden.kernel' holds 4 NaN or infinite values of 32"
    with pytest.raises(PretrainedError, match=re.escape(message)):
        fmt.load(tmp_path, RegressionConfig, _make)


def test_to_float16_renews_the_checksum_and_refuses_what_would_overflow(tmp_path):
    fmt = _saved_mlp(tmp_path)
    path = to_float16(tmp_path / "model.safetensors")
    assert read_weights(path)["out.bias"].dtype == np.float16  # the checksum still holds
    fmt.load(tmp_path, RegressionConfig, _make)
    save_file({"big": np.array([1e5], np.float32)}, str(path))
    with pytest.raises(PretrainedError, match=r"in float16 .*tensor 'big' holds 1 NaN"):
        to_float16(path)


def test_a_path_a_folder_names_stays_inside_it(tmp_path):
    assert inside(tmp_path, "text", "f") == (tmp_path / "text").resolve()
    (tmp_path / "link").symlink_to("/etc")
    for name in ("../x", "/etc", "a/../../x", "link"):
        with pytest.raises(PretrainedError, match=r"^lm\.json field p names .*outside"):
            inside(tmp_path, name, "lm.json field p")


def test_a_config_is_checked_against_its_weights_before_the_model_is_traced(tmp_path):
    flat = {"layers.0.w": np.zeros(1), "layers.1.w": np.zeros(1), "head.w": np.zeros(1)}
    check_count(flat, "layers", 2, "f", "num_layers")
    with pytest.raises(
        PretrainedError, match=r"^f holds 2 layers but the config's num_layers is 3"
    ):
        check_count(flat, "layers", 3, "f", "num_layers")
    fmt = _saved_mlp(tmp_path)

    def check(config, weights, source):
        raise PretrainedError(f"{source} checked first")

    with pytest.raises(PretrainedError, match=r"model\.safetensors checked first"):
        fmt.load(tmp_path, RegressionConfig, _make, check=check)
    meta = json.loads((tmp_path / "mlp.json").read_text())
    (tmp_path / "mlp.json").write_text(json.dumps({**meta, "config": {"hidden": 5}}))
    with pytest.raises(PretrainedError, match=r"weight hidden\.bias has shape \(8,\)"):
        fmt.load(tmp_path, RegressionConfig, _make)
