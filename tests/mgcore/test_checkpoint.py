"""Tests for mgcore.checkpoint: exact round trips, retention, cadence, async saves, restoring onto
another mesh, a save killed with SIGKILL, the preemption guard, and that nothing is unpickled."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgcore.checkpoint import Checkpointer, PreemptionGuard

REPO = Path(__file__).resolve().parents[2]


def _abstract(state, sharding=None):
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _assert_tree_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _state(rng, scale=1):
    return {
        "params": {
            "w": jnp.asarray(rng.standard_normal((4 * scale, 8)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal(8), jnp.bfloat16),
        },
        "opt": {"count": jnp.asarray(3, jnp.int32), "mu": jnp.asarray(rng.random(5), jnp.float16)},
        "step": jnp.asarray(12345, jnp.int32),
        "rng": jax.random.key_data(jax.random.key(42)),
        "flags": jnp.asarray([True, False]),
    }


def _run_python(code, *, env_extra=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_round_trip_exact(tmp_path, rng):
    state = _state(rng)
    assert state["rng"].dtype == jnp.uint32
    extra = {"data": {"epoch": 2, "index": [1, 2, 3]}, "config": {"lr": 3e-4, "name": "debug"}}
    with Checkpointer(tmp_path, save_every=10, async_save=False) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(10, state, extra)
        restored, restored_extra = ckpt.restore(abstract_state=_abstract(state))
    _assert_tree_equal(restored, state)
    assert restored_extra == extra
    # A fresh Checkpointer resumes from the directory alone.
    with Checkpointer(tmp_path, save_every=10) as again:
        assert again.latest_step() == 10
        restored, _ = again.restore(10, abstract_state=_abstract(state))
    _assert_tree_equal(restored, state)


def test_keep_latest_two_and_cadence(tmp_path, rng):
    state = _state(rng)
    with Checkpointer(tmp_path, save_every=3, keep=2) as ckpt:
        saved = [s for s in range(1, 13) if ckpt.save(s, state, {"step": s})]
        assert saved == [3, 6, 9, 12]
        ckpt.wait()
        assert ckpt.all_steps() == [9, 12]
        assert ckpt.latest_step() == 12
        assert not ckpt.should_save(13) and ckpt.should_save(15)
        assert not ckpt.should_save(12)  # never re-save an existing step
        # Forced saves go off the cadence but never overwrite an existing step.
        assert ckpt.save(13, state, {"step": 13}, force=True)
        assert not ckpt.save(13, state, {"step": 13}, force=True)
        ckpt.wait()
        assert ckpt.all_steps() == [12, 13]
        _, extra = ckpt.restore(abstract_state=_abstract(state))
        assert extra == {"step": 13}
        with pytest.raises(FileNotFoundError):
            ckpt.restore(3, abstract_state=_abstract(state))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["12", "13"]


def test_async_save_then_restore(tmp_path, rng):
    with Checkpointer(tmp_path, save_every=1, keep=3, async_save=True) as ckpt:
        states = [_state(rng, scale=64) for _ in range(3)]
        for step, state in enumerate(states, start=1):
            assert ckpt.save(step, state, {"step": step})  # waits for the previous save
        # No wait(): restore must see the save still in flight.
        restored, extra = ckpt.restore(abstract_state=_abstract(states[-1]))
        _assert_tree_equal(restored, states[-1])
        assert extra == {"step": 3}
        restored, _ = ckpt.restore(1, abstract_state=_abstract(states[0]))
        _assert_tree_equal(restored, states[0])


def test_async_save_survives_donation(tmp_path, rng):
    """The train step donates the state right after `save` returns; the checkpoint must hold
    the values as they were at the call, not whatever the donated buffers hold later."""
    ref = rng.random((512, 256), dtype=np.float32)
    state = {"w": jnp.asarray(ref)}
    train_step = jax.jit(lambda s: jax.tree.map(lambda x: x * 0 - 1, s), donate_argnums=0)
    with Checkpointer(tmp_path, save_every=1, async_save=True) as ckpt:
        ckpt.save(1, state, {})
        for _ in range(3):
            state = train_step(state)
        restored, _ = ckpt.restore(abstract_state=_abstract(state))
    np.testing.assert_array_equal(np.asarray(restored["w"]), ref)


def test_rejects_bad_inputs(tmp_path, rng):
    state = _state(rng)
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        with pytest.raises(TypeError):
            ckpt.save(1, state, {"x": object()})
        with pytest.raises(FileNotFoundError):
            ckpt.restore(abstract_state=_abstract(state))
        ckpt.save(1, state, {})
        with pytest.raises(TypeError, match="sharding"):
            ckpt.restore(abstract_state=jax.tree.map(lambda x: x, state))


def test_restore_onto_another_mesh(tmp_path):
    """Saved sharded over 8 devices, restored on 1, and the reverse."""
    one_dev, eight_dev = tmp_path / "one", tmp_path / "eight"
    ref = np.arange(16 * 6, dtype=np.float32).reshape(16, 6) / 7
    with Checkpointer(one_dev, save_every=1, async_save=False) as ckpt:
        ckpt.save(1, {"w": jnp.asarray(ref), "k": jnp.arange(8, dtype=jnp.int32)}, {"n": 1})

    child = f"""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from mgcore.checkpoint import Checkpointer
        assert jax.device_count() == 8, jax.devices()
        mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "fsdp"))
        ref = np.arange(16 * 6, dtype=np.float32).reshape(16, 6) / 7
        # The reverse: saved on one device, restored sharded over eight.
        sh = NamedSharding(mesh, P(("data", "fsdp")))
        abstract = {{"w": jax.ShapeDtypeStruct((16, 6), jnp.float32, sharding=sh),
                    "k": jax.ShapeDtypeStruct((8,), jnp.int32, sharding=sh)}}
        with Checkpointer({str(one_dev)!r}, save_every=1) as ckpt:
            state, extra = ckpt.restore(abstract_state=abstract)
        assert extra == {{"n": 1}}
        assert state["w"].sharding == sh and len(state["w"].addressable_shards) == 8
        np.testing.assert_array_equal(np.asarray(state["w"]), ref)
        np.testing.assert_array_equal(np.asarray(state["k"]), np.arange(8))
        # Save sharded over the 8-device mesh.
        w = jax.device_put(ref, NamedSharding(mesh, P("data", "fsdp")))
        e = jax.device_put(np.arange(8, dtype=np.int32), NamedSharding(mesh, P("data")))
        with Checkpointer({str(eight_dev)!r}, save_every=1) as ckpt:
            ckpt.save(2, {{"w": w, "k": e}}, {{"n": 2}})
        print("CHILD OK")
    """
    proc = _run_python(child, env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert proc.returncode == 0 and "CHILD OK" in proc.stdout, proc.stderr[-3000:]

    abstract = _abstract({"w": jnp.zeros((16, 6)), "k": jnp.zeros(8, jnp.int32)})
    with Checkpointer(eight_dev, save_every=1) as ckpt:
        state, extra = ckpt.restore(abstract_state=abstract)
    assert extra == {"n": 2}
    assert state["w"].sharding == abstract["w"].sharding
    np.testing.assert_array_equal(np.asarray(state["w"]), ref)
    np.testing.assert_array_equal(np.asarray(state["k"]), np.arange(8))


_KILL_CHILD = """
    import sys, time
    from pathlib import Path
    import jax.numpy as jnp, numpy as np
    from mgcore.checkpoint import Checkpointer

    directory, marker = sys.argv[1], Path(sys.argv[2])
    block_finalize, n = sys.argv[3] == "1", int(sys.argv[4])
    ckpt = Checkpointer(directory, save_every=1, async_save=True)
    ckpt.save(1, {"w": jnp.full((4,), 1.0)}, {"step": 1})
    ckpt.wait()
    if block_finalize:
        # Park the save after every array is written but before orbax's commit (the rename).
        from orbax.checkpoint._src.path import atomicity

        async def _stall(self):
            marker.write_text("finalizing")
            time.sleep(3600)

        atomicity.AtomicRenameTemporaryPath.finalize = _stall
    big = jnp.asarray(np.random.default_rng(0).random(n, dtype=np.float32))
    ckpt.save(2, {"w": big}, {"step": 2})
    ckpt.wait()
    marker.with_suffix(".done").write_text("done")
    time.sleep(3600)
