"""`musicgen eval generate`: generate from held-out prompts and score against the ceiling
(the real clips) and the floor (the real clips under shuffled prompts).

What each row and metric means is in `scoring`'s docstring. This module loads the models,
runs the generations and continuations, and assembles the report (`report` writes it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from codec.api import Codec, load_codec
from mgcore import audio as audio_io
from mgcore.config import ConfigError, saved_config_dict, to_dict
from mgcore.data.manifest import ManifestIndex
from musicgen.controls.estimate import estimate_controls
from musicgen.controls.parse import parse_prompt, resolve
from musicgen.evaluation import scoring
from musicgen.evaluation.controls_eval import evaluate_controls
from musicgen.evaluation.judge.api import Judge, default_judge
from musicgen.evaluation.judge.eval import evaluate_judge
from musicgen.evaluation.memorisation import FrameIndex
from musicgen.evaluation.scoring import REAL_RATE, Clip, GenerateEvalConfig, Scored
from musicgen.lm.api import LanguageModel
from musicgen.lm.token_cache import TokenCache
from musicgen.pipeline import MusicGen

REFERENCE_CLIPS = 128  # at most this many real clips for the Fréchet distance's reference


def _workdir_data(checkpoint) -> dict:
    """`codec` and `tokens` of an LM training workdir's data config ({} for other folders)."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return {}
    try:
        data = saved_config_dict(path).get("data") or {}
    except ConfigError:  # a saved folder or a Hugging Face folder: no training config
        return {}
    return {k: data[k] for k in ("codec", "tokens") if k in data}


