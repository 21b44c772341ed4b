"""Checkpoints for the one trainer that serves all three model families.

A checkpoint is one step directory written by orbax's `CheckpointManager` (the MaxText and
orbax-docs pattern) with two items:

* `state`: the trainer's pytree of `jax.Array`s (params, optimiser state, EMA, step, RNG key
  data), written with orbax's standard (tensorstore/OCDBT) handler, so it restores onto any
  mesh given abstract arrays that carry the target shardings;
* `extra`: a JSON dict (data-iterator state, resolved config, ...).

Nothing here writes a file itself: every byte goes through orbax, which writes into a temporary
directory and renames it when complete (a killed save never shows up as a step), and which writes
shared files from the primary process only on multi-host runs. Loading never unpickles.

A checkpoint that does not restore (a truncated file, flipped bytes, a half-copied folder) is
set aside by `restore_newest`, which falls back to the newest one that does; a checkpoint that
cannot be written (a full disk, a read-only folder) raises `CheckpointError` in one line, and
the previous checkpoints stay as they were.

`PreemptionGuard` turns SIGTERM/SIGINT into a flag that the trainer polls after each step, so that
it can save with `force=True`, `wait()` and exit cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

__all__ = ["CheckpointError", "Checkpointer", "PreemptionGuard"]

log = logging.getLogger(__name__)

_STATE = "state"
_EXTRA = "extra"
# A checkpoint that does not restore is renamed `<step>.unreadable`: orbax lists only
# integer names as steps, so it is out of the way but kept for a look.
UNREADABLE = ".unreadable"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, or no checkpoint that restores (one line)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Checkpointer:
    """Saves and restores (state pytree, JSON extra) pairs at a fixed step interval.

    Args:
      directory: the checkpoint root (one sub-directory per step); created if missing.
      save_every: `should_save(step)` is true when `step % save_every == 0`.
      keep: how many of the latest checkpoints to keep; older ones are deleted.
      async_save: write in a background thread; `save` returns once the arrays are copied off
        the device, the next `save` or `wait()` blocks until the previous one is committed.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        save_every: int,
        keep: int = 3,
        async_save: bool = True,
    ) -> None:
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=async_save,
            # Left-overs of a killed save (`<step>.orbax-checkpoint-tmp-*`) are never listed as
            # steps; removing them at start-up only reclaims their disk space.
            cleanup_tmp_directories=True,
            create=True,
        )
        # While this checkpointer is open, orbax's tracebacks of a failed save or restore
        # are not logged: the error reaches the caller, as one line (`CheckpointError`).
        self._quiet = _DropReraisedErrors()
        logging.getLogger("absl").addFilter(self._quiet)
        _quiet_abandoned_work()
        try:
            self._manager = ocp.CheckpointManager(
                epath.Path(self.directory), item_names=(_STATE, _EXTRA), options=options
            )
        except OSError as err:
            logging.getLogger("absl").removeFilter(self._quiet)
            raise CheckpointError(
                f"can't use {self.directory} for checkpoints: {_first_line(err)}"
            ) from err

    def should_save(self, step: int) -> bool:
        """Whether `step` is on the save cadence (and newer than the latest checkpoint).

        Args:
          step: the training step just completed.
        """
        return bool(self._manager.should_save(step))

    def save(self, step: int, state: Any, extra: dict[str, Any], *, force: bool = False) -> bool:
        """Saves `state` and `extra` as checkpoint `step`, if due (or forced).

        All processes must call this with the same arguments; orbax coordinates the hosts.

        Args:
          step: the step number that names the checkpoint.
          state: pytree of `jax.Array`s (sharded or not).
          extra: JSON-serialisable dict, e.g. data-iterator state and the resolved config.
          force: save even if `step` is off the cadence (preemption, end of training). A step
            that already has a checkpoint is never overwritten: the call returns False.

        Returns:
          Whether a save was started.
        """
        # Fail here, in the caller's thread, rather than in orbax's background writer.
        json.dumps(extra, allow_nan=False)
        if force and step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardSave(state), _EXTRA: ocp.args.JsonSave(extra)}
        )
        with self._writing():
            return bool(self._manager.save(step, args=args, force=force))

    @contextlib.contextmanager
    def _writing(self):
        """Turns a failed write (here or in orbax's background thread, surfacing now) into
        one `CheckpointError` naming the newest checkpoint that is still intact."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as err:
            if isinstance(err, CheckpointError):
                raise
            _release_waiting_threads()
            # An async save's error surfaces in the next call, so the step is not named.
            good = self._manager.latest_step()
            kept = f"step {good} is the newest intact one" if good is not None else "none saved yet"
            raise CheckpointError(
                f"could not write a checkpoint into {self.directory}: {_first_line(err)} "
                f"({kept}); free disk space or make the folder writable, then run again"
            ) from err

    def latest_step(self) -> int | None:
        """The newest committed step, or None when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """All committed steps, oldest first."""
        return sorted(self._manager.all_steps())

    def restore(
        self, step: int | None = None, *, abstract_state: Any
    ) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint `step` (default: the latest) onto the shardings of `abstract_state`.

        Args:
          step: which checkpoint; None for the latest.
          abstract_state: pytree of `jax.ShapeDtypeStruct` with `.sharding` set, shaped like the
            saved state. The arrays come back with these shardings, whatever mesh wrote them.

        Returns:
          (state, extra).

        Raises:
          FileNotFoundError: there is no checkpoint (at `step`).
        """
        # A save in flight may be the very step asked for; let it commit first.
        self._manager.wait_until_finished()
        if step is None:
            step = self._manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
        elif step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}")
        _check_abstract(abstract_state)
        args = ocp.args.Composite(
            **{_STATE: ocp.args.StandardRestore(abstract_state), _EXTRA: ocp.args.JsonRestore()}
        )
        restored = self._manager.restore(step, args=args)
        return restored[_STATE], dict(restored[_EXTRA])

    def restore_newest(self, *, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """Restores the newest checkpoint that restores: (step, state, extra), or None when
        there is no checkpoint at all.

        Newer checkpoints that fail (a truncated or corrupted file) are renamed
        `<step>.unreadable` beside the others, with a warning that says why, so that the run
        goes on from the one before and saves its steps again.

        Raises:
          CheckpointError: there are checkpoints, and none of them restores (none is renamed:
            the cause may be the code or config rather than the files).
        """
        self._manager.wait_until_finished()
        failed: list[tuple[int, str]] = []
        for step in reversed(self.all_steps()):
            try:
                self._quiet.every = True
                state, extra = self.restore(step, abstract_state=abstract_state)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
                failed.append((step, _first_line(err)))
                continue
            finally:
                self._quiet.every = False
            for bad, reason in failed:
                self._set_aside(bad, reason)
            if failed:
                self._manager.reload()
            return step, state, extra
        if not failed:
            return None
        reasons = "; ".join(f"step {s}: {r}" for s, r in failed[:3])
        raise CheckpointError(
            f"no checkpoint in {self.directory} restores ({reasons}); if the files are "
            "damaged, move the folder aside to start over"
        )

    def _set_aside(self, step: int, reason: str) -> None:
        log.info("checkpoint step %d does not restore (%s)", step, reason)
        if jax.process_index() == 0:
            target = self.directory / f"{step}{UNREADABLE}"
            suffix = 1
            while target.exists():
                target, suffix = self.directory / f"{step}{UNREADABLE}.{suffix}", suffix + 1
            os.replace(self.directory / str(step), target)
            print(f"checkpoint step {step} does not restore ({reason}); "
                  f"kept as {target.name}, resuming from the one before", flush=True)  # fmt: skip
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set-aside-{step}")

    def restore_part(self, abstract_part: Any, step: int | None = None) -> Any:
        """Restores only the leaves of the state that `abstract_part` names (default step:
        the latest): e.g. `{"params": {...}}` of a model without its optimiser moments.

        Args:
          abstract_part: a strict subtree of the saved state, as nested dicts of
            `jax.ShapeDtypeStruct` with `.sharding` set.
          step: which checkpoint; None for the latest.

        Raises:
          FileNotFoundError: there is no checkpoint (at `step`).
        """
        self._manager.wait_until_finished()
        step = self._manager.latest_step() if step is None else step
        if step is None or step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint{'' if step is None else f' for step {step}'} "
                                    f"in {self.directory}")  # fmt: skip
        _check_abstract(abstract_part)
        restore_args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding),
                                    abstract_part)  # fmt: skip
        args = ocp.args.PyTreeRestore(abstract_part, restore_args, partial_restore=True)
        return self._manager.restore(step, args=ocp.args.Composite(**{_STATE: args}))[_STATE]

    def saved_tree(self, step: int | None = None) -> Any:
        """The saved state's tree metadata (shapes and dtypes, no arrays); default: latest."""
        step = self._manager.latest_step() if step is None else step
        metadata = ocp.PyTreeCheckpointHandler().metadata(
            epath.Path(self.directory) / str(step) / _STATE
        )
        return metadata.tree

    def wait(self) -> None:
        """Blocks until any asynchronous save has been committed.

        Raises:
          CheckpointError: that save failed (the older checkpoints are intact).
        """
        with self._writing():
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases orbax's threads."""
        try:
            with self._writing():
                self._manager.close()
        finally:
            logging.getLogger("absl").removeFilter(self._quiet)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DropReraisedErrors(logging.Filter):
    """Drops orbax's own ERROR records that carry an exception: the same exception reaches
    the caller, which reports it in one line (orbax logs each failed save with several
    tracebacks, from every thread it touched)."""

    every = False  # also those without one (while trying checkpoints that may be broken)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and (record.exc_info or self.every)
                    and "orbax" in record.pathname)  # fmt: skip


