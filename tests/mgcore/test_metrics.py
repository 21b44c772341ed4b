"""The metrics writer: JSONL rows, samples on disk, wandb offline resuming the same run."""

import errno

import numpy as np
import pytest
from PIL import Image

from mgcore.lock import WorkdirError
from mgcore.metrics import MetricsWriter, read_metrics


def test_scalars_go_to_jsonl_and_survive_a_restart(tmp_path):
    writer = MetricsWriter(tmp_path, mode="disabled")
    writer.scalars(1, {"loss": 2.5, "lr": np.float32(1e-3)})
    writer.close()
    writer = MetricsWriter(tmp_path, mode="disabled")  # a resumed run appends
    writer.scalars(2, {"loss": 2.0})
    writer.close()
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 2.5), (2, 2.0)]
    assert rows[0]["lr"] == float(np.float32(1e-3))


def test_audio_and_images_are_written(tmp_path, rng):
    writer = MetricsWriter(tmp_path, mode="disabled")
    clip = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    path = writer.audio(10, "eval/reconstruction", clip, 16000)
    assert path.name == "eval_reconstruction.flac" and path.parent.name == "step_00000010"
    spec = np.outer(np.arange(64), np.ones(100))  # rising with frequency
    png = np.asarray(Image.open(writer.image(10, "eval/mel", spec)))
    assert png.shape == (64, 100) and png[0, 0] == 255 and png[-1, 0] == 0  # low at bottom
    writer.close()


def test_wandb_offline_keeps_one_run_id_across_restarts(tmp_path):
    ids = []
    for step in (1, 2):
        writer = MetricsWriter(tmp_path, config={"lr": 1e-3}, mode="offline")
        writer.scalars(step, {"loss": 1.0 / step})
        ids.append(writer._run.id)
        writer.close()
    assert ids[0] == ids[1] == (tmp_path / "wandb_run_id").read_text().strip()
    assert any((tmp_path / "wandb").glob("offline-run-*"))
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 2]


def test_a_resumed_run_drops_the_rows_after_its_checkpoint_and_a_torn_last_line(tmp_path):
    writer = MetricsWriter(tmp_path, mode="disabled")
    for step in (1, 2, 3, 4):
        writer.scalars(step, {"loss": float(step)})
    writer.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')  # SIGKILL in the middle of a write
    writer = MetricsWriter(tmp_path, mode="disabled", resume_step=2)
    writer.scalars(3, {"loss": 30.0})
    writer.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [
        (1, 1.0), (2, 2.0), (3, 30.0)
    ]  # fmt: skip


def test_a_failed_write_is_one_line_naming_the_file(tmp_path):
    writer = MetricsWriter(tmp_path, mode="disabled")

    class FullDisk:
        name = str(tmp_path / "metrics.jsonl")

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer._file = FullDisk()
    with pytest.raises(WorkdirError, match=r"can't write .*metrics.jsonl: No space left on "
                       "device; free disk space"):  # fmt: skip
        writer.scalars(1, {"loss": 1.0})
