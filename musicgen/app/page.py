"""The app's page, in Gradio: the prompt and its controls, sampling, a clip to continue,
the results with what the harness hears in them, and the session's history.

Every request runs through one `Studio`, one at a time (`concurrency_limit=1` on the
model's events, so a second tab waits in Gradio's queue, which shows its place); the
light events (reading controls from the prompt, picking from the history) do not queue.
A request's generation runs in a worker thread that reports progress and the codec's
decoding (played at once) to the handler, which shows the refined audio when it comes.
"""

from __future__ import annotations

import html
import queue
import threading
import traceback
from types import SimpleNamespace

import gradio as gr
import numpy as np

from musicgen.app import history
from musicgen.app.studio import FIELDS, MAX_ROWS, USER_ERRORS, Request, Studio, read_prompts
from musicgen.controls.vocab import BPM_RANGE, INSTRUMENTS

CSS = """
.ok .mark{color:#080}.bad .mark{color:#c00}.none{color:#666}.mark{font-size:120%}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}
#status p{font-size:110%}
"""
STAGES = {"tokens": "the LM writes tokens", "refiner": "the refiner works, window",
          "measure": "measuring tempo, key and instruments"}  # fmt: skip
# The request's values after the prompt, the clip and the history, in this order.
OPTIONS = ("duration", "variations", "cfg", "temperature", "top_k", "top_p", "seed",
           "refine", "steps", "keep")  # fmt: skip


def theme():
    """Gradio's default look with the system's fonts: the page loads nothing from the web."""
    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


def _pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio as 16-bit samples, for the player."""
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


class _Slot:
    """One result's place on the page: heading, player, asked/measured, spectrogram, WAV."""

    def __init__(self, i: int):
        with gr.Group(visible=False, elem_id=f"result-{i}") as self.group:
            self.title = gr.Markdown(elem_id=f"result-{i}-title")
            self.audio = gr.Audio(label="listen", interactive=False, elem_id=f"result-{i}-audio")
            self.checks = gr.HTML(elem_id=f"result-{i}-checks")
            self.image = gr.Image(label="log-mel spectrogram", interactive=False,
                                  elem_id=f"result-{i}-spectrogram")  # fmt: skip
            self.download = gr.DownloadButton("Download WAV", elem_id=f"result-{i}-download")

    @property
    def components(self) -> list:
        return [self.group, self.title, self.audio, self.checks, self.image, self.download]

    def preview(self, prompt: str, audio, rate: int) -> dict:
        heading = f"**{html.escape(prompt) or 'continuation'}**: the codec's decoding; refining..."
        return {self.group: gr.Group(visible=True), self.title: heading,
                self.audio: (rate, _pcm16(audio).T), self.checks: "", self.image: None,
                self.download: gr.DownloadButton(visible=False)}  # fmt: skip

    def show(self, e: dict) -> dict:
        return {self.group: gr.Group(visible=True), self.title: history.caption(e),
                self.audio: e["wav"], self.checks: e["checks"], self.image: e["png"],
                self.download: gr.DownloadButton(value=e["wav"], visible=True)}  # fmt: skip

    def hide(self) -> dict:
        return {self.group: gr.Group(visible=False)}


def _header(studio: Studio, title: str) -> None:
    mg = studio.mg
    heard = "instruments heard by the judge" if studio.judge else (
        "no judge: instruments are not measured")  # fmt: skip
    takes = "" if mg.lm.config.controls else (
        "; this LM takes no controls (they are measured, not used)")  # fmt: skip
    refiner = "" if mg.refiner else " (no refiner)"
    gr.Markdown(f"# musicgen\n{html.escape(title)}: up to {mg.max_duration:g} s at "
                f"{mg.sample_rate} Hz{refiner}; {heard}{takes}")  # fmt: skip