class _DropUnretrieved(logging.Filter):
    """Drops asyncio's "exception was never retrieved" records of orbax's work."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "exception was never retrieved" not in message:
            return True
        if "orbax" in message or "_GatheringFuture" in message:
            return False
        tb = record.exc_info[2] if record.exc_info else None
        files = [frame.filename for frame in traceback.extract_tb(tb)] if tb else []
        return not any("orbax" in f or "etils" in f for f in files)


def _quiet_abandoned_work() -> None:
    """Silences the echoes of a failed save or restore, which come from orbax's threads
    as soon as it fails, before the error reaches the caller: orbax's abandoned asyncio
    tasks report the error again when collected, and tensorstore's late callbacks find
    their event loop closed (an 'Exception ignored' traceback each). The error itself
    reaches the caller as one line (`CheckpointError`). Installed once per process."""
    if getattr(sys.unraisablehook, "_musicgen_quiet", False):
        return
    logging.getLogger("asyncio").addFilter(_DropUnretrieved())
    previous = sys.unraisablehook

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError)
                and str(unraisable.exc_value) == "Event loop is closed"):  # fmt: skip
            previous(unraisable)

    hook._musicgen_quiet = True
    sys.unraisablehook = hook


def _release_waiting_threads() -> None:
    """Lets orbax's background threads of a failed save end.

    In orbax 0.12 a save's threads wait for each other's signals; one that fails (a full
    disk, a read-only folder) never sends its own, so the others wait for orbax's 20-minute
    timeout and, not being daemons, keep the process alive after the error is reported.
    Cancelling them and sending what they wait for ends them at once. Only private names
    of orbax reach this; where they differ (another orbax version), nothing is done.
    """
    try:
        from orbax.checkpoint._src.futures import future, signaling_client
    except ImportError:
        return
    thread_type = getattr(future, "_SignalingThread", None)
    contract = getattr(future, "AwaitableSignalsContract", None)
    if thread_type is None or contract is None:
        return
    # The cancelled threads' coroutines are never awaited: not worth a warning at exit.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    client = signaling_client.get_signaling_client()
    for thread in threading.enumerate():
        if not isinstance(thread, thread_type) or not thread.is_alive():
            continue
        thread._cancelled = True
        for wanted in getattr(thread, "_receive_signals", ()):
            key = contract.get_unique_awaitable_singal_key(wanted, thread._operation_id)
            with contextlib.suppress(Exception):  # already sent: nothing to release
                client.key_value_set(key, "released", allow_overwrite=True)


def _check_abstract(abstract_state: Any) -> None:
    # Without a sharding orbax would guess one (or fall back to the saved one, which may name
    # devices this process does not have); insist on an explicit target.
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state):
        if not isinstance(leaf, jax.ShapeDtypeStruct) or leaf.sharding is None:
            raise TypeError(
                f"abstract_state{jax.tree_util.keystr(path)} must be a jax.ShapeDtypeStruct "
                f"with .sharding set, got {leaf!r}"
            )


_Handler = Callable[[int, types.FrameType | None], Any] | int | None


class PreemptionGuard:
    """Context manager that turns SIGTERM and SIGINT into a flag the trainer polls.

    The handlers only record the signal; the trainer checks `requested` after each step, saves
    with `force=True`, calls `wait()` and returns. Signals that arrive after the first one (a
    second Ctrl-C while the checkpoint is being written) are counted and a note is written to
    stderr, but they do not interrupt the save: a half-finished save would be discarded anyway,
    so interrupting it only loses work. To abort for real, send SIGKILL (or Ctrl-\\ for
    SIGQUIT); the previous checkpoint stays intact because orbax commits by rename. On leaving
    the context the previous handlers are restored.

    Must be entered in the main thread (Python delivers signals only there).

    On multi-host runs a signal may reach only some processes; call `requested_any_process()`
    (a collective: every process, every time) so that all of them decide to save together.
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._signal: signal.Signals | None = None
        self._count = 0
        self._previous: dict[signal.Signals, _Handler] = {}

    @property
    def requested(self) -> bool:
        """Whether a SIGTERM or SIGINT arrived inside the context."""
        return self._signal is not None

    @property
    def signal(self) -> signal.Signals | None:
        """The first signal received, or None."""
        return self._signal

    @property
    def count(self) -> int:
        """How many signals arrived in all."""
        return self._count

    def requested_any_process(self) -> bool:
        """`requested` OR-ed over all processes (a collective on multi-host runs)."""
        if jax.process_count() == 1:
            return self.requested
        import numpy as np
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
        return bool(np.any(flags))

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        del frame
        self._count += 1
        if self._signal is None:
            self._signal = signal.Signals(signum)
            return
        # os.write is safe here; logging takes locks the interrupted code may hold.
        name = signal.Signals(signum).name
        os.write(
            2,
            f"[PreemptionGuard] {name} again ({self._count}): finishing the checkpoint first; "
            "send SIGKILL to abort (the previous checkpoint stays usable).\n".encode(),
        )

    def __enter__(self) -> PreemptionGuard:
        for sig in self._SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            # None means the handler was not installed from Python; the default is the honest
            # fallback then.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
