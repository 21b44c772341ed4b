"""Loading a trained model from a workdir without its family: the weights (EMA where
kept) of the whole model or of one part, exactly as the checkpoint holds them."""

import dataclasses

import flax.nnx as nnx
import numpy as np
import pytest

from mgcore.checkpoint import Checkpointer
from mgcore.config import save_config
from mgcore.sharding import MeshConfig, make_mesh
from mgcore.trainer import TrainConfig, init_state, train
from mgcore.weights import PretrainedError, SavedFormat, flatten_state, load_workdir_model
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
