"""Writes a `musicgen eval generate` report: JSON, a Markdown table and plots.

Plots (matplotlib, Agg): asked against measured tempo for the real clips and the model,
the model's key confusion matrix (asked key against estimated key, 24 x 24), and log-mel
spectrograms of the first generations.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mgcore import dsp
from musicgen.evaluation.scoring import write_json

TONICS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
COLUMNS = (  # key, header, format
    ("tempo_match", "tempo ✓", "share"),
    ("tempo_octave", "tempo octave", "share"),
    ("key_match", "key ✓", "share"),
    ("key_relative", "relative key", "share"),
    ("instruments_match", "instruments ✓", "share"),
    ("clap", "CLAP ↑", "float"),
    ("fd", "FD ↓", "float"),
    ("kl", "KL ↓", "float"),
    ("copy_share", "copies > 5 s", "share"),
    ("copy_longest_s_mean", "longest copy (s)", "float"),
)


CONTROL_COLUMNS = (
    ("tempo", "tempo ✓", "share"),
    ("beat_f", "beat F", "float"),
    ("key", "key ✓", "share"),
    ("chords", "chords per bar", "share"),
    ("instruments", "instruments ✓", "share"),
    ("clap", "CLAP ↑", "float"),
)


def cell(row: dict, key: str, kind: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    n = row.get(key.split("_")[0] + "_n", row.get(key + "_n"))
    if kind == "share":
        return f"{100 * value:.0f} %" + (f" ({n})" if n is not None else "")
    return f"{value:.3f}" + (f" ({n})" if key + "_n" in row else "")


def markdown(report: dict) -> str:
    """The report as Markdown: the adherence table, continuation agreement, judge checks."""
    cfg = report["config"]
    lines = [
        f"# `musicgen eval generate`: `{report['checkpoint']}`",
        "",
        f"{report['clips']} prompts from the {cfg['split']} split of `{report['manifest']}` "
        f"(even clips: their caption; odd clips: the held-out templates), {cfg['seconds']:g} s "
        f"each, seed {cfg['seed']}, guidance {cfg['sampling']['cfg_coef']:g}, top-k "
        f"{cfg['sampling']['top_k']}. **In-domain numbers on the embedded dataset, not "
        "comparable to published MusicCaps figures.** Shares count only prompts that state "
        "the attribute (their number in brackets); tempo only on drum-bearing prompts, "
        "within 4 % of the asked bpm.",
        "",
        "| audio | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "| --- " * (len(COLUMNS) + 1) + "|",
    ]
    for name, row in report["rows"].items():
        lines.append(f"| {name} | " + " | ".join(cell(row, k, f) for k, _, f in COLUMNS) + " |")
    controls = report.get("controls") or {}
    if controls:
        lines += [
            "",
            "Controls (`musicgen/evaluation/controls_eval.py`): each row scored against what "
            "it asked. Tempo and beats on drum-bearing clips; key on major and minor keys.",
            "",
            "| audio | " + " | ".join(h for _, h, _ in CONTROL_COLUMNS) + " |",
            "| --- " * (len(CONTROL_COLUMNS) + 1) + "|",
        ]
        for name, row in controls.items():
            cells = " | ".join(cell(row, k, f) for k, _, f in CONTROL_COLUMNS)
            lines.append(f"| {name} | {cells} |")
    cont = report.get("continuation") or {}
    if cont:
        lines += [
            "",
            f"Continuation: the first {cont['prompt_seconds']:g} s of a held-out clip, continued "
            f"to {cont['continue_seconds']:g} s; agreement of the prompt and what follows.",
            "",
            "| continuation | tempo agrees | key agrees |",
            "| --- | --- | --- |",
        ]
        for name, row in cont.items():
            if isinstance(row, dict):
                lines.append(
                    f"| {name} | {cell(row, 'tempo_agree', 'share')} "
                    f"| {cell(row, 'key_agree', 'share')} |"
                )
    judge = report.get("judge_check")
    if judge:
        g = lambda k: judge.get(k, float("nan"))  # noqa: E731
        lines += [
            "",
            f"Judge on the split's {g('clips'):.0f} real clips (its own sanity check): all "
            f"instruments found {g('instrument_all_found'):.3f} (chance "
            f"{g('instrument_all_found_chance'):.3f}), instrument F1 "
            f"{g('instrument_f1_micro'):.3f} (chance {g('instrument_f1_chance'):.3f}), "
            f"text-to-audio retrieval R@1 {g('text_to_audio_r1'):.3f} and R@5 "
            f"{g('text_to_audio_r5'):.3f} (chance {g('retrieval_r1_chance'):.3f} and "
            f"{g('retrieval_r5_chance'):.3f}).",
        ]
    secs = report.get("seconds") or {}
    lines += ["", "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()) + "."]
    return "\n".join(lines) + "\n"


def _key_index(key) -> int | None:
    if not key:
        return None
    tonic, mode = key
    if tonic not in TONICS:
        return None
    return TONICS.index(tonic) + (12 if str(mode).lower() == "minor" else 0)


def plots(report: dict, out: Path) -> list[Path]:
    """Tempo scatter, key confusion matrix and spectrograms into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = report["details"]
    written = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, measured, marker in (
        ("real", d["real_tempo"], "o"),
        ("model", d["model_tempo"], "x"),
    ):
        pairs = [(a, m) for a, m in zip(d["asked_bpm"], measured, strict=True) if a and m]
        if pairs:
            a, m = np.asarray(pairs).T
            ax.scatter(a, m, marker=marker, label=name)
    ax.plot([40, 220], [40, 220], "k--", lw=0.8)
    ax.set(xlabel="asked bpm", ylabel="measured bpm", title="tempo")
    ax.legend()
    written.append(_save(fig, out / "tempo_scatter.png"))
    confusion = np.zeros((24, 24), np.int32)
    for asked, est in zip(d["asked_key"], d["model_key"], strict=True):
        i, j = _key_index(asked), _key_index(est)
        if i is not None and j is not None:
            confusion[i, j] += 1
    names = [*TONICS, *(t + "m" for t in TONICS)]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(24), names, rotation=90, fontsize=7)
    ax.set_yticks(range(24), names, fontsize=7)
    ax.set(xlabel="estimated key (model)", ylabel="asked key", title="key confusion")
    written.append(_save(fig, out / "key_confusion.png"))
    rate = d["sample_rate"]
    for i, wav in enumerate(d.get("spectrogram_audio") or []):
        spec = np.asarray(
            dsp.log_mel_spectrogram(np.asarray(wav), rate, n_fft=1024, hop_length=256, n_mels=80)
        )
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(d["prompts"][i][:90], fontsize=8)
        ax.set(xlabel="frame", ylabel="mel bin")
        written.append(_save(fig, out / f"spectrogram_{i}.png"))
    return written


def spectrograms(named: dict[str, np.ndarray], rate: int, path: Path) -> Path:
    """Log-mel spectrograms of mono signals, one row each under its name, in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(named), 1, figsize=(8, 1.6 * len(named)), squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], named.items(), strict=True):
        spec = dsp.log_mel_spectrogram(np.asarray(wav), rate, n_fft=2048, hop_length=512,
                                       n_mels=128)  # fmt: skip
        ax.imshow(np.asarray(spec), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set(ylabel="mel bin")
    axes[-1, 0].set(xlabel=f"frame ({512 / rate * 1000:.1f} ms)")
    return _save(fig, path, dpi=60)  # small enough to keep beside a results table


def _save(fig, path: Path, dpi: int = 100) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_report(report: dict, out_dir: str | os.PathLike) -> list[Path]:
    """`generate_eval.json`, `generate_eval.md` and the plots into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = plots(report, out)
    details = {k: v for k, v in report["details"].items() if k != "spectrogram_audio"}
    write_json(out / "generate_eval.json", {**report, "details": details})
    (out / "generate_eval.md").write_text(markdown(report))
    return [out / "generate_eval.json", out / "generate_eval.md", *paths]
