"""Loads a pipeline (and a judge) and serves the app's page on a local port."""

from __future__ import annotations

import os
from pathlib import Path

from musicgen import inputs
from musicgen.app.studio import MAX_UPLOAD_SECONDS, Studio
from musicgen.evaluation.judge.api import Judge, default_judge
from musicgen.pipeline import MusicGen

PORTS = inputs.Range(1, 65535, integer=True)


def pipeline_judge(checkpoint, judge) -> Path | None:
    """The judge to measure instruments with: `judge`, else the pipeline folder's own
    (`judge/`, as `musicgen finetune` writes), else `default_judge`'s."""
    if judge is not None:
        if not Path(judge).is_dir():
            raise inputs.BadArgument(f"--judge {judge}: not a folder; name a saved judge")
        return Path(judge)
    own = Path(checkpoint) / "judge" if checkpoint is not None else None
    return own if own is not None and own.is_dir() else default_judge(None)


def serve(
    checkpoint: str | os.PathLike | None = None,
    *,
    out_dir: str | os.PathLike = "out/app",
    host: str = "127.0.0.1",
    port: int = 7860,
    judge: str | os.PathLike | None = None,
    adapter: str | os.PathLike | None = None,
    max_upload_seconds: float = MAX_UPLOAD_SECONDS,
    block: bool = True,
):
    """Serves the app for `checkpoint` (a pipeline or Hugging Face MusicGen folder; None:
    the reference model) at http://host:port, writing results into `out_dir`.

    Returns the Gradio Blocks (running; `.close()` stops it) when `block` is False;
    else serves until interrupted.
    """
    port = inputs.number(port, "port", PORTS)
    out = inputs.output_folder(out_dir)
    judge_dir = pipeline_judge(checkpoint, judge)
    mg = MusicGen.from_pretrained(checkpoint, adapter=adapter)
    listener = Judge.from_pretrained(judge_dir) if judge_dir is not None else None
    studio = Studio(mg, out, listener, max_upload_seconds)

    from musicgen.app.page import CSS, build_page, theme

    name = str(checkpoint) if checkpoint is not None else "the reference model"
    page = build_page(studio, name)
    page.queue(default_concurrency_limit=1)
    try:
        page.launch(
            server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
            allowed_paths=[str(out.resolve())], max_file_size="500mb", css=CSS,
            theme=theme(), ssr_mode=False, footer_links=[],
        )  # fmt: skip
    except OSError as err:  # the port is taken
        raise inputs.BadArgument(f"--port {port}: {err}; choose another port") from None
    print(f"musicgen app: {name} on http://{host}:{port} (results in {out}); Ctrl-C stops")
    if not block:
        return page
    try:
        page.block_thread()
    finally:
        page.close()
    return page
