"""The app's work without its page: what a request asks, checked in one line; the
generation, told step by step; and what the harness hears in each result.

`Studio` holds one loaded pipeline (and the judge, when there is one), writes every
generation's WAV and spectrogram PNG into its output folder, and numbers them for the
session's history. `musicgen.app.page` lays it out in the browser; a notebook can use it
as it is:

    studio = Studio(MusicGen.from_pretrained(), out_dir="app_out")
    request = studio.request("calm folk tune with flute, 90 bpm", duration=8)
    for result in studio.run(request, print):
        print(result.title, [c.mark for c in result.checks])
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mgcore import audio as audio_io
from musicgen import inputs
from musicgen.controls import ControlError, Controls
from musicgen.controls.parse import parse_prompt
from musicgen.demo import asked_controls, check_clip
from musicgen.demo_page import checks_table, spectrogram_png
from musicgen.evaluation.checks import Check, check_controls

MAX_ROWS = 8  # prompts x variations in one request: one batch, and the page's result slots
MAX_UPLOAD_SECONDS = 600.0  # a longer clip is refused from its header, undecoded
FIELDS = ("bpm", "key", "time_signature", "instruments", "chords")
# Errors a user can fix: shown in the page as one line, the app keeps serving.
USER_ERRORS = (inputs.BadArgument, ControlError, audio_io.AudioFileError)


@dataclasses.dataclass(frozen=True)
class Request:
    """One checked request: a batch of `len(prompts)` rows (each prompt, `variations`
    times), optionally continuing `clip`.

    Attributes:
      prompts: one per row ("" for a continuation without words).
      controls: explicit values for every row (empty: each prompt's own).
      duration: seconds to generate (a continuation adds them to the kept clip).
      options: `MusicGen.generate`'s seed, sampling and refiner options.
      clip: `[C, T]` audio to continue (None: from text only), its rate and name.
    """

    prompts: list[str]
    controls: Controls
    duration: float
    options: dict
    clip: np.ndarray | None = None
    clip_rate: int = 0
    clip_name: str = ""


@dataclasses.dataclass
class Result:
    """One generated clip, written to `wav` and its spectrogram to `png`.

    Attributes:
      number: its place in the server's history (1, 2, ...).
      title: a heading for people ("#3 continuation of take.wav").
      prompt: the words it was generated from ("" if none).
      asked: the controls it was asked for (explicit, else read from its prompt).
      checks: asked against heard (`musicgen.evaluation.checks`).
      notes: how the controls were chosen, and a continuation's clip against its new part.
      seconds: its length.
    """

    number: int
    title: str
    prompt: str
    asked: Controls
    checks: list[Check]
    notes: list[str]
    wav: Path
    png: Path
    seconds: float

    @property
    def checks_html(self) -> str:
        return checks_table(self.checks)

    @property
    def score(self) -> str:
        graded = [c for c in self.checks if c.ok is not None]
        return f"{sum(c.ok for c in graded)}/{len(graded)}" if graded else "–"


def form_values(controls: Controls) -> dict:
    """A `Controls` as the page's fields show it (None where not set)."""
    return dict(
        bpm=f"{controls.bpm:g}" if controls.bpm is not None else None,
        key=f"{controls.key} {controls.mode}" if controls.key else None,
        time_signature="/".join(map(str, controls.time_signature))
        if controls.time_signature
        else None,
        instruments=list(controls.instruments or ()),
        chords=" ".join(controls.chords) if controls.chords else None,
    )


def prompt_lines(text: str) -> list[str]:
    """The prompts of the page's box: one per non-empty line."""
    return [line.strip() for line in str(text or "").splitlines() if line.strip()]


def read_prompts(text: str) -> dict:
    """The fields that every prompt of `text` agrees on, as `parse_prompt` reads them (the
    page prefills them); None where none says or where they differ."""
    parsed = [form_values(parse_prompt(p)) for p in prompt_lines(text)]
    if not parsed:
        return {name: [] if name == "instruments" else None for name in FIELDS}
    return {
        name: parsed[0][name]
        if all(p[name] == parsed[0][name] for p in parsed)
        else ([] if name == "instruments" else None)
        for name in FIELDS
    }


def _blank(value) -> bool:
    return value is None or (isinstance(value, str | list | tuple) and not value)


def _number(text: str, name: str) -> float | None:
    """A number typed into a text field (None: left blank)."""
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise inputs.BadArgument(f"{name} must be a number, got {text!r}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "untitled"


class Studio:
    """One pipeline serving the app's requests one at a time (module docstring).

    Args:
      mg: the loaded `MusicGen`.
      out_dir: where each result's WAV and PNG go.
      judge: a `Judge` that hears instruments (None: instruments are not measured).
      max_upload_seconds: the longest clip accepted to continue.
    """

    def __init__(self, mg, out_dir, judge=None, max_upload_seconds=MAX_UPLOAD_SECONDS):
        self.mg, self.judge = mg, judge
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.max_upload_seconds = float(max_upload_seconds)
        self._count = 0
        self._lock = threading.Lock()  # one generation at a time on this model

    # -- requests -----------------------------------------------------------------------

    def request(
        self,
        prompt_text: str,
        *,
        duration: float,
        variations: int = 1,
        controls: dict | None = None,
        seed: int = 0,
        cfg_coef: float | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        refine: bool = True,
        refine_steps: int | None = None,
        clip_path: str | None = None,
        clip_seconds: float = 4.0,
    ) -> Request:
        """Every value checked, the clip's header and then its last `clip_seconds` read.

        Raises:
          One of `USER_ERRORS`, with a one-line message that says what to change.
        """
        mg = self.mg
        prompts = prompt_lines(prompt_text)
        if clip_path is None and not prompts:
            raise inputs.BadArgument("write a prompt (one per line), or give a clip to continue")
        variations = inputs.number(
            variations, "variations", inputs.Range(1, MAX_ROWS, integer=True)
        )
        rows = [p for p in (prompts or [""]) for _ in range(variations)]
        if len(rows) > MAX_ROWS:
            raise inputs.BadArgument(
                f"{len(prompts)} prompts x {variations} variations is {len(rows)} clips; "
                f"at most {MAX_ROWS} at once"
            )
        stated = read_prompts(prompt_text)  # what the page prefilled: not an explicit choice
        given = {k: v for k, v in (controls or {}).items() if not _blank(v) and v != stated[k]}
        if isinstance(given.get("bpm"), str):
            given["bpm"] = _number(given["bpm"], "tempo")
        explicit = Controls.make(**given)  # an LM without controls: asked, measured, unused
        duration = inputs.number(
            duration, "duration", inputs.Range(0, low_open=True, unit="seconds")
        )
        clip, rate = None, 0
        if clip_path is not None:
            try:
                clip, rate = self._clip_end(clip_path, clip_seconds, duration)
            except audio_io.AudioFileError as err:  # named as uploaded, not by its temp path
                name = Path(clip_path).name
                reason = err.reason.replace(str(clip_path), name)
                raise audio_io.AudioFileError(name, reason, err.kind) from None
        else:
            inputs.duration(duration, mg.max_duration)
        options = dict(seed=seed, cfg_coef=cfg_coef, temperature=temperature, top_k=top_k,
                       top_p=top_p, refine=refine, refine_steps=refine_steps)  # fmt: skip
        options = {k: v for k, v in options.items() if v is not None}
        mg.sampling_with(cfg_coef, temperature, top_k, top_p)  # out of range: refused here
        inputs.seed(seed)
        inputs.flag(refine, "refine")
        if refine_steps is not None:
            inputs.refine_steps(refine_steps)
        name = Path(clip_path).name if clip_path is not None else ""
        return Request(rows, explicit, duration, options, clip, rate, name)

    def _clip_end(self, path: str, seconds, duration: float) -> tuple[np.ndarray, int]:
        """The clip's last `seconds` (all of a shorter clip), checked from its header
        before any decoding: a rate and channels the pipeline takes, at most
        `max_upload_seconds` long, and the kept part plus `duration` within the model's."""
        positive = inputs.Range(0, low_open=True, unit="seconds")
        seconds = inputs.number(seconds, "seconds of the clip to keep", positive)
        info = check_clip(path)
        if info.duration > self.max_upload_seconds:
            raise inputs.BadArgument(
                f"the clip is {info.duration / 60:.1f} minutes long; the app takes clips up "
                f"to {self.max_upload_seconds / 60:g} minutes: trim it first"
            )
        keep = min(seconds, info.duration)
        total = keep + duration
        if total > self.mg.max_duration:
            raise inputs.BadArgument(
                f"{keep:g} s of the clip + {duration:g} s new is {total:g} s, past this "
                f"model's {self.mg.max_duration:g} s: keep less of the clip or generate less"
            )
        channels = 2 if info.channels > 2 else None
        return audio_io.load_audio(
            path, offset=info.duration - keep, duration=keep, channels=channels
        )

    # -- generation ---------------------------------------------------------------------

    def run(self, request: Request, emit: Callable[[tuple], None]) -> list[Result]:
        """Generates `request`, telling `emit` ("progress", stage, done, total) and
        ("preview", audio `[B, C, S]` at 44.1 kHz: the codec's decoding, before the
        refiner); returns the measured, written results."""
        mg = self.mg
        controls = request.controls if mg.lm.config.controls else None
        common = dict(
            progress=lambda stage, done, total: emit(("progress", stage, done, total)),
            preview=lambda audio: emit(("preview", audio)),
            controls=controls,
            **request.options,
        )
        with self._lock:
            start = time.perf_counter()
            if request.clip is None:
                wavs = mg.generate(request.prompts, request.duration, **common)
            else:
                clips = np.repeat(np.asarray(request.clip)[None], len(request.prompts), 0)
                total = request.clip.shape[-1] / request.clip_rate + request.duration
                prompts = request.prompts if any(request.prompts) else None
                wavs = mg.generate_continuation(clips, request.clip_rate, prompts, total, **common)
            used = list(mg.controls_used)
            elapsed = time.perf_counter() - start
            results = []
            for i, (wav, asked) in enumerate(zip(wavs, used, strict=True)):
                emit(("progress", "measure", i, len(wavs)))
                results.append(self._result(request, i, wav, asked))
        print(f"musicgen app: {len(wavs)} clips in {elapsed:.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in mg.timings.items())})")  # fmt: skip
        return results

    def _result(self, request: Request, row: int, wav: np.ndarray, used: Controls) -> Result:
        mg, prompt = self.mg, request.prompts[row]
        explicit = {} if request.controls.empty else _form_dict(request.controls)
        asked, source = asked_controls(mg, prompt, explicit or None, used)
        new = wav
        if request.clip is not None:
            new = wav[..., round(request.clip.shape[-1] / request.clip_rate * mg.sample_rate) :]
        checks = check_controls(new, mg.sample_rate, asked, self.judge)
        self._count += 1  # under self._lock (run)
        number = self._count
        kind = f"continuation of {request.clip_name}" if request.clip is not None else "prompt"
        stem = f"{number:03d}_{_slug(prompt or kind)}"
        wav_path = audio_io.save_audio(self.out_dir / f"{stem}.wav", wav, mg.sample_rate)
        png = spectrogram_png(wav, mg.sample_rate, self.out_dir / f"{stem}.png", prompt or kind)
        notes = [f"controls {source}"]
        if request.clip is not None:
            notes.append(f"the first {request.clip.shape[-1] / request.clip_rate:.1f} s are "
                         f"the clip ({request.clip_name}), the rest is new")  # fmt: skip
        return Result(number, f"#{number} {kind}", prompt, asked, checks, notes,
                      Path(wav_path), png, wav.shape[-1] / mg.sample_rate)  # fmt: skip


def _form_dict(controls: Controls) -> dict:
    """`form_values` without the unset fields: `Controls.make`'s arguments."""
    return {k: v for k, v in form_values(controls).items() if not _blank(v)}