def _prompt_and_controls() -> SimpleNamespace:
    f = SimpleNamespace()
    f.prompt = gr.Textbox(
        label="Prompt (one per line: several prompts make one batch)", lines=3,
        placeholder="A cheerful celtic folk tune with fiddle and flute at 112 bpm in D major.",
        elem_id="prompt",
    )  # fmt: skip
    gr.Markdown(
        "Controls: filled from what the prompt says when you leave it; a value set here is "
        "used for every prompt, a blank one leaves each prompt its own."
    )
    with gr.Row():
        bpm = gr.Textbox(label=f"tempo (bpm, {BPM_RANGE[0]:g}-{BPM_RANGE[1]:g})",
                         placeholder="120", elem_id="bpm")  # fmt: skip
        key = gr.Textbox(label="key", placeholder="E minor", elem_id="key")
        meter = gr.Textbox(label="time signature", placeholder="3/4", elem_id="meter")
    instruments = gr.Dropdown(list(INSTRUMENTS), multiselect=True, label="instruments",
                              elem_id="instruments")  # fmt: skip
    chords = gr.Textbox(label="chords, one per bar", placeholder="Am F C G", elem_id="chords")
    f.controls = [bpm, key, meter, instruments, chords]  # in the order of studio.FIELDS
    return f


def _options(mg, f: SimpleNamespace) -> None:
    """Seconds, variations, sampling, the clip to continue, and the two buttons, into `f`."""
    with gr.Row():
        most = f"seconds to generate (at most {mg.max_duration:g})"
        f.duration = gr.Number(min(10.0, mg.max_duration), label=most, elem_id="duration")
        f.variations = gr.Number(1, precision=0, label=f"variations (1-{MAX_ROWS})",
                                 elem_id="variations")  # fmt: skip
    with gr.Accordion("sampling", open=False):
        s = mg.sampling
        f.cfg = gr.Number(s.cfg_coef, label="guidance", elem_id="cfg")
        f.temperature = gr.Number(s.temperature, label="temperature", elem_id="temperature")
        f.top_k = gr.Number(s.top_k, precision=0, label="top-k (0: off)", elem_id="top-k")
        f.top_p = gr.Number(s.top_p, label="top-p (0: off)", elem_id="top-p")
        f.seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
        f.refine = gr.Checkbox(mg.refiner is not None, label="refine (44.1 kHz)",
                               interactive=mg.refiner is not None)  # fmt: skip
        f.steps = gr.Number(mg.refine_steps, precision=0, label="refiner steps", elem_id="steps")
    with gr.Accordion("continue a clip", open=True):
        f.clip = gr.Audio(sources=["upload", "microphone"], type="filepath",
                          label="clip (upload or record)", elem_id="clip")  # fmt: skip
        f.keep = gr.Number(min(4.0, mg.max_duration / 2), elem_id="keep",
                           label="seconds of its end to keep")  # fmt: skip
    with gr.Row():
        f.generate = gr.Button("Generate", variant="primary", elem_id="generate")
        f.extend = gr.Button("Continue the clip", elem_id="continue")


def _history() -> SimpleNamespace:
    h = SimpleNamespace(state=gr.State([]), compare=[])
    gr.Markdown("## History")
    h.table = gr.Dataframe(headers=history.COLUMNS, interactive=False, elem_id="history")
    with gr.Row():
        for side in ("a", "b"):
            with gr.Column(elem_id=f"compare-{side}"):
                pick = gr.Dropdown([], label=f"compare: {side.upper()}", elem_id=f"pick-{side}")
                views = [gr.Markdown(), gr.Audio(interactive=False, label="listen"), gr.HTML(),
                         gr.Image(interactive=False, show_label=False)]  # fmt: skip
                with gr.Row():
                    again = gr.Button("continue this one", elem_id=f"continue-{side}")
                    reuse = gr.Button("reuse its prompt and controls", elem_id=f"reuse-{side}")
            h.compare.append((pick, views, again, reuse))
    return h


def _events(studio: Studio, request: Request):
    """The request's generation in a worker thread: yields its events as they come (see
    `Studio.run`), then ("done", results) or, for a bug, ("failed", error)."""
    events: queue.Queue = queue.Queue()

    def work():
        try:
            events.put(("done", studio.run(request, events.put)))
        except Exception as err:  # a bug, not the user's: logged, and the app goes on
            traceback.print_exc()
            events.put(("failed", err))

    threading.Thread(target=work, daemon=True).start()
    while True:
        event = events.get()
        yield event
        if event[0] in ("done", "failed"):
            return


