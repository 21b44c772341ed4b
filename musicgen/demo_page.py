"""The demo's page: one section per generation, with the controls asked beside what the
harness measures in the audio (`musicgen.evaluation.checks`), a player and a spectrogram."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np

from mgcore import dsp
from musicgen.controls.types import Controls
from musicgen.evaluation.checks import Check


@dataclasses.dataclass
class Item:
    """One generation of the demo.

    Attributes:
      kind: its heading ("prompt 1", "30 s by sliding window", "continuation").
      prompt: the text it was generated from (None: none).
      audio: 44.1 kHz `[C, T]`.
      controls: what it was generated with (`MusicGen.controls_used`).
      source: where those controls came from, for people.
      checks: asked against heard (empty: nothing asked, or no checks made).
      notes: further lines (a continuation's clip against its new part).
      stem: the file names' stem.
    """

    kind: str
    prompt: str | None
    audio: np.ndarray
    controls: Controls
    source: str
    checks: list[Check]
    stem: str
    notes: list[str] = dataclasses.field(default_factory=list)


def spectrogram_png(wav_CxT: np.ndarray, rate: int, path: Path, title: str) -> Path:
    """A log-mel spectrogram of `wav_CxT` (128 bands, seconds on the x axis) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = np.asarray(dsp.log_mel_spectrogram(wav_CxT.mean(0), rate, 2048, 512, 128))
    seconds = wav_CxT.shape[-1] / rate
    fig, ax = plt.subplots(figsize=(min(18, 6 + 0.3 * seconds), 3))
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, 128))
    ax.set(xlabel="seconds", ylabel="mel band")
    ax.set_title(title[:110], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def score(items: list[Item]) -> tuple[int, int]:
    """(checks passed, checks graded) over the page."""
    graded = [c for item in items for c in item.checks if c.ok is not None]
    return sum(c.ok for c in graded), len(graded)


def checks_table(checks: list[Check]) -> str:
    """One generation's controls, asked against measured, as an HTML table (with the
    marks' classes `ok`, `bad` and `none`)."""
    if not checks:
        return "<p class=none>No control asked that the harness measures.</p>"
    rows = "".join(
        f"<tr class={'ok' if c.ok else 'none' if c.ok is None else 'bad'}>"
        f"<td>{html.escape(c.control)}</td><td>{html.escape(c.asked)}</td>"
        f"<td>{html.escape(c.heard or 'not measured')}"
        f"{' (' + html.escape(c.grade) + ')' if c.grade and not c.ok else ''}</td>"
        f"<td class=mark>{c.mark}</td></tr>"
        for c in checks
    )
    return ("<table><tr><th>control</th><th>asked</th><th>measured</th><th></th></tr>"
            f"{rows}</table>")  # fmt: skip


def index_html(items: list[Item], timings: dict, title: str, judge: str | None) -> str:
    """The page (module docstring)."""
    sections = []
    for item in items:
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in item.notes)
        sections.append(
            f"<section><h2>{html.escape(item.kind)}</h2>"
            f"<p class=prompt>{html.escape(item.prompt or '(no prompt)')}</p>"
            f"<p>controls: {html.escape(item.controls.describe())} "
            f"<span class=source>({html.escape(item.source)})</span></p>"
            f"{notes}{checks_table(item.checks)}"
            f'<audio controls preload=none src="{item.stem}.wav"></audio>'
            f'<img src="{item.stem}.png" alt="log-mel spectrogram"></section>'
        )
    passed, graded = score(items)
    listener = (
        f"instruments by the judge in {html.escape(judge)}"
        if judge
        else "no judge found, so instruments are not measured"
    )
    times = "".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in timings.items())
    return (
        "<!doctype html><meta charset=utf-8><title>musicgen demo</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "img{width:100%}audio{width:100%}.prompt{font-style:italic}.source{color:#666}"
        "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}"
        ".ok .mark{color:#080}.bad .mark{color:#c00}.none{color:#666}.mark{font-size:120%}"
        "</style>"
        f"<h1>musicgen demo</h1><p>{html.escape(title)}</p>"
        f"<p><b>{passed} of {graded}</b> measured controls as asked: tempo within 4 % "
        "(librosa), key and mode (chroma against key profiles), each instrument heard with "
        f"probability over 0.5 ({listener}); the measures of <code>musicgen eval "
        "generate</code>.</p>" + "".join(sections) + f"<h2>Time per stage</h2><ul>{times}</ul>\n"
    )
