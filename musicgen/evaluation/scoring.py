"""Does the music follow the prompt, sound real, and not copy? (`musicgen eval generate`)

For `n` held-out clips of a manifest split, one prompt each (even clips: the manifest's
caption; odd clips: the caption written from the held-out templates, whose wording the
model never saw), the harness scores four sets of audio with the same metrics:

- **real clips (ceiling)**: the clips themselves against their own prompts;
- **codec round trip**: the clips through the LM's codec, the best an LM over those codes
  can sound;
- **shuffled prompts (floor)**: the real clips, each against another clip's prompt;
- **model**: the LM's generations from the prompts (and, separately, from the held-out
  templates only).

Metrics (each prompt is scored only on what it states, `prompts.asked`): tempo within 4 %
of the asked bpm on drum-bearing prompts (octave errors apart), key and mode (chroma with
Albrecht–Shanahan key profiles; relative, fifth and parallel confusions apart), the
prompted instruments among the judge's predictions, the judge's text–audio cosine
similarity (CLAP score), the Fréchet distance of the judge's audio embeddings to the
split's other real clips, audiocraft's KL between the judge's instrument distributions on
the real clip and on the generation for the same prompt, and memorisation: the longest
run of codec frames also found in the training token cache, and the share of clips copying
more than `copy_seconds`. Continuations of held-out clips: tempo and key agreement between
the prompt clip and what follows it, with the real continuation as ceiling and another
clip's as floor.

Every number is in-domain (the embedded dataset), not comparable to MusicCaps figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from mgcore import audio as audio_io
from mgcore import loudness
from mgcore.data.manifest import ManifestError, ManifestIndex
from musicgen.evaluation import music
from musicgen.evaluation.distances import frechet_distance, label_kl
from musicgen.evaluation.prompts import Asked, asked
from musicgen.lm.sampling import SamplingConfig

REAL_RATE = 44100
LUFS = -16.0  # the token cache's loudness: the codes the LM learned from


@dataclasses.dataclass(frozen=True)
class GenerateEvalConfig:
    """What `evaluate_generation` generates and scores.

    Attributes:
      split: the held-out manifest split.
      n: prompts (held-out clips) to generate from.
      seconds: length of each generation and of each real clip's scored opening.
      continuations: clips to continue (0: none).
      prompt_seconds: the opening of a clip given to the LM to continue.
      continue_seconds: the continuation's total length, the prompt included.
      batch: prompts generated together.
      seed: picks the clips, the shuffled prompts and the sampling noise.
      copy_seconds: a generation copying a longer run than this counts as copying.
      judge_threshold: an instrument counts as heard above this probability.
      sampling: temperature, top-k, top-p, guidance and dtype of generation.
      controls_table: for an LM with controls, also the controls table (three more
        generations of every prompt: about two thirds of the evaluation's time).
    """

    split: str = "test"
    n: int = 32
    seconds: float = 8.0
    continuations: int = 16
    prompt_seconds: float = 4.0
    continue_seconds: float = 8.0
    batch: int = 8
    seed: int = 0
    copy_seconds: float = 5.0
    judge_threshold: float = 0.5
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    controls_table: bool = True


@dataclasses.dataclass
class Clip:
    entry: dict
    prompt: str
    group: str  # "caption" (train templates) or "held-out templates"
    asked: Asked
    audio_CxT: np.ndarray  # real audio at REAL_RATE, loudness-normalised


def pick_clips(manifest, config: GenerateEvalConfig) -> tuple[list[Clip], list[int]]:
    """The `n` clips (seeded choice among those long enough) and the other clips' indices."""
    index = ManifestIndex(manifest, config.split)
    if len(index) == 0:
        raise ManifestError(f"{manifest} has no clips in split {config.split!r}")
    need = max(config.seconds, config.continue_seconds if config.continuations else 0)
    long_enough = np.flatnonzero(index.durations >= need - 1e-3)
    if len(long_enough) < 2:
        raise ManifestError(
            f"{manifest}: fewer than 2 {config.split} clips last {need:g} s; lower --seconds"
        )
    order = np.random.default_rng(config.seed).permutation(long_enough)
    chosen, rest = order[: config.n], order[config.n :]
    clips = []
    for i, row in enumerate(chosen):
        entry = index[int(row)]
        if i % 2 == 1 and entry.get("caption_held_out"):
            prompt, group = entry["caption_held_out"], "held-out templates"
        else:
            prompt, group = entry["caption"], "caption"
        clips.append(
            Clip(
                entry,
                prompt,
                group,
                asked(prompt, entry.get("attributes") or {}),
                load_real(entry["path"], need),
            )
        )
    return clips, [int(r) for r in rest]


def load_real(path, seconds: float) -> np.ndarray:
    """A clip's opening at 44.1 kHz, loudness-normalised as the token cache's audio."""
    wav, _ = audio_io.load_audio(path, sample_rate=REAL_RATE, duration=seconds)
    return np.asarray(loudness.normalize_loudness(wav, REAL_RATE, LUFS), np.float32)


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation with no fixed point (the shuffled-prompt floor), seeded."""
    if n < 2:
        raise ValueError("a shuffle needs at least 2 prompts")
    return (np.arange(n) + np.random.default_rng(seed).integers(1, n)) % n


@dataclasses.dataclass
class Scored:
    """Per-clip measurements of one set of audio against the prompts."""

    tempo: list[float | None]
    key: list[tuple[str, str] | None]
    probs_NxL: np.ndarray | None
    embed_NxD: np.ndarray | None
    clap_N: np.ndarray | None
    copied_frames: list[int] | None


def measure(audio, rate: int, clips: list[Clip], judge, text_NxD, frame_index=None, codes=None):
    """Tempo, key, judge outputs and copied runs of each clip of one audio set."""
    tempo = [
        music.estimate_tempo(a, rate) if c.asked.bpm and c.asked.has_drums else None
        for a, c in zip(audio, clips, strict=True)
    ]
    key = [
        music.estimate_key(a, rate) if c.asked.key else None
        for a, c in zip(audio, clips, strict=True)
    ]
    probs = embed = clap = None
    if judge is not None:
        embed, probs = judge.analyze(list(audio), rate)
        clap = np.sum(embed * text_NxD, axis=-1)
    copied = None
    if frame_index is not None and codes is not None:
        copied = [frame_index.longest_run(c)[0] for c in codes]
    return Scored(tempo, key, probs, embed, clap, copied)


def _share(flags: list[bool]) -> tuple[float | None, int]:
    return (float(np.mean(flags)) if flags else None), len(flags)


def summarise(
    scored: Scored,
    clips: list[Clip],
    config: GenerateEvalConfig,
    *,
    frame_rate=None,
    instruments=(),
    reference=None,
    reference_probs=None,
) -> dict:
    """One report row: the metrics of `scored` against the prompts of `clips`."""
    row: dict = {"clips": len(clips)}
    tempo = [
        music.tempo_match(c.asked.bpm, t)
        for c, t in zip(clips, scored.tempo, strict=True)
        if t is not None  # silence measures 0 bpm: a miss, not left out
    ]
    for name in ("match", "octave"):
        row[f"tempo_{name}"], row["tempo_n"] = _share([t == name for t in tempo])
    keys = [
        music.key_match(c.asked.key, c.asked.mode, *k)
        for c, k in zip(clips, scored.key, strict=True)
        if k is not None
    ]
    for name in ("match", "relative", "fifth", "parallel"):
        row[f"key_{name}"], row["key_n"] = _share([k == name for k in keys])
    if scored.probs_NxL is not None:
        heard = scored.probs_NxL > config.judge_threshold
        vocab = {name: i for i, name in enumerate(instruments)}
        hits = [
            all(heard[i, vocab[x]] for x in c.asked.instruments if x in vocab)
            for i, c in enumerate(clips)
            if any(x in vocab for x in c.asked.instruments)
        ]
        row["instruments_match"], row["instruments_n"] = _share(hits)
        row["clap"] = float(np.mean(scored.clap_N))
        row["clap_se"] = float(np.std(scored.clap_N, ddof=1) / np.sqrt(len(clips)))
        if reference is not None:
            row["fd"] = frechet_distance(scored.embed_NxD, reference)
        if reference_probs is not None:
            row["kl"] = float(np.mean(label_kl(reference_probs, scored.probs_NxL)))
    if scored.copied_frames is not None and frame_rate:
        seconds = np.asarray(scored.copied_frames) / frame_rate
        row["copy_longest_s_mean"] = float(seconds.mean())
        row["copy_longest_s_max"] = float(seconds.max())
        row["copy_share"] = float(np.mean(seconds > config.copy_seconds))
    return row


def agreement(first, rest, rate: int, drums: list[bool]) -> dict:
    """Tempo (drum-bearing clips) and key agreement between openings and what follows."""
    pairs = list(zip(first, rest, drums, strict=True))
    tempo = [music.tempo_agreement(a, b, rate) for a, b, d in pairs if d]
    keys = [music.key_agreement(a, b, rate) for a, b, _ in pairs]
    row = {"clips": len(first)}
    row["tempo_agree"], row["tempo_n"] = _share([t == "match" for t in tempo])
    row["key_agree"], row["key_n"] = _share([k == "match" for k in keys])
    return row


HOOK_METRICS = ("tempo_match", "tempo_n", "key_match", "key_n", "instruments_match",
                "instruments_n", "clap")  # fmt: skip


def adherence(audio, rate: int, prompts, attributes, judge=None) -> dict[str, float]:
    """The harness's prompt adherence on a few generations, as `eval/adherence_*` scalars
    (the LM training hook): tempo and key, and with a judge the prompted instruments and
    the CLAP score. A share is absent where no prompt asks for its attribute."""
    clips = [Clip({"attributes": a or {}}, p, "caption", asked(p, a or {}), np.zeros((1, 0)))
             for p, a in zip(prompts, attributes, strict=True)]  # fmt: skip
    text = judge.text_embeddings(list(prompts)) if judge is not None else None
    scored = measure(list(audio), rate, clips, judge, text)
    instruments = judge.instruments if judge is not None else ()
    row = summarise(scored, clips, GenerateEvalConfig(), instruments=instruments)
    return {f"eval/adherence_{k}": float(row[k]) for k in HOOK_METRICS if row.get(k) is not None}


def write_json(path: str | os.PathLike, value) -> Path:
    path = Path(path)
    path.write_text(json.dumps(value, indent=2, default=_plain) + "\n")
    return path


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")