"""


def _wait_for(predicate, timeout=60.0, poll=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


@pytest.mark.parametrize("block_finalize", [True, False], ids=["before_commit", "mid_write"])
def test_sigkill_during_save_keeps_previous(tmp_path, block_finalize):
    directory, marker = tmp_path / "ckpt", tmp_path / "marker"
    # 8M float32 (32 MB) is enough when the commit is blocked; mid-write needs a save that takes
    # long enough to be caught (64M float32, 256 MB).
    n = 8 * 2**20 if block_finalize else 64 * 2**20
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = ["1" if block_finalize else "0", str(n)]
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILL_CHILD), str(directory), str(marker), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if block_finalize:
            caught = _wait_for(lambda: marker.exists() or proc.poll() is not None)
        else:
            # Kill as soon as orbax has created step 2's temporary directory.
            caught = _wait_for(lambda: any(directory.glob("2.*tmp*")) or proc.poll() is not None)
        assert caught and proc.poll() is None, "child died early"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not marker.with_suffix(".done").exists(), "save finished before the kill"
    # The half-written step exists on disk, only under orbax's temporary name.
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith("2")]
    assert leftovers and all("tmp" in name for name in leftovers), leftovers

    abstract = _abstract({"w": jnp.zeros((4,))})
    with Checkpointer(directory, save_every=1) as ckpt:
        assert ckpt.latest_step() == 1
        assert ckpt.all_steps() == [1]
        state, extra = ckpt.restore(abstract_state=abstract)
        assert extra == {"step": 1}
        np.testing.assert_array_equal(np.asarray(state["w"]), np.ones(4, np.float32))
        # The next save of step 2 succeeds over the debris.
        assert ckpt.save(2, {"w": jnp.zeros((4,))}, {"step": 2})
        ckpt.wait()
        assert ckpt.latest_step() == 2


def test_preemption_guard_sigterm_sets_flag(tmp_path, rng):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    state = _state(rng)
    with Checkpointer(tmp_path, save_every=100) as ckpt, PreemptionGuard() as guard:
        assert not guard.requested and guard.signal is None
        # The trainer's loop: poll after each step, force a save, wait, stop.
        for step in range(1, 50):
            if step == 7:
                os.kill(os.getpid(), signal.SIGTERM)
                assert _wait_for(lambda: guard.requested, timeout=5)
            if guard.requested:
                assert ckpt.save(step, state, {"reason": guard.signal.name}, force=True)
                # A second Ctrl-C while saving is counted, not raised.
                os.kill(os.getpid(), signal.SIGINT)
                assert _wait_for(lambda: guard.count == 2, timeout=5)
                ckpt.wait()
                break
        assert guard.signal == signal.SIGTERM
        assert ckpt.latest_step() == 7
    assert {s: signal.getsignal(s) for s in before} == before


def test_nothing_is_unpickled(tmp_path, rng, monkeypatch):
    state = _state(rng)
    with Checkpointer(tmp_path, save_every=1, async_save=False) as ckpt:
        ckpt.save(1, state, {"a": [1, 2]})
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert names and not [n for n in names if n.endswith((".pkl", ".pickle", ".npy", ".npz"))]

    def _refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading unpickled something")

    monkeypatch.setattr(pickle, "loads", _refuse)
    monkeypatch.setattr(pickle, "load", _refuse)
    monkeypatch.setattr(pickle, "Unpickler", _refuse)
    with Checkpointer(tmp_path, save_every=1) as ckpt:
        restored, extra = ckpt.restore(abstract_state=_abstract(state))
    _assert_tree_equal(restored, state)
    assert extra == {"a": [1, 2]}