def build_page(studio: Studio, title: str) -> gr.Blocks:
    """The Blocks of the app over `studio` (module docstring)."""
    mg = studio.mg
    with gr.Blocks(title="musicgen", analytics_enabled=False) as page:
        _header(studio, title)
        with gr.Row():
            with gr.Column(scale=3):
                form = _prompt_and_controls()
            with gr.Column(scale=2):
                _options(mg, form)
        status = gr.Markdown(elem_id="status")
        slots = [_Slot(i) for i in range(MAX_ROWS)]
        past = _history()
        picks = [pick for pick, *_ in past.compare]

        def finished(results, before: list[dict]) -> dict:
            entries = [history.entry(r) for r in results]
            now = before + entries
            made = ", ".join(f"{e['title']} ({e['score']} as asked)" for e in entries)
            update = {status: f"made {len(entries)} clip{'s' * (len(entries) > 1)}: {made}",
                      past.state: now, past.table: history.table(now)}  # fmt: skip
            for slot, e in zip(slots, entries, strict=False):
                update |= slot.show(e)
            return update | {p: gr.Dropdown(choices=history.choices(now)) for p in picks}

        def run(continuing, text, clip_path, before, *values, progress):
            fields = dict(zip(FIELDS, values[: len(FIELDS)], strict=True))
            v = SimpleNamespace(**dict(zip(OPTIONS, values[len(FIELDS) :], strict=True)))
            try:
                if continuing and not clip_path:
                    raise USER_ERRORS[0]("upload or record a clip to continue, or pick one "
                                         "from the history")  # fmt: skip
                request = studio.request(
                    text, duration=v.duration, variations=v.variations, controls=fields,
                    seed=v.seed, cfg_coef=v.cfg, temperature=v.temperature, top_k=v.top_k,
                    top_p=v.top_p, refine=v.refine, refine_steps=v.steps,
                    clip_path=clip_path if continuing else None, clip_seconds=v.keep,
                )  # fmt: skip
            except USER_ERRORS as err:
                yield {status: history.message(str(err))}
                return
            rows = len(request.prompts)
            yield {status: f"generating {rows} clip{'s' * (rows > 1)}...",
                   **{k: x for s in slots for k, x in s.hide().items()}}  # fmt: skip
            for kind, *data in _events(studio, request):
                if kind == "progress":
                    stage, done, total = data
                    progress((done, total), desc=STAGES.get(stage, stage))
                elif kind == "preview":
                    shown = zip(slots, request.prompts, data[0], strict=False)
                    yield {k: x for s, p, a in shown
                           for k, x in s.preview(p, a, mg.sample_rate).items()}  # fmt: skip
                elif kind == "failed":
                    bug = f"{type(data[0]).__name__}: {data[0]}"
                    yield {status: history.message(f"the generation failed ({bug}); see the "
                                                   "server's log")}  # fmt: skip
                else:
                    yield finished(data[0], before)

        def on_generate(*values, progress=gr.Progress()):  # noqa: B008
            yield from run(False, *values, progress=progress)

        def on_continue(*values, progress=gr.Progress()):  # noqa: B008
            yield from run(True, *values, progress=progress)

        inputs = [form.prompt, form.clip, past.state, *form.controls]
        inputs += [getattr(form, name) for name in OPTIONS]
        outputs = [status, past.state, past.table, *picks]
        outputs += [c for s in slots for c in s.components]
        model = dict(outputs=outputs, concurrency_limit=1, concurrency_id="model")
        form.generate.click(on_generate, inputs, **model)
        form.extend.click(on_continue, inputs, **model)
        form.prompt.blur(lambda text: list(read_prompts(text).values()), form.prompt,
                         form.controls, queue=False)  # fmt: skip
        for pick, views, again, reuse in past.compare:
            pick.change(history.view, [pick, past.state], views, queue=False)
            again.click(history.continue_from, [pick, past.state],
                        [form.clip, form.prompt, status], queue=False)  # fmt: skip
            reuse.click(history.reuse, [pick, past.state], [form.prompt, *form.controls],
                        queue=False)  # fmt: skip
    return page