def _codec(source, cache: TokenCache | None) -> Codec:
    """The codec at `source`; "random" is the one a debug run saved in its token cache."""
    if str(source) == "random" and cache is not None:
        source = cache.root / "codec"
    return load_codec(source)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def evaluate_generation(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    judge: str | os.PathLike | None = None,
    codec: str | os.PathLike | None = None,
    tokens: str | os.PathLike | None = None,
    config: GenerateEvalConfig | None = None,
    progress: bool = True,
) -> dict:
    """Generates from `config.n` held-out prompts and scores every row (module docstring).

    Args:
      checkpoint: the LM (a training workdir, a saved folder, a pipeline folder or a
        Hugging Face MusicGen).
      manifest: the manifest whose held-out split gives prompts and real clips.
      judge: the judge model's folder or workdir (None: `models/judge` if a judge was saved there;
        without one, no instrument, CLAP, FD and KL).
      codec: the codec (default: the LM workdir's `data.codec`).
      tokens: the training token cache for memorisation (default: the workdir's
        `data.tokens`; none: not measured).
      config: what to generate and how.
      progress: progress bars.
    """
    config = config or GenerateEvalConfig()
    times = {}
    start = time.perf_counter()
    data = _workdir_data(checkpoint)
    tokens = tokens or data.get("tokens")
    cache = TokenCache(tokens) if tokens and Path(tokens).is_dir() else None
    if (Path(checkpoint) / "pipeline.json").is_file():  # a MusicGen pipeline folder
        pipeline = MusicGen.from_pretrained(checkpoint)
        lm, codec_model, codec_path = pipeline.lm, pipeline.codec, codec or checkpoint
        if codec is not None:
            codec_model = _codec(codec, cache)
    else:
        codec_path = codec or data.get("codec")
        if not codec_path:
            raise ConfigError(f"{checkpoint} names no codec; pass --codec")
        lm = LanguageModel.from_pretrained(checkpoint)
        codec_model = _codec(codec_path, cache)
    judge_model = None
    judge = default_judge(judge)
    if judge is not None:
        judge_model = Judge.from_pretrained(judge)
    frame_index = None
    if cache is not None:
        # The most frequent frame (silence) matches nothing: silence is not copying.
        frame_index = FrameIndex.from_token_cache(cache, split="train", stop_frames=1)
    clips, rest = scoring.pick_clips(manifest, config)
    n = len(clips)
    times["load"] = time.perf_counter() - start

    # Real clips, their codec round trip, the shuffled floor.
    start = time.perf_counter()
    real = np.stack([c.audio_CxT[:, : round(config.seconds * REAL_RATE)] for c in clips])
    codes = np.concatenate(
        [
            codec_model.encode(
                audio_io.to_format(
                    real[s], REAL_RATE, codec_model.sample_rate, codec_model.channels
                )
            )
            for s in _batches(n, config.batch)
        ]
    )
    samples = round(config.seconds * codec_model.sample_rate)
    round_trip = np.concatenate(
        [codec_model.decode(codes[s], samples) for s in _batches(n, config.batch)]
    )
    text = judge_model.text_embeddings([c.prompt for c in clips]) if judge_model else None
    reference = None
    if judge_model is not None:
        index = ManifestIndex(manifest, config.split)
        pool = rest if len(rest) >= 2 else list(range(len(index)))
        paths = [index[i]["path"] for i in pool[:REFERENCE_CLIPS]]
        ref_audio = [scoring.load_real(p, config.seconds) for p in paths]
        reference = judge_model.audio_embeddings(ref_audio, REAL_RATE)
    args = dict(judge=judge_model, text_NxD=text, frame_index=frame_index)
    scored = {
        "real clips (ceiling)": scoring.measure(real, REAL_RATE, clips, codes=codes, **args),
        "codec round trip": scoring.measure(
            round_trip, codec_model.sample_rate, clips, judge=judge_model, text_NxD=text
        ),
    }
    perm = scoring.derangement(n, config.seed)
    scored["shuffled prompts (floor)"] = scoring.measure(
        real[perm], REAL_RATE, clips, **args, codes=codes[perm]
    )
    times["real"] = time.perf_counter() - start

    # The model's generations.
    start = time.perf_counter()
    frames = round(config.seconds * codec_model.frame_rate)
    generated_codes, generated = [], []
    bar = tqdm(total=n, desc="generate", disable=not progress)
    parsed = [parse_prompt(clip.prompt) for clip in clips] if lm.config.controls else None
    for s in _batches(n, config.batch):
        c = lm.generate(
            [clip.prompt for clip in clips[s]],
            frames,
            sampling=config.sampling,
            seed=config.seed + s.start,
            controls=None if parsed is None else parsed[s],
        )
        generated_codes.append(c)
        generated.append(codec_model.decode(c, samples))
        bar.update(s.stop - s.start)
    bar.close()
    generated_codes, generated = np.concatenate(generated_codes), np.concatenate(generated)
    times["generate"] = time.perf_counter() - start
    start = time.perf_counter()
    scored["model"] = scoring.measure(
        generated, codec_model.sample_rate, clips, codes=generated_codes, **args
    )
    times["score"] = time.perf_counter() - start

    summary = dict(
        frame_rate=codec_model.frame_rate,
        instruments=judge_model.instruments if judge_model else (),
        reference=reference,
        reference_probs=scored["real clips (ceiling)"].probs_NxL,
    )
    rows = {}
    for name, s in scored.items():
        floor = name.startswith("shuffled")
        kwargs = {**summary, "reference": None if floor else reference}
        rows[name] = scoring.summarise(s, clips, config, **kwargs)
    held = [i for i, c in enumerate(clips) if c.group == "held-out templates"]
    if held:
        real_probs = scored["real clips (ceiling)"].probs_NxL
        rows["model, held-out templates"] = scoring.summarise(
            _subset(scored["model"], held),
            [clips[i] for i in held],
            config,
            **{
                **summary,
                "reference": None,  # FD over fewer clips is not comparable
                "reference_probs": None if real_probs is None else real_probs[held],
            },
        )

    controls = None
    if lm.config.controls and config.controls_table:
        start = time.perf_counter()

        def generate(prompts, asked):
            out = []
            for s in _batches(len(prompts), config.batch):
                codes = lm.generate(prompts[s], frames, sampling=config.sampling,
                                    seed=config.seed + s.start,
                                    controls=None if asked is None else asked[s])  # fmt: skip
                out.append(codec_model.decode(codes, samples))
            return np.concatenate(out), codec_model.sample_rate

        # The "model" row above generated with the parsed controls, batches and seeds of
        # the controls table's "parsed" condition: its audio serves both.
        done = {"parsed": (generated, codec_model.sample_rate)}
        controls = evaluate_controls(generate, real, REAL_RATE, clips, config, judge_model, perm,
                                     (round_trip, codec_model.sample_rate), done)  # fmt: skip
        times["controls"] = time.perf_counter() - start

    start = time.perf_counter()
    continuation = _continuations(lm, codec_model, clips, config, progress)
    times["continue"] = time.perf_counter() - start
    judge_check = None
    if judge_model is not None:  # its own sanity check: real held-out clips and captions
        start = time.perf_counter()
        judge_check = evaluate_judge(judge_model, str(manifest), config.split, config.seconds)
        times["judge check"] = time.perf_counter() - start
    return dict(
        checkpoint=str(checkpoint),
        codec=str(codec_path),
        judge=str(judge) if judge else None,
        tokens=str(tokens) if cache is not None else None,
        manifest=str(manifest),
        config=to_dict(config),
        clips=n,
        rows=rows,
        controls=controls,
        continuation=continuation,
        judge_check=judge_check,
        seconds=times,
        details=_details(clips, scored, generated, codec_model.sample_rate),
    )


