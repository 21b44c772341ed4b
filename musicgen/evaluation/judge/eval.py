"""The judge's own held-out check: how well it hears instruments and matches captions
to clips, beside chance (`musicgen eval generate` reports it next to its scores)."""

from __future__ import annotations

import logging

import numpy as np

from mgcore.audio import AudioFileError, load_audio
from mgcore.data.manifest import ManifestIndex
from musicgen.evaluation.judge.api import Judge
from musicgen.evaluation.judge.model import JudgeConfig, instrument_labels

log = logging.getLogger(__name__)


def held_out_set(manifest: str, split: str, model: JudgeConfig, seconds: float | None,
                 clips: int = 0) -> tuple[list[np.ndarray], list[str], np.ndarray]:  # fmt: skip
    """(mono clips at the judge's rate, their captions, their labels `[N, I]`): the
    opening `seconds` (None: all) of the first `clips` (0: all) clips of `split`."""
    index = ManifestIndex(manifest, split)
    audio, captions, attributes = [], [], []
    for i in range(len(index) if clips <= 0 else min(clips, len(index))):
        entry = index[i]
        try:
            x, _ = load_audio(entry["path"], sample_rate=model.sample_rate, channels=1,
                              duration=seconds)  # fmt: skip
        except AudioFileError as err:
            log.warning("evaluation skips %s: %s", entry["path"], err)
            continue
        audio.append(x[0])
        captions.append(entry["caption"])
        attributes.append(entry["attributes"])
    return audio, captions, instrument_labels(attributes, model.instruments)


def score_judge(judge: Judge, audio: list[np.ndarray], captions: list[str],
                labels_NxI: np.ndarray) -> dict:  # fmt: skip
    """Instrument and retrieval scores of `judge` on clips at its own rate (module
    docstring); `*_chance` is what a predictor that ignores the audio gets."""
    audio_NxD, probs_NxI = judge.analyze(audio, judge.sample_rate)
    n = len(audio)
    pred_NxI = probs_NxI > 0.5
    true_NxI = labels_NxI > 0.5
    prevalence_I = true_NxI.mean(0)
    tp_I = (pred_NxI & true_NxI).sum(0)
    f1_I = 2 * tp_I / np.maximum(pred_NxI.sum(0) + true_NxI.sum(0), 1)
    present = true_NxI.any(0)
    tp, predicted, actual = tp_I.sum(), pred_NxI.sum(), true_NxI.sum()
    # Chance: each label drawn independently at its held-out prevalence p (F1 p, and a
    # clip's set covered with probability prod(p) over its instruments); for accuracy
    # the better baseline is always answering the majority (max(p, 1 - p)).
    coverage_chance = np.where(true_NxI, prevalence_I, 1.0).prod(1).mean()
    text_NxD = judge.text_embeddings(captions)
    sim_NxN = text_NxD @ audio_NxD.T  # row: a caption; column: a clip
    rank_N = (sim_NxN > np.diagonal(sim_NxN)[:, None]).sum(1)  # 0: its own clip first
    rank_a2t_N = (sim_NxN.T > np.diagonal(sim_NxN)[:, None]).sum(1)
    return {
        "clips": float(n),
        "instrument_accuracy": float((pred_NxI == true_NxI).mean()),
        "instrument_accuracy_chance": float(np.maximum(prevalence_I, 1 - prevalence_I).mean()),
        "instrument_f1_macro": float(f1_I[present].mean()) if present.any() else float("nan"),
        "instrument_f1_micro": float(2 * tp / max(predicted + actual, 1)),
        "instrument_f1_chance": float(prevalence_I[present].mean()) if present.any() else 0.0,
        "instrument_precision": float(tp / max(predicted, 1)),
        "instrument_recall": float(tp / max(actual, 1)),
        "instrument_all_found": float((true_NxI <= pred_NxI).all(1).mean()),
        "instrument_all_found_chance": float(coverage_chance),
        "instrument_exact": float((true_NxI == pred_NxI).all(1).mean()),
        "text_to_audio_r1": float((rank_N < 1).mean()),
        "text_to_audio_r5": float((rank_N < 5).mean()),
        "audio_to_text_r1": float((rank_a2t_N < 1).mean()),
        "retrieval_r1_chance": 1.0 / max(n, 1),
        "retrieval_r5_chance": min(5, n) / max(n, 1),
        "text_to_audio_median_rank": float(np.median(rank_N) + 1),
    }


def evaluate_judge(judge: Judge, manifest: str, split: str = "test",
                   seconds: float | None = 8.0, clips: int = 0) -> dict:  # fmt: skip
    """The judge's held-out scores on `split` of `manifest` (`score_judge`'s keys).

    Args:
      judge: the judge.
      manifest: a manifest with captions and `attributes.instruments`.
      split: which clips.
      seconds: score each clip's opening seconds (None: the whole clip).
      clips: score the first this many clips (0: all).
    """
    audio, captions, labels = held_out_set(manifest, split, judge.config, seconds, clips)
    return score_judge(judge, audio, captions, labels)
