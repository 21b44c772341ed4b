"""One metrics writer for every model family: a JSONL file always, wandb too.

Only process 0 writes; on every other process the writer does nothing, so the
trainer calls it unconditionally. wandb runs offline unless told to go online
(`mode="online"`, which needs `WANDB_API_KEY` or a prior `wandb login`), so a
run on a machine without network works and can be synced later with
`wandb sync WORKDIR/wandb`. The run id is kept in the workdir, so a resumed
run continues the same wandb run. Audio samples and spectrogram images go to
wandb and, as FLAC and PNG, under `WORKDIR/samples/`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Literal

import numpy as np

from mgcore.audio import save_audio

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
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        config: dict | None = None,
        mode: WandbMode = "offline",
        project: str = "musicgen-jax",
        name: str | None = None,
    ):
        self.workdir = Path(workdir)
        self.active = _is_main_process()
        self._run = None
        self._file = None
        if not self.active:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._file = (self.workdir / "metrics.jsonl").open("a", encoding="utf-8")
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
        self._file.write(json.dumps({"step": int(step), "time": time.time(), **row}) + "\n")
        self._file.flush()
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


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The rows of `WORKDIR/metrics.jsonl`, in order."""
    path = Path(workdir) / "metrics.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
