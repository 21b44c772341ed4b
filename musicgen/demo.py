"""The README's main job (`musicgen demo`): music from three prompts, one long piece and
one continuation, with what each was asked beside what the harness hears in it.

With the reference model in the repo (or `--checkpoint`), it generates a clip for each
prompt (their controls read from the prompt, or given), one piece longer than the LM's
context (`--long-duration`, by the sliding window), and continues a clip (the user's
`--clip`, or one rendered from the embedded dataset). Into `--out` it writes 44.1 kHz WAV
files, a log-mel spectrogram PNG of each and `index.html` (`demo_page.py`): per
generation the prompt, the controls asked, what `musicgen.evaluation.checks` measures
(tempo, key, instruments heard by the judge in `models/judge` or `--judge`) with a tick
or a cross, the player and the spectrogram; for the continuation also the clip's and the
new part's tempo and key. It prints the time each stage took. `musicgen info FILE` prints
a file's format, level and loudness.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jax
import numpy as np

from mgcore import audio, loudness
from mgcore.data.manifest import iter_manifest
from musicgen import inputs
from musicgen.controls.estimate import estimate_controls
from musicgen.controls.parse import resolve
from musicgen.controls.types import Controls
from musicgen.demo_page import Item, index_html, score, spectrogram_png
from musicgen.evaluation.checks import check_controls, measured
from musicgen.evaluation.judge.api import Judge, default_judge
from musicgen.pipeline import MusicGen
from musicgen.synth.build import synth_dataset


def _db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-12)))


def _line(label: str, value: str) -> None:
    print(f"  {label:<44} {value}")


def print_file_report(path: str | os.PathLike) -> None:
    """Reads `path` as training would and prints format, level and loudness."""
    info = audio.audio_info(path)
    x, sr = audio.load_audio(path)
    print(f"{info.path}")
    _line("format", f"{info.format} {info.subtype}")
    _line("sample rate / channels", f"{sr} Hz / {info.channels}")
    _line("duration", f"{info.duration:.3f} s ({info.frames} frames)")
    _line("peak", f"{_db(float(np.abs(x).max())):.2f} dBFS")
    _line("RMS", f"{_db(float(loudness.rms(x))):.2f} dBFS")
    if info.duration >= loudness.BLOCK_SECONDS and info.channels <= 5:
        _line("integrated loudness", f"{float(loudness.integrated_loudness(x, sr)):.2f} LUFS")


# The default prompts, with explicit controls where the third shows them: phrased as
# the embedded dataset's captions are, in styles it holds.
PROMPTS = (
    ("A cheerful celtic folk tune with fiddle and flute at 112 bpm in D major.", None),
    ("Upbeat rock song with electric guitar, electric bass and drums, 126 BPM, E minor.", None),
    ("A laid-back bossa nova tune with flute, nylon guitar, upright bass and drums.",
     {"bpm": 104, "key": "A minor"}),
)  # fmt: skip
LONG_PROMPT = "A waltz with violin, piano, cello and drums, 150 BPM, in G minor, 3/4."
LONG_SECONDS = 30.0  # longer than any LM's context here: the sliding window at work
CLIP_SECONDS = 4.0  # the opening of the clip that the continuation keeps


def check_clip(path: str | os.PathLike) -> audio.AudioInfo:
    """A clip to continue, checked from its header without decoding it: a rate the
    pipeline takes (4-384 kHz) and mono, stereo, 5.1 or 7.1 (mixed to stereo).

    Raises:
      AudioFileError: one line naming the file.
    """
    info = audio.audio_info(path)
    if info.sample_rate not in inputs.SAMPLE_RATE:
        raise audio.AudioFileError(
            path,
            f"sample rate {info.sample_rate} Hz is outside 4000..384000 Hz; resample it first",
            "out_of_range",
        )
    if info.channels not in (1, 2, 6, 8):
        raise audio.AudioFileError(
            path, f"{info.channels} channels; give a mono or stereo clip", "unsupported"
        )
    return info


def read_clip(path: str | os.PathLike, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The first `seconds` of a clip (None: all), decoding only those: `(audio_CxT, rate)`."""
    info = check_clip(path)
    return audio.load_audio(path, duration=seconds, channels=2 if info.channels > 2 else None)


