"""`musicgen data synth`: render the embedded captioned dataset.

A plan of clips is drawn from the seed: about half procedurally composed pieces
(`compose.py`, one composition per (style, composition seed)) and half real
works from the music21 corpus (`corpus.py`), each composition arranged one or
two ways. Splits are assigned per composition, so no composition, and hence
no arrangement of it, appears in two splits. Every clip is rendered with
FluidSynth to 44.1 kHz stereo FLAC in worker processes; its caption is written
from its attributes with the training templates, and valid/test clips also get
a caption from the held-out templates (`caption_held_out`) for evaluation.

A rerun with the same arguments reuses the clips already rendered, so a killed
build resumes where it stopped; the manifest is written last, atomically.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from mgcore import audio
from mgcore.data.manifest import write_manifest
from musicgen.synth import corpus
from musicgen.synth.bar_chords import bar_chords
from musicgen.synth.captions import write_caption
from musicgen.synth.compose import compose
from musicgen.synth.render import find_soundfont, fluidsynth_binary, render_piece
from musicgen.synth.styles import STYLES

SAMPLE_RATE = 44100
CLIP_SECONDS = (12.0, 24.0)  # each clip's target length is drawn from this range
SPLIT_SHARES = {"valid": 0.1, "test": 0.1}


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """One clip to render: a composition and one arrangement of it."""

    clip_id: str
    source: str  # "procedural" or "music21"
    composition: str  # style name, or music21 work id
    composition_seed: int
    arrangement_seed: int
    seconds: float
    split: str


def _stable_seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def plan(hours: float, seed: int, procedural_share: float = 0.5) -> list[ClipJob]:
    """The clips of a dataset of about `hours`, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    by_collection: dict[str, list] = {}
    for work in corpus.list_works():
        by_collection.setdefault(work.collection, []).append(work)
    collections = sorted(by_collection)
    # Collections are drawn with weight sqrt(size): Essen's 8,300 folk songs would
    # otherwise be 57 % of the corpus clips and crowd out Bach and Palestrina.
    weights = np.sqrt([len(by_collection[c]) for c in collections])
    weights /= weights.sum()
    styles = sorted(STYLES)
    target = hours * 3600.0
    compositions: list[tuple[str, str, int, list[float]]] = []
    total = 0.0
    while total < target:
        lengths = [float(rng.uniform(*CLIP_SECONDS)) for _ in range(int(rng.integers(1, 3)))]
        if rng.random() < procedural_share:
            style = styles[int(rng.integers(len(styles)))]
            compositions.append(("procedural", style, int(rng.integers(2**31)), lengths))
        else:
            works = by_collection[collections[int(rng.choice(len(collections), p=weights))]]
            work = works[int(rng.integers(len(works)))]
            compositions.append(("music21", work.id, 0, lengths))
        total += sum(lengths)
    splits = _assign_splits([f"{s}/{c}/{k}" for s, c, k, _ in compositions], seed)
    jobs = []
    for (source, comp, comp_seed, lengths), split in zip(compositions, splits, strict=True):
        for seconds in lengths:
            jobs.append(
                ClipJob(
                    clip_id=f"{len(jobs):06d}",
                    source=source,
                    composition=comp,
                    composition_seed=comp_seed,
                    arrangement_seed=int(rng.integers(2**31)),
                    seconds=round(seconds, 2),
                    split=split,
                )
            )
    return jobs


def _assign_splits(composition_keys: list[str], seed: int) -> list[str]:
    """valid/test/train per distinct composition (a work drawn twice is one
    composition), by a seeded hash order; each split gets at least one
    composition when there are three or more."""
    unique = sorted(set(composition_keys), key=lambda k: (_stable_seed(seed, k), k))
    n = len(unique)
    n_valid = max(1, round(n * SPLIT_SHARES["valid"])) if n >= 3 else 0
    n_test = max(1, round(n * SPLIT_SHARES["test"])) if n >= 3 else 0
    split_of = {}
    for rank, key in enumerate(unique):
        if rank < n_valid:
            split_of[key] = "valid"
        elif rank < n_valid + n_test:
            split_of[key] = "test"
        else:
            split_of[key] = "train"
    return [split_of[k] for k in composition_keys]


@functools.lru_cache(maxsize=1)
def _works_by_id() -> dict:
    return {w.id: w for w in corpus.list_works()}


