"""Tests of mgcore.sharding and mgcore.distributed.

Multi-device runs need XLA_FLAGS set before JAX is imported, so they run
`_sharding_worker.py` in subprocesses (8 fake CPU devices; or two processes joined by
jax.distributed over gloo on 127.0.0.1) and read back the losses it writes as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.sharding import PartitionSpec as P

from mgcore import distributed, sharding

WORKER = Path(__file__).with_name("_sharding_worker.py")
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150


def _env(n_devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for name in ("MUSICGEN_COORDINATOR", "MUSICGEN_NUM_PROCESSES", "MUSICGEN_PROCESS_ID"):
        env.pop(name, None)
    return env


def _relative_diffs(a: list[float], b: list[float]) -> list[float]:
    assert len(a) == len(b)
    return [abs(x - y) / abs(y) for x, y in zip(a, b, strict=True)]


def test_make_mesh_sizes_and_errors():
    mesh = sharding.make_mesh(sharding.MeshConfig(), devices=jax.devices()[:1])
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    one = jax.devices()[:1]
    with pytest.raises(ValueError, match=r"needs 2 devices, but there are 1"):
        sharding.make_mesh(sharding.MeshConfig(data=2), devices=one)
    with pytest.raises(ValueError, match="does not divide 1 devices"):
        sharding.make_mesh(sharding.MeshConfig(tensor=2), devices=one)
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.make_mesh(sharding.MeshConfig(data=-1, fsdp=-1), devices=one)
    with pytest.raises(ValueError, match="positive"):
        sharding.make_mesh(sharding.MeshConfig(data=0), devices=one)


def test_logical_to_mesh_default_table():
    rules = sharding.DEFAULT_RULES
    assert sharding.logical_to_mesh(("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert sharding.logical_to_mesh(("mlp", "embed"), rules) == P("tensor", "fsdp")
    assert sharding.logical_to_mesh(("vocab", "embed"), rules) == P("tensor", "fsdp")
    assert sharding.logical_to_mesh(("embed", "heads", "kv"), rules) == P("fsdp", "tensor", None)
    assert sharding.logical_to_mesh(("conv_width", "conv_in", "conv_out"), rules) == P(
        None, "fsdp", "tensor"
    )
    assert sharding.logical_to_mesh(P("batch", "length", None), rules) == P(
        ("data", "fsdp"), None, None
    )
    # A mesh axis is used once per array: `embed` loses `fsdp` to `batch`.
    assert sharding.logical_to_mesh(("batch", "length", "embed"), rules) == P(
        ("data", "fsdp"), None, None
    )
    assert sharding.logical_to_mesh(None, rules) == P()
    with pytest.raises(ValueError, match="'embd' has no rule"):
        sharding.logical_to_mesh(("embd",), rules)


def test_batch_sharding_and_local_rows():
    mesh = sharding.make_mesh(sharding.MeshConfig(), devices=jax.devices()[:1])
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert sharding.local_batch_rows(6, mesh) == slice(0, 6)


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("mesh") / "out.json"
    proc = subprocess.run(
        [sys.executable, str(WORKER), "mesh", str(out)],
        env=_env(8),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_mesh_sizes_on_eight_devices(mesh_run):
    assert mesh_run["shapes"] == {
        "-1,1,1": {"data": 8, "fsdp": 1, "tensor": 1},
        "-1,4,1": {"data": 2, "fsdp": 4, "tensor": 1},
        "1,2,4": {"data": 1, "fsdp": 2, "tensor": 4},
    }


def test_sharded_training_matches_one_device(mesh_run):
    sharded, single = mesh_run["sharded"], mesh_run["single"]
    assert len(sharded) == 20
    assert max(_relative_diffs(sharded, single)) <= 1e-4, (sharded, single)
    assert single[-1] != single[0]  # it trained


def test_params_are_sharded(mesh_run):
    specs = mesh_run["specs"]  # after 20 steps on data=2, fsdp=2, tensor=2

    def spec(name: str) -> str:
        return next(v for k, v in specs.items() if k.startswith(f"['{name}']"))

    assert specs["['up']/['kernel']/.value"] == "P('fsdp', 'tensor')"
    assert specs["['down']/['kernel']/.value"] == "P('tensor', 'fsdp')"
    assert specs["['embed']/['embedding']/.value"] == "P('tensor', 'fsdp')"
    assert specs["['up']/['bias']/.value"] == "P('tensor',)"
    assert spec("norm") == "P(None,)"  # unannotated: replicated
    # Each device holds a quarter of a (fsdp x tensor)-sharded kernel, as initialised.
    full, shard = mesh_run["shard_shapes"]["['up']/['kernel']/.value"]
    assert (full, shard) == ([64, 512], [32, 256])
    assert mesh_run["odd_spec"] == "P(None, 'fsdp')"  # 63 rows: not split over tensor=2
    assert specs["mu/up/kernel"] == "P('fsdp', 'tensor')"  # Adam's moments follow the weight


def test_init_outputs_are_sharded(mesh_run):
    # The compiled initialiser's outputs carry the target shardings, so XLA computes
    # every shard on its own device and no full copy exists anywhere.
    assert mesh_run["init_ok"]
    assert "P('fsdp', 'tensor')" in mesh_run["init_specs"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_reproduce_single_process(mesh_run, tmp_path):
    port = _free_port()
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "multi", str(outs[i]), str(port), str(i)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"distributed workers hung for {TIMEOUT_S} s; finished logs: {logs}")
    finally:
        for p in procs:  # never leave a worker behind, even on failure
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    results = [json.loads(o.read_text()) for o in outs]
    assert [r["main"] for r in results] == [True, False]
    single = mesh_run["single"][: len(results[0]["losses"])]
    assert len(single) == 5 and results[1]["losses"] == []  # process 0 alone writes metrics
    assert max(_relative_diffs(results[0]["losses"], single)) <= 1e-4, (results, single)
    for r in results:
        assert r["last"] == pytest.approx(single[-1], rel=1e-4)
        assert r["specs"]["['up']/['kernel']/.value"] == "P('fsdp', 'tensor')"


def test_initialize_is_noop_with_one_process(monkeypatch):
    for name in (
        "MUSICGEN_COORDINATOR",
        "MUSICGEN_NUM_PROCESSES",
        "MUSICGEN_PROCESS_ID",
        "SLURM_NTASKS",
        "SLURM_STEP_NUM_TASKS",
        "TPU_WORKER_HOSTNAMES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: False)
    monkeypatch.setattr(distributed, "_initialized", False)

    def fail(**kwargs):
        raise AssertionError("jax.distributed.initialize must not run on one host")

    monkeypatch.setattr(jax.distributed, "initialize", fail)
    distributed.initialize()
    distributed.initialize()  # idempotent
    monkeypatch.setattr(distributed, "_initialized", False)
    distributed.initialize(num_processes=1)
    monkeypatch.setenv("MUSICGEN_NUM_PROCESSES", "1")
    distributed.initialize()
    assert distributed.is_main_process()
    assert jax.process_count() == 1


def test_initialize_reads_musicgen_env(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "_initialized", False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(distributed, "_log_topology", lambda: None)
    monkeypatch.setattr(jax.config, "update", lambda *a: calls.append(a))
    monkeypatch.setenv("MUSICGEN_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("MUSICGEN_NUM_PROCESSES", "4")
    monkeypatch.setenv("MUSICGEN_PROCESS_ID", "3")
    distributed.initialize()
    assert calls == [
        ("jax_cpu_collectives_implementation", "gloo"),
        dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3),
    ]