def _demo_clip(out: Path, seed: int, seconds: float) -> tuple[np.ndarray, int, str, str]:
    """A clip of the embedded dataset, rendered on the spot: (audio, rate, caption, path)."""
    synth_dataset(out / "embedded", 0.01, seed, workers=1, progress=False)
    entries = [
        e
        for e in iter_manifest(out / "embedded" / "manifest.jsonl")
        if e["duration"] >= CLIP_SECONDS
    ]
    entry = next((e for e in entries if e["split"] == "test"), entries[0])
    x, rate = audio.load_audio(entry["path"], duration=seconds)
    return x, rate, entry["caption"], str(entry["path"])


def _run_items(mg, jobs, duration, options, judge) -> tuple[list[Item], dict]:
    """Generates `jobs` [(kind, prompt, explicit controls)] together, and checks each."""
    prompts = [p for _, p, _ in jobs]
    given = [c for _, _, c in jobs] if mg.lm.config.controls else None
    wavs = mg.generate(prompts, duration, controls=given, **options)
    timings = dict(mg.timings)
    start = time.perf_counter()
    items = []
    for (kind, prompt, explicit), wav, used in zip(jobs, wavs, mg.controls_used, strict=True):
        shown, source = asked_controls(mg, prompt, explicit, used)
        items.append(Item(kind, prompt, wav, shown, source,
                          check_controls(wav, mg.sample_rate, shown, judge), stem=""))  # fmt: skip
    timings["measure"] = time.perf_counter() - start
    return items, timings


def asked_controls(mg, prompt: str, explicit, used: Controls) -> tuple[Controls, str]:
    """What a generation was asked (`explicit`: `Controls.make`'s arguments or None), and
    where that came from, for the page."""
    if not mg.lm.config.controls:
        asked = resolve(prompt, Controls.make(**explicit) if explicit else None)
        return asked, "as asked; this model's LM takes no controls, so none were used"
    return used, "given explicitly, the rest read from the prompt" if explicit else (
        "read from the prompt"
    )


def _described(estimates: tuple[float, str, str]) -> str:
    bpm, key, mode = estimates
    return f"{bpm:.1f} bpm, {key} {mode}"


