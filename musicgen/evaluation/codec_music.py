"""What a listener notices through the codec: `musicgen eval codec`'s music rows.

Waveform and spectral distances (`codec.eval`) say how far a round trip is from the
clip, not whether the music survived it. For every clip of the split, the real clip and
each decoding (first k codebooks, resampled to 44.1 kHz) are scored against the clip's
caption and attributes with the estimators of `musicgen eval generate`
(`scoring.measure` and `scoring.summarise`): the estimated key and mode against the
labelled ones, the estimated tempo against the labelled bpm (drum-bearing clips), and,
with a judge, the share of clips whose captioned instruments the judge hears and the
judge's text-audio similarity (CLAP score). The real clips' row is the ceiling of each
figure: what the estimators get right on the music before any codec touches it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from codec.eval import CodecReport, evaluate_codec
from codec.eval import write_report as write_signal_report
from musicgen.evaluation import scoring
from musicgen.evaluation.prompts import asked
from musicgen.evaluation.report import cell, spectrograms

REAL = "real clips"
COLUMNS = (  # key, header, format
    ("key_match", "key ✓", "share"),
    ("tempo_match", "tempo ✓", "share"),
    ("instruments_match", "instruments ✓", "share"),
    ("clap", "CLAP ↑", "float"),
)


def row_name(k: int | None) -> str:
    return REAL if k is None else f"{k} codebook" + ("s" if k > 1 else "")


class Listener:
    """Scores each clip and decoding as `evaluate_codec` hands them over (its `listen`)."""

    def __init__(self, judge=None):
        self.judge = judge
        self.clips: list[scoring.Clip] = []
        self.text: list[np.ndarray] = []
        self.scored: dict[str, list[scoring.Scored]] = {}
        self.first: dict[str, np.ndarray] = {}  # the first clip and its decodings, mono

    def __call__(self, entry: dict, k: int | None, audio_CxT: np.ndarray) -> None:
        if k is None:
            caption = entry.get("caption") or ""
            wants = asked(caption, entry.get("attributes") or {})
            self.clips.append(scoring.Clip(entry, caption, "caption", wants, np.zeros((1, 0))))
            if self.judge is not None:
                self.text.append(self.judge.text_embeddings([caption]))
        clip = self.clips[-1]
        text = self.text[-1] if self.judge is not None else None
        scored = scoring.measure([audio_CxT], scoring.REAL_RATE, [clip], self.judge, text)
        self.scored.setdefault(row_name(k), []).append(scored)
        if len(self.clips) == 1:
            self.first[row_name(k)] = np.asarray(audio_CxT).mean(axis=0)

    def rows(self) -> dict[str, dict]:
        """One `scoring.summarise` row per set of audio, the real clips first."""
        instruments = self.judge.instruments if self.judge is not None else ()
        config = scoring.GenerateEvalConfig()
        return {
            name: scoring.summarise(_joined(parts), self.clips, config, instruments=instruments)
            for name, parts in self.scored.items()
        }


def _joined(parts: list[scoring.Scored]) -> scoring.Scored:
    def stack(name):
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return scoring.Scored(
        tempo=[t for p in parts for t in p.tempo],
        key=[k for p in parts for k in p.key],
        probs_NxL=stack("probs_NxL"),
        embed_NxD=stack("embed_NxD"),
        clap_N=stack("clap_N"),
        copied_frames=None,
    )


def evaluate_codec_music(
    checkpoint, manifest, *, judge=None, **kwargs
) -> tuple[CodecReport, dict[str, np.ndarray]]:
    """`codec.eval.evaluate_codec` with the music rows (`report.music`) filled in, and the
    first clip with its decodings (mono, 44.1 kHz) by row name, to look at.

    Args:
      checkpoint: anything `Codec.from_pretrained` loads.
      manifest: the manifest (JSONL) with captions and attributes.
      judge: a loaded `Judge` (None: key and tempo only).
      **kwargs: `evaluate_codec`'s options (split, n_codebooks, max_clips, seconds, ...).
    """
    listener = Listener(judge)
    report = evaluate_codec(checkpoint, manifest, listen=listener, **kwargs)
    report.music = listener.rows()
    return report, listener.first


def markdown(report: CodecReport) -> str:
    """The signal tables, then the music table when the report has one."""
    text = report.markdown()
    if not report.music:
        return text
    lines = [
        "",
        "What a listener notices, against each clip's caption and labels (the real clips "
        "are the ceiling; shares count only clips whose caption states the attribute, their "
        "number in brackets; tempo within 4 % on drum-bearing clips; decodings resampled to "
        "44.1 kHz):",
        "",
        "| audio | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "| --- " * (len(COLUMNS) + 1) + "|",
    ]
    for name, row in report.music.items():
        lines.append(f"| {name} | " + " | ".join(cell(row, k, f) for k, _, f in COLUMNS) + " |")
    return text + "\n".join(lines) + "\n"


def write_report(report: CodecReport, out_dir: str | os.PathLike, first=None):
    """`codec_eval.json`, `codec_eval.md` (with the music table) and, given the first
    clip's audio by row name, `spectrograms.png` (log-mel, one row each) into `out_dir`."""
    json_path, md_path = write_signal_report(report, out_dir)
    md_path.write_text(markdown(report))
    if first:
        spectrograms(first, scoring.REAL_RATE, Path(out_dir) / "spectrograms.png")
    return json_path, md_path
