"""The README's main job (`musicgen demo`): music from three prompts and one continuation.

With the reference model in the repo (or `--checkpoint`), it generates a clip for each
prompt and continues a clip (the user's `--clip`, or one rendered from the embedded
dataset), and writes into `--out`: 44.1 kHz WAV files, a log-mel spectrogram PNG of each,
and `index.html` with audio players, spectrograms and prompts. It prints the time each
stage took. `musicgen info FILE` prints a file's format, level and loudness.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import jax
import numpy as np

from mgcore import audio, dsp, loudness
from mgcore.data.manifest import iter_manifest
from musicgen import inputs
from musicgen.pipeline import MusicGen
from musicgen.synth.build import synth_dataset

CODEC_RATE = 32000


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


PROMPTS = (
    "A cheerful celtic folk tune with fiddle and flute at 112 bpm in D major.",
    "Upbeat rock song with electric guitar, electric bass and drums, 126 BPM, E minor.",
    "A calm ambient piece with synth pad and piano, slow, in C major.",
)
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


def _spectrogram_png(wav_CxT: np.ndarray, rate: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = np.asarray(dsp.log_mel_spectrogram(wav_CxT.mean(0), rate, 2048, 512, 128))
    fig, ax = plt.subplots(figsize=(9, 3))
    seconds = wav_CxT.shape[-1] / rate
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, 128))
    ax.set(xlabel="seconds", ylabel="mel band")
    ax.set_title(title[:110], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _index_html(items: list[dict], timings: dict, title: str) -> str:
    rows = []
    for item in items:
        rows.append(
            f"<section><h2>{html.escape(item['kind'])}</h2>"
            f"<p class=prompt>{html.escape(item['prompt'] or '(no prompt)')}</p>"
            f'<audio controls preload=none src="{item["wav"]}"></audio>'
            f'<img src="{item["png"]}" alt="log-mel spectrogram"></section>'
        )
    times = "".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in timings.items())
    return (
        "<!doctype html><meta charset=utf-8><title>musicgen demo</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
        "img{width:100%}audio{width:100%}.prompt{font-style:italic}</style>"
        f"<h1>musicgen demo</h1><p>{html.escape(title)}</p>"
        + "".join(rows)
        + f"<h2>Time per stage</h2><ul>{times}</ul>\n"
    )


def run(
    out_dir: str | os.PathLike = "out",
    *,
    checkpoint=None,
    prompts=PROMPTS,
    duration: float = 10.0,
    seed: int = 0,
    clip: str | None = None,
    refine_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Generates for `prompts` and continues a clip into `out_dir` (module docstring).

    Every argument, and the clip, is checked before any generation.

    Returns the written files and the seconds each stage took.
    """
    out = inputs.output_folder(out_dir)
    prompts = inputs.prompts(prompts)
    inputs.number(duration, "duration", inputs.Range(0, low_open=True, unit="seconds"))
    inputs.seed(seed)
    if refine_steps is not None:
        inputs.refine_steps(refine_steps)
    options = dict(seed=seed, refine_steps=refine_steps, progress=progress)
    if clip is not None:  # its opening only, decoded now: a bad clip stops the demo here
        x, rate = read_clip(clip, CLIP_SECONDS)
        caption, source = None, clip
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    print(f"musicgen demo: JAX {jax.__version__} on {jax.devices()[0].platform}")
    start = time.perf_counter()
    mg = MusicGen.from_pretrained(checkpoint)
    timings["load the model"] = time.perf_counter() - start
    name = checkpoint or "the reference model (models/reference)"
    print(f"[1/4] loaded {name} in {timings['load the model']:.1f} s")
    inputs.duration(duration, mg.max_duration)
    # The clip's opening, at most half the longest generation: the continuation's total
    # (at least half of it new) then stays within max_duration.
    clip_seconds = min(CLIP_SECONDS, 0.5 * mg.max_duration)
    if clip is not None:
        x = x[..., : max(1, round(clip_seconds * rate))]
    items = []
    print(f"[2/4] {len(prompts)} prompts, {duration:g} s each")
    for i, prompt in enumerate(prompts):
        wav = mg.generate([prompt], duration, **options)[0]
        for stage, seconds in mg.timings.items():
            timings[f"{stage}, prompts"] = timings.get(f"{stage}, prompts", 0.0) + seconds
        items.append(dict(kind=f"prompt {i + 1}", prompt=prompt, audio=wav))
        print(f"  {prompt!r}: " + ", ".join(f"{k} {v:.1f} s" for k, v in mg.timings.items()))
    start = time.perf_counter()
    if clip is None:
        x, rate, caption, source = _demo_clip(out, seed, clip_seconds)
        timings["render a clip of the embedded dataset"] = time.perf_counter() - start
    # At least half of --duration new; within max_duration (the clip's frames may round up).
    total = min(max(duration, x.shape[-1] / rate + 0.5 * duration), mg.max_duration)
    print(f"[3/4] continuing the first {x.shape[-1] / rate:.1f} s of {source} to {total:g} s")
    wav = mg.generate_continuation(x, rate, [caption] if caption else None, total, **options)[0]
    for stage, seconds in mg.timings.items():
        timings[f"{stage}, continuation"] = seconds
    items.append(dict(kind="continuation", prompt=caption, audio=wav))
    print(f"[4/4] writing {out}")
    start = time.perf_counter()
    for i, item in enumerate(items):
        stem = "continuation" if item["kind"] == "continuation" else f"prompt_{i + 1}"
        item["wav"], item["png"] = f"{stem}.wav", f"{stem}.png"
        audio.save_audio(out / item["wav"], item["audio"], mg.sample_rate)
        _spectrogram_png(item["audio"], mg.sample_rate, out / item["png"], item["prompt"] or stem)
    timings["write files"] = time.perf_counter() - start
    (out / "index.html").write_text(_index_html(items, timings, str(name)))
    for stage, seconds in timings.items():
        _line(stage, f"{seconds:.1f} s")
    print(f"open {out / 'index.html'}")
    files = [out / "index.html"] + [out / i[k] for i in items for k in ("wav", "png")]
    return {"files": files, "timings": timings, "items": items}