def _subset(s: Scored, rows: list[int]) -> Scored:
    def pick(x):
        if x is None:
            return None
        return x[rows] if isinstance(x, np.ndarray) else [x[i] for i in rows]

    return Scored(
        pick(s.tempo),
        pick(s.key),
        pick(s.probs_NxL),
        pick(s.embed_NxD),
        pick(s.clap_N),
        pick(s.copied_frames),
    )


def _continuations(lm, codec, clips: list[Clip], config: GenerateEvalConfig, progress) -> dict:
    """Tempo and key agreement of prompt clip and continuation: model, ceiling, floor."""
    m = min(config.continuations, len(clips))
    if m < 2:
        return {}
    head = round(config.prompt_seconds * REAL_RATE)
    total = round(config.continue_seconds * REAL_RATE)
    subset = clips[:m]
    first = [c.audio_CxT[:, :head] for c in subset]
    after = [c.audio_CxT[:, head:total] for c in subset]
    drums = [bool((c.entry.get("attributes") or {}).get("has_drums")) for c in subset]
    cut = round(config.prompt_seconds * codec.sample_rate)
    controls = None
    if lm.config.controls:  # as generate_continuation: the prompt's, then the clip's own
        controls = [resolve(c.prompt, None, estimate_controls(f, REAL_RATE))
                    for c, f in zip(subset, first, strict=True)]  # fmt: skip
    generated = []
    for s in _batches(m, config.batch):
        out = lm.continue_audio(
            codec,
            np.stack(first[s]),
            REAL_RATE,
            [c.prompt for c in subset[s]],
            config.continue_seconds,
            sampling=config.sampling,
            seed=config.seed + s.start,
            controls=None if controls is None else controls[s],
        )
        generated.extend(out[..., cut:])
    firsts_codec = [audio_io.resample(f, REAL_RATE, codec.sample_rate) for f in first]
    perm = scoring.derangement(m, config.seed + 1)
    return {
        "prompt_seconds": config.prompt_seconds,
        "continue_seconds": config.continue_seconds,
        "real continuation (ceiling)": scoring.agreement(first, after, REAL_RATE, drums),
        "another clip's continuation (floor)": scoring.agreement(
            first, [after[i] for i in perm], REAL_RATE, drums
        ),
        "model": scoring.agreement(firsts_codec, generated, codec.sample_rate, drums),
    }


def _details(clips: list[Clip], scored: dict, generated, rate: int) -> dict:
    """Per-clip values the plots need: asked and measured tempo and key, a few spectrograms."""
    real, model = scored["real clips (ceiling)"], scored["model"]
    return dict(
        prompts=[c.prompt for c in clips],
        asked_bpm=[c.asked.bpm for c in clips],
        asked_key=[[c.asked.key, c.asked.mode] if c.asked.key else None for c in clips],
        real_tempo=real.tempo,
        model_tempo=model.tempo,
        real_key=real.key,
        model_key=model.key,
        sample_rate=rate,
        spectrogram_audio=[g.mean(0) for g in generated[:4]],
    )
