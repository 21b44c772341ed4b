"""One helper that joins the processes of a multi-host job (after MaxText and levanter).

`initialize()` is called once at the top of every entry point, before anything touches
a JAX device. On one host it does nothing, so the same launcher runs on a laptop, a
SLURM GPU cluster and a TPU pod slice. The process count comes from, in order:

1. the arguments;
2. `MUSICGEN_COORDINATOR` (host:port), `MUSICGEN_NUM_PROCESSES`, `MUSICGEN_PROCESS_ID`;
3. SLURM (`SLURM_NTASKS` > 1 inside `srun`): JAX reads the rest of the SLURM environment;
4. a Cloud TPU VM: `TPU_WORKER_HOSTNAMES` with several hosts, or, where that variable is
   absent, JAX's own detection from the TPU metadata server.
"""

from __future__ import annotations

import logging
import os

import jax

_log = logging.getLogger(__name__)
_initialized = False


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _on_tpu_vm() -> bool:
    # The same check JAX uses: TPU VMs expose the chips as /dev/accel* or /dev/vfio.
    return os.path.exists("/dev/accel0") or os.path.isdir("/dev/vfio")


def _detect_num_processes() -> int | None:
    """Process count from the environment; None when only JAX can tell (TPU metadata)."""
    if (n := _env_int("MUSICGEN_NUM_PROCESSES")) is not None:
        return n
    for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        if (n := _env_int(name)) is not None:
            return n
    if hosts := os.environ.get("TPU_WORKER_HOSTNAMES"):
        return len([h for h in hosts.split(",") if h])
    if _on_tpu_vm():
        return None
    return 1


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins the JAX distributed system when the job has more than one process.

    Idempotent: later calls (and calls after someone else's `jax.distributed.initialize`)
    only log. On CPU, cross-process collectives go through gloo.

    Args:
      coordinator_address: `host:port` of process 0; from `MUSICGEN_COORDINATOR` or the
        cluster environment when None.
      num_processes: total process count; detected from the environment when None.
      process_id: this process's index; from `MUSICGEN_PROCESS_ID` or the cluster when
        None.
    """
    global _initialized
    if _initialized or jax.distributed.is_initialized():
        _initialized = True
        _log_topology()
        return
    coordinator_address = coordinator_address or os.environ.get("MUSICGEN_COORDINATOR")
    if num_processes is None:
        num_processes = _detect_num_processes()
    if process_id is None:
        process_id = _env_int("MUSICGEN_PROCESS_ID")
    _log.info(
        "distributed: planning %s processes (this is process %s, coordinator %s)",
        "auto-detected" if num_processes is None else num_processes,
        process_id,
        coordinator_address,
    )
    if num_processes == 1:
        _initialized = True
        _log_topology()
        return
    # The setting only concerns the CPU client: harmless on GPU/TPU, and without it CPU
    # processes cannot run collectives across each other.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # Arguments left None are filled in by JAX's cluster detection (SLURM, TPU, ...).
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    _initialized = True
    _log_topology()


def _log_topology() -> None:
    _log.info(
        "distributed: process %d of %d; %d local devices, %d global devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.default_backend(),
    )


def is_main_process() -> bool:
    """True on process 0, the one that writes logs, metrics and checkpoints' metadata."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier `name`; returns at once on one host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
