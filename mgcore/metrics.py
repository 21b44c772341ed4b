"""One metrics writer for every model family: a JSONL file always, wandb too.

Only process 0 writes; on every other process the writer does nothing, so the
trainer calls it unconditionally. wandb runs offline unless told to go online
(`mode="online"`, which needs `WANDB_API_KEY` or a prior `wandb login`), so a
run on a machine without network works and can be synced later with
`wandb sync WORKDIR/wandb`. The run id is kept in the workdir, so a resumed
run continues the same wandb run. Audio samples and spectrogram images go to
wandb and, as FLAC and PNG, under `WORKDIR/samples/`.

A run resumed from step N first drops the rows after step N from `metrics.jsonl`
(steps a killed run logged after its last checkpoint, which the resumed run logs
again), so the file has each step once. A write that fails (a full disk, a folder
made read-only) raises `WorkdirError` in one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Literal

import numpy as np

from mgcore.audio import save_audio
from mgcore.lock import unwritable

log = logging.getLogger(__name__)

WandbMode = Literal["offline", "online", "disabled"]


def _is_main_process() -> bool:
    import jax

    return jax.process_index() == 0


class MetricsWriter:
    """Writes scalars, audio and images for one run.

    Args:
        workdir: the run's folder; `metrics.jsonl`, `samples/` and `wandb/` go here.
        config: the resolved config, recorded with the wandb run.
        mode: wandb mode; "offline" by default.
        project: wandb project name.
        name: wandb run name (default: the workdir's name).
        resume_step: the step the run resumes from: rows after it are dropped from
            `metrics.jsonl` first (None: keep every row).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        config: dict | None = None,
        mode: WandbMode = "offline",
        project: str = "musicgen-jax",
        name: str | None = None,
        resume_step: int | None = None,
    ):
        self.workdir = Path(workdir)
        self.active = _is_main_process()
        self._run = None
        self._file = None
        if not self.active:
            return
        path = self.workdir / "metrics.jsonl"
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if resume_step is not None and path.exists():
                _drop_rows_after(path, resume_step)
            self._file = path.open("a", encoding="utf-8")
        except OSError as err:
            raise unwritable(path, err) from err
        if mode != "disabled":
            self._run = self._start_wandb(config or {}, mode, project, name)

    def _start_wandb(self, config: dict, mode: WandbMode, project: str, name: str | None):
        import wandb

        if mode == "online" and not os.environ.get("WANDB_API_KEY"):
            log.warning("wandb online without WANDB_API_KEY: relying on a prior `wandb login`")
        id_file = self.workdir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id + "\n")
        os.environ.setdefault("WANDB_SILENT", "true")
        return wandb.init(
            project=project,
            name=name or self.workdir.name,
            id=run_id,
            resume="allow",
            dir=str(self.workdir),
            mode=mode,
            config=config,
        )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Logs scalar metrics at `step` (values are converted with float())."""
        if not self.active:
            return
        row = {k: float(v) for k, v in values.items()}
        try:
            self._file.write(json.dumps({"step": int(step), "time": time.time(), **row}) + "\n")
            self._file.flush()
        except OSError as err:
            raise unwritable(self._file.name, err) from err
        if self._run is not None:
            self._run.log(row, step=int(step))

    def audio(self, step: int, name: str, audio: np.ndarray, sample_rate: int) -> Path | None:
        """Logs a `[channels, samples]` (or `[samples]`) clip; also written as FLAC."""
        if not self.active:
            return None
        audio = np.asarray(audio, np.float32)
        path = save_audio(self._sample_path(step, name, ".flac"), audio, sample_rate)
        if self._run is not None:
            import wandb

            clip = audio if audio.ndim == 1 else audio.T  # wandb takes [samples, channels]
            self._run.log({name: wandb.Audio(clip, sample_rate=sample_rate)}, step=int(step))
        return path

    def image(self, step: int, name: str, image: np.ndarray) -> Path | None:
        """Logs a `[height, width]` array (e.g. a log-mel spectrogram, low frequencies at
        the bottom after flipping) as a greyscale image; also written as PNG."""
        if not self.active:
            return None
        from PIL import Image

        data = np.asarray(image, np.float64)
        lo, hi = np.nanmin(data), np.nanmax(data)
        pixels = ((data - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)[::-1]
        path = self._sample_path(step, name, ".png")
        Image.fromarray(pixels).save(path)
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Image(str(path))}, step=int(step))
        return path

    def _sample_path(self, step: int, name: str, suffix: str) -> Path:
        folder = self.workdir / "samples" / f"step_{int(step):08d}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / (name.replace("/", "_") + suffix)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._run is not None:
            self._run.finish()
            self._run = None


def _drop_rows_after(path: Path, step: int) -> None:
    """Rewrites `path` (atomically) without the rows logged after `step`, and without a
    last line that a killed process left half-written."""
    kept, dropped = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(row, dict) and row.get("step", 0) > step:
                dropped += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)
        log.info("dropped %d rows after step %d from %s", dropped, step, path)


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The rows of `WORKDIR/metrics.jsonl`, in order."""
    path = Path(workdir) / "metrics.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Throughput:
    """Steps and examples per second since the last log, and the host's memory."""

    def __init__(self):
        self.started, self.steps, self.examples = time.perf_counter(), 0, 0

    def add(self, rows: int) -> None:
        self.steps, self.examples = self.steps + 1, self.examples + rows

    def take(self) -> dict:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        out = {
            "steps_per_second": max(self.steps, 1) / seconds,
            "examples_per_second": self.examples / seconds,
            "host_memory_mb": host_memory_mb(),
        }
        self.started, self.steps, self.examples = time.perf_counter(), 0, 0
        return out


def host_memory_mb() -> float:
    """This process's resident set size in MiB (current, not peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # not Linux: peak RSS is the best we can get
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