def _piece(job: ClipJob):
    if job.source == "procedural":
        return compose(job.composition, job.composition_seed, job.arrangement_seed, job.seconds)
    return corpus.arrange(_works_by_id()[job.composition], job.arrangement_seed, job.seconds)


def attributes_of(piece, job: ClipJob) -> dict:
    """The manifest's attributes of a clip: what its caption may say, and the controls
    the LM is conditioned on, exactly: bpm, metre, key and mode, instruments, the first
    downbeat (seconds) and the chord of each bar from the bar that holds time 0."""
    num, den = piece.time_signature
    return {
        **piece.attributes,
        "bpm": round(float(piece.bpm)),
        "key": piece.key,
        "mode": piece.mode,
        "time_signature": f"{num}/{den}",
        "instruments": piece.instrument_names(),
        "has_drums": piece.has_drums,
        "arrangement_seed": job.arrangement_seed,
        "downbeat": round(piece.downbeat * 60.0 / piece.bpm, 4),
        "chords": bar_chords(piece),
    }


def render_job(job: ClipJob, out_dir: str, soundfont: str, seed: int) -> dict | None:
    """Composes or arranges, renders and captions one clip; its manifest entry.

    Returns None when a corpus work cannot be arranged (it is reported, not fatal).
    """
    piece = _piece(job)
    if piece is None or not piece.tracks:
        return None
    relative = f"audio/{job.clip_id}.flac"
    path = Path(out_dir) / relative
    if path.is_file():  # a resumed build: the clip was rendered before
        info = audio.audio_info(path)
        frames, channels = info.frames, info.channels
    else:
        x = render_piece(piece, Path(soundfont), SAMPLE_RATE, max_seconds=job.seconds + 1.0)
        audio.save_audio(path, x, SAMPLE_RATE, subtype="PCM_16")
        frames, channels = x.shape[1], x.shape[0]
    attributes = attributes_of(piece, job)
    rng = np.random.default_rng(_stable_seed(seed, job.clip_id, "caption"))
    caption = write_caption(attributes, rng, "train")
    entry = {
        "path": relative,
        "duration": round(frames / SAMPLE_RATE, 4),
        "sample_rate": SAMPLE_RATE,
        "channels": channels,
        "caption": caption.text,
        "caption_template": caption.template,
        "attributes": attributes,
        "split": job.split,
    }
    if job.split != "train":
        held_out = write_caption(attributes, rng, "held_out")
        entry["caption_held_out"] = held_out.text
        entry["caption_held_out_template"] = held_out.template
    return entry


def synth_dataset(
    out: str | os.PathLike,
    hours: float,
    seed: int = 0,
    *,
    soundfont: str | os.PathLike | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Renders the dataset into `out` (audio/ and manifest.jsonl); returns a summary."""
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    out = Path(out)
    sf2 = find_soundfont(soundfont)
    fluidsynth_binary()  # fail now, not in a worker
    jobs = plan(hours, seed)
    started = time.perf_counter()
    entries, failed = [], 0
    bar = tqdm(
        total=round(sum(j.seconds for j in jobs)),
        unit="s audio",
        disable=not progress,
        desc=f"rendering {len(jobs)} clips",
    )
    args = (str(out), str(sf2), seed)
    if workers <= 1:
        results = (render_job(j, *args) for j in jobs)
        for job, entry in zip(jobs, results, strict=True):
            failed += _collect(entry, entries, bar, job)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = pool.map(render_job, jobs, *[[a] * len(jobs) for a in args])
            for job, entry in zip(jobs, results, strict=True):
                failed += _collect(entry, entries, bar, job)
    bar.close()
    elapsed = time.perf_counter() - started
    write_manifest(out / "manifest.jsonl", entries)
    audio_seconds = sum(e["duration"] for e in entries)
    summary = {
        "clips": len(entries),
        "not_arrangeable": failed,
        "hours": round(audio_seconds / 3600.0, 4),
        "splits": {s: sum(e["split"] == s for e in entries) for s in ("train", "valid", "test")},
        "with_drums": sum(bool(e["attributes"]["has_drums"]) for e in entries),
        "genres": len({e["attributes"]["genre"] for e in entries}),
        "seconds": round(elapsed, 2),
        "realtime_factor": round(audio_seconds / elapsed, 1),
        "seed": seed,
        "soundfont": str(sf2),
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _collect(entry, entries, bar, job) -> int:
    bar.update(round(job.seconds))
    if entry is None:
        return 1
    entries.append(entry)
    return 0
