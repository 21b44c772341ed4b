"""The one launcher: `musicgen train --config experiments/<name>.py[:arg] --workdir DIR`.

It joins the distributed job (a no-op on one host), loads the experiment, writes the
resolved config into the workdir, builds the family that the config names and hands it
to `mgcore.trainer.train`, which resumes from the workdir's latest checkpoint by itself.
A notebook calls `run(...)` exactly as the CLI does.

An experiment's root config is a frozen dataclass with at least these fields:

- `family`: a registered name (`mgcore.families.FAMILIES`) or the dotted path of any
  module that defines `make_family(config) -> Family` (a research fork adds a family
  without editing the registry);
- `optimizer: OptimizerConfig`, `train: TrainConfig`, `mesh: MeshConfig`.

A workdir belongs to one config. Running again with the same config (or with no
`--config`: the saved one is used) resumes; changing only `train.*` fields (more steps,
another logging cadence) is allowed and recorded; changing anything else is an error,
because the checkpoint was trained under the old model and data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgcore import distributed
from mgcore.config import (
    ConfigError,
    apply_overrides,
    load_experiment,
    load_saved_config,
    save_config,
    to_dict,
)
from mgcore.families import make_family
from mgcore.lock import WorkdirLock
from mgcore.optim import OptimizerConfig
from mgcore.sharding import MeshConfig
from mgcore.trainer import TrainConfig, train
from musicgen.synth.build import synth_dataset

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"

# Sections of the config that may change between runs in one workdir.
_RESUMABLE_CHANGES = ("train.",)


def _check_root(config: Any, source: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(config)}
    wanted = {"family": str, "optimizer": OptimizerConfig, "train": TrainConfig,
              "mesh": MeshConfig}  # fmt: skip
    for name, kind in wanted.items():
        if name not in fields or not isinstance(getattr(config, name), kind):
            raise ConfigError(
                f"{source}: the root config needs a field {name!r} of type {kind.__name__} "
                "to be trained with `musicgen train`"
            )


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def resolve_config(
    config_spec: str | None, workdir: str | os.PathLike, overrides: Sequence[str] = ()
) -> Any:
    """The config this run trains with: from `config_spec`, or the workdir's saved one.

    Args:
      config_spec: "experiments/x.py[:arg]", or None to resume the workdir's config.
      workdir: the run's folder.
      overrides: "a.b=value" strings.

    Raises:
      ConfigError: no config anywhere, or one that contradicts the workdir's run.
    """
    saved_path = Path(workdir) / CONFIG_FILE
    saved = load_saved_config(saved_path) if saved_path.exists() else None
    if config_spec is None:
        if saved is None:
            raise ConfigError(f"{workdir} holds no {CONFIG_FILE}; pass --config experiments/X.py")
        config = apply_overrides(saved, overrides)
    else:
        config = load_experiment(config_spec, overrides)
    _check_root(config, config_spec or str(saved_path))
    if saved is not None:
        changes = _differences(to_dict(saved), to_dict(config))
        fixed = [c for c in changes if not c.startswith(_RESUMABLE_CHANGES)]
        if fixed:
            raise ConfigError(
                f"{workdir} holds a run of another config ({'; '.join(fixed[:3])}); "
                "use a new --workdir, or run without --config to resume the saved one"
            )
        for change in changes:
            log.warning("config change on resume: %s", change)
    return config


def ensure_embedded_data(config: Any) -> None:
    """Renders the embedded dataset where the config expects it, if it asks for that.

    A config whose `data` section has `manifest` and `embedded_hours > 0` trains on the
    embedded dataset; when the manifest is missing, process 0 renders it (a rerun
    resumes a partial render) and the other processes wait for it.
    """
    data = getattr(config, "data", None)
    manifest = getattr(data, "manifest", None)
    hours = getattr(data, "embedded_hours", 0.0)
    if not manifest or hours <= 0 or Path(manifest).exists():
        return
    if Path(manifest).name != "manifest.jsonl":
        raise ConfigError(
            f"data.manifest {manifest} is missing and can't be rendered: the embedded "
            "dataset's manifest is called manifest.jsonl; point data.manifest at one"
        )
    if distributed.is_main_process():
        out = Path(manifest).parent
        log.warning("%s is missing: rendering %.2f h of the embedded dataset into %s",
                    manifest, hours, out)  # fmt: skip
        print(f"rendering {hours:g} h of the embedded dataset into {out} (once)")
        synth_dataset(out, hours, seed=0)
    distributed.barrier("embedded-data")


def use_compilation_cache(directory: str | os.PathLike | None = None) -> None:
    """Keeps compiled programs on disk, so a resumed or repeated run skips compiling.

    A preempted job that restarts would otherwise spend minutes recompiling the same
    step. Respects a cache the user configured (`JAX_COMPILATION_CACHE_DIR`); default
    `$XDG_CACHE_HOME/musicgen-jax/xla` (`~/.cache/...`).
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    if directory is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        directory = Path(base) / "musicgen-jax" / "xla"
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run(
    config_spec: str | None,
    workdir: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    progress: bool = True,
) -> dict:
    """Trains (or resumes) the experiment in `workdir`; returns the last logged metrics.

    Args:
      config_spec: "experiments/x.py[:arg]", or None to resume the workdir's saved config.
      workdir: the run's folder (config.json, checkpoints/, metrics.jsonl, wandb/).
      overrides: "a.b=value" strings, type-checked against the config.
      progress: show a progress bar.

    Raises:
      mgcore.trainer.Preempted: stopped by SIGTERM/SIGINT after saving (run again to
        resume; `musicgen train` exits 75).
      WorkdirError, CheckpointError, ConfigError, NonFiniteError: one-line failures.
    """
    distributed.initialize()
    use_compilation_cache()
    config = resolve_config(config_spec, workdir, overrides)
    workdir = Path(workdir)
    # One trainer per workdir: process 0 holds the lock for the whole run (the other
    # processes of the same job share the workdir by design).
    lock = WorkdirLock(workdir) if distributed.is_main_process() else contextlib.nullcontext()
    with lock:
        if distributed.is_main_process():
            save_config(config, workdir / CONFIG_FILE)
        ensure_embedded_data(config)
        family = make_family(config)
        return train(
            family,
            config.optimizer,
            config.train,
            workdir,
            mesh_config=config.mesh,
            config_dict=to_dict(config),
            progress=progress,
        )
