"""`musicgen data prepare --annotate`: controls estimated for a user's own audio.

For each clip of a manifest, the opening `ANNOTATE_SECONDS` are analysed
(`estimate.estimate_controls`: tempo, beat phase as `downbeat`, key and mode) and, with a
judge, the instruments it hears above `threshold`. What a clip's attributes already give
(the embedded dataset's true values, a user's own labels) is kept; what was filled in is
listed in `attributes.estimated`, so training and evaluation can tell estimates from truth.
The manifest is rewritten atomically at the end: a killed run leaves it as it was.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tqdm.auto import tqdm

from mgcore.audio import AudioFileError, load_audio
from mgcore.data.manifest import ManifestError, write_manifest
from musicgen.controls.estimate import estimate_controls

log = logging.getLogger(__name__)
ANNOTATE_SECONDS = 30.0
ANALYSIS_RATE = 22050


def annotate_manifest(
    path: str | os.PathLike, *, judge=None, threshold: float = 0.5, progress: bool = True
) -> dict:
    """Fills each clip's missing controls with estimates; returns counts per field."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path}: cannot read the manifest to annotate ({err})") from None
    filled = {"bpm": 0, "downbeat": 0, "key": 0, "instruments": 0, "unreadable": 0}
    for entry in tqdm(entries, desc="annotate", unit="clip", disable=not progress):
        audio_path = Path(entry["path"])
        audio_path = audio_path if audio_path.is_absolute() else path.parent / audio_path
        try:
            audio, rate = load_audio(audio_path, sample_rate=ANALYSIS_RATE,
                                     duration=ANNOTATE_SECONDS)  # fmt: skip
        except (AudioFileError, OSError) as err:
            log.warning("annotate: skipped %s (%s)", audio_path, err)
            filled["unreadable"] += 1
            continue
        attributes = dict(entry.get("attributes") or {})
        estimated = estimate_controls(audio, rate).to_dict()
        added = []
        for name in ("bpm", "downbeat", "key", "mode"):
            if name in estimated and attributes.get(name) in (None, ""):
                attributes[name] = estimated[name]
                added.append(name)
        if judge is not None and not attributes.get("instruments"):
            probs = judge.instrument_probs([audio], rate)[0]
            heard = [n for n, p in zip(judge.instruments, probs, strict=True) if p > threshold]
            if heard:
                attributes["instruments"] = heard
                added.append("instruments")
        for name in filled:
            filled[name] += name in added
        if added:
            attributes["estimated"] = sorted({*attributes.get("estimated", []), *added})
        entry["attributes"] = attributes
    write_manifest(path, entries)
    return {"clips": len(entries), **filled}


def summary_line(counts: dict) -> str:
    parts = [f"{counts[k]} {k}" for k in ("bpm", "key", "instruments") if k in counts]
    line = f"annotated {counts['clips']} clips: " + ", ".join(parts) + " estimated"
    if counts.get("unreadable"):
        line += f"; {counts['unreadable']} unreadable, skipped"
    return line