def run(
    out_dir: str | os.PathLike = "out",
    *,
    checkpoint=None,
    prompts=None,
    duration: float = 10.0,
    long_duration: float = LONG_SECONDS,
    seed: int = 0,
    clip: str | None = None,
    judge: str | os.PathLike | None = None,
    refine_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Generates for `prompts` (default: `PROMPTS`, with their controls), one long piece
    and continues a clip into `out_dir` (module docstring).

    Every argument, and the clip, is checked before any generation.

    Returns the written files, the items and the seconds each stage took.
    """
    out = inputs.output_folder(out_dir)
    jobs = [(f"prompt {i + 1}", p, c) for i, (p, c) in enumerate(PROMPTS)]
    if prompts is not None:
        jobs = [(f"prompt {i + 1}", p, None) for i, p in enumerate(inputs.prompts(prompts))]
    inputs.number(duration, "duration", inputs.Range(0, low_open=True, unit="seconds"))
    inputs.number(long_duration, "long duration", inputs.Range(0, unit="seconds"))
    inputs.seed(seed)
    if refine_steps is not None:
        inputs.refine_steps(refine_steps)
    judge_dir = default_judge(judge)
    if judge is not None and not Path(judge).is_dir():
        raise inputs.BadArgument(f"--judge {judge}: not a folder; name a saved judge")
    options = dict(seed=seed, refine_steps=refine_steps, progress=progress)
    if clip is not None:  # its opening only, decoded now: a bad clip stops the demo here
        x, rate = read_clip(clip, CLIP_SECONDS)
        caption, source = None, clip
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    print(f"musicgen demo: JAX {jax.__version__} on {jax.devices()[0].platform}")
    start = time.perf_counter()
    mg = MusicGen.from_pretrained(checkpoint)
    listener = Judge.from_pretrained(judge_dir) if judge_dir is not None else None
    timings["load the model"] = time.perf_counter() - start
    name = checkpoint or "the reference model (models/reference)"
    print(f"[1/5] loaded {name}" + (f" and the judge {judge_dir}" if listener else "")
          + f" in {timings['load the model']:.1f} s")  # fmt: skip
    inputs.duration(duration, mg.max_duration)
    if long_duration:
        inputs.duration(long_duration, mg.max_duration)
    # The clip's opening, at most half the longest generation: the continuation's total
    # (at least half of it new) then stays within max_duration.
    clip_seconds = min(CLIP_SECONDS, 0.5 * mg.max_duration)
    if clip is not None:
        x = x[..., : max(1, round(clip_seconds * rate))]
    print(f"[2/5] {len(jobs)} prompts, {duration:g} s each, in one batch")
    items, stage = _run_items(mg, jobs, duration, options, listener)
    timings.update({f"{k}, prompts": v for k, v in stage.items()})
    if long_duration:
        window = mg.lm.window_seconds
        print(f"[3/5] {long_duration:g} s from one prompt (the LM's context is {window:g} s)")
        long_items, stage = _run_items(mg, [(f"{long_duration:g} s by sliding window",
                                             LONG_PROMPT, None)], long_duration, options,
                                       listener)  # fmt: skip
        long_items[0].notes.append(
            f"Longer than the LM's {window:g} s context: each new window is conditioned on "
            "the last part of the one before."
        )
        items += long_items
        timings.update({f"{k}, long": v for k, v in stage.items()})
    start = time.perf_counter()
    if clip is None:
        x, rate, caption, source = _demo_clip(out, seed, clip_seconds)
        timings["render a clip of the embedded dataset"] = time.perf_counter() - start
    # At least half of --duration new; within max_duration (the clip's frames may round up).
    total = min(max(duration, x.shape[-1] / rate + 0.5 * duration), mg.max_duration)
    print(f"[4/5] continuing the first {x.shape[-1] / rate:.1f} s of {source} to {total:g} s")
    wav = mg.generate_continuation(x, rate, [caption] if caption else None, total, **options)[0]
    timings.update({f"{k}, continuation": v for k, v in mg.timings.items()})
    used, source = mg.controls_used[0], "the prompt's, else the clip's own (estimated)"
    if not mg.lm.config.controls:
        used = resolve(caption or "", None, estimate_controls(x, rate))
        source += "; this model's LM takes no controls, so none were used"
    new = wav[..., round(x.shape[-1] / rate * mg.sample_rate) :]
    start = time.perf_counter()
    heard = measured(new, mg.sample_rate)
    item = Item("continuation", caption, wav, used, source,
                check_controls(new, mg.sample_rate, used, listener, heard),
                stem="continuation")  # fmt: skip
    timings["measure, continuation"] = time.perf_counter() - start
    item.notes.append(f"the clip ({x.shape[-1] / rate:.1f} s of {source}): "
                      + _described(measured(x, rate)))  # fmt: skip
    item.notes.append(f"the new part ({new.shape[-1] / mg.sample_rate:.1f} s): "
                      + _described(heard))  # fmt: skip
    items.append(item)
    print(f"[5/5] writing {out}")
    start = time.perf_counter()
    for i, item in enumerate(items):
        item.stem = item.stem or ("long" if i >= len(jobs) else f"prompt_{i + 1}")
        audio.save_audio(out / f"{item.stem}.wav", item.audio, mg.sample_rate)
        spectrogram_png(item.audio, mg.sample_rate, out / f"{item.stem}.png",
                        item.prompt or item.stem)  # fmt: skip
        marks = " ".join(f"{c.control} {c.mark}" for c in item.checks) or "nothing measured"
        print(f"  {item.kind}: {item.controls.describe()}: {marks}")
    timings["write files"] = time.perf_counter() - start
    page = index_html(items, timings, str(name), str(judge_dir) if listener else None)
    (out / "index.html").write_text(page)
    passed, graded = score(items)
    print(f"  {passed} of {graded} measured controls as asked")
    for stage_name, seconds in timings.items():
        _line(stage_name, f"{seconds:.1f} s")
    print(f"open {out / 'index.html'}")
    files = [out / "index.html"] + [out / f"{i.stem}.{e}" for i in items for e in ("wav", "png")]
    return {"files": files, "timings": timings, "items": items}
