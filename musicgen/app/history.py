"""The session's history on the page: each result as plain values (Gradio keeps them per
tab), the table of them, and what picking one does (replay, continue it, reuse its
prompt and controls)."""

from __future__ import annotations

import html

import gradio as gr

from musicgen.app.studio import FIELDS, Result, form_values

COLUMNS = ["#", "made from", "prompt", "controls asked", "as asked", "seconds"]


def message(text: str) -> str:
    """A problem the user can fix, for the status line."""
    return f"⚠ {html.escape(text)}"


def entry(result: Result) -> dict:
    """A result as the history keeps it."""
    return dict(number=result.number, title=result.title, prompt=result.prompt,
                asked=result.asked.describe(), form=form_values(result.asked),
                checks=result.checks_html, score=result.score, wav=str(result.wav),
                png=str(result.png), seconds=round(result.seconds, 2),
                notes="; ".join(result.notes))  # fmt: skip


def caption(e: dict) -> str:
    """Its heading: number, how it was made, prompt, what it was asked, length."""
    prompt = html.escape(e["prompt"]) if e["prompt"] else "(no words)"
    return (f"**{html.escape(e['title'])}**: *{prompt}*  \nasked: {html.escape(e['asked'])} "
            f"({html.escape(e['notes'])}), {e['seconds']:g} s")  # fmt: skip


def table(past: list[dict]) -> list[list]:
    """The history's rows, newest first."""
    return [[e["number"], e["title"].split(" ", 1)[1], e["prompt"], e["asked"], e["score"],
             e["seconds"]] for e in reversed(past)]  # fmt: skip


def choices(past: list[dict]) -> list[tuple[str, int]]:
    return [(f"#{e['number']} {e['prompt'][:50]}", e["number"]) for e in past]


def _find(number, past: list[dict]) -> dict | None:
    return next((e for e in past if e["number"] == number), None)


def view(number, past):
    """A picked result: heading, player, asked against measured, spectrogram."""
    e = _find(number, past)
    if e is None:
        return "", None, "", None
    return caption(e), e["wav"], e["checks"], e["png"]


def continue_from(number, past):
    """A picked result as the clip to continue (with its prompt), and a status line."""
    e = _find(number, past)
    if e is None:
        return gr.skip(), gr.skip(), message("pick a generation from the history first")
    return e["wav"], e["prompt"], f"{e['title']} is the clip: press 'Continue the clip'"


def reuse(number, past):
    """A picked result's prompt and controls, into the form."""
    e = _find(number, past)
    if e is None:
        return [gr.skip()] * (1 + len(FIELDS))
    return [e["prompt"], *(e["form"][name] for name in FIELDS)]
