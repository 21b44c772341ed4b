"""`musicgen finetune`: a trained pipeline adapted to a folder of the user's own music.

    musicgen finetune --from models/reference --audio-dir my_songs/ --out models/mine

One call runs four steps in a work folder (`--workdir`, default `OUT.finetune` beside
the output), each skipped when a rerun finds it done, so a killed fine-tune resumes:

1. `data/manifest.jsonl`: the folder's usable clips (`data prepare`: every file checked,
   captions from `--captions` or sidecar files); what a caption states (tempo, metre,
   key, instruments: `parse_prompt`) goes into the clip's attributes, and estimates
   fill the rest (tempo, beats, key and, with the pipeline's judge, instruments); a clip
   with no caption gets one written from those estimates. A tenth of the clips (by a
   hash of the path) is held out to measure the fine-tune.
2. `tokens/`: the clips encoded with the pipeline's own codec.
3. `run/`: the LM fine-tuned through the shared trainer (`LMExperiment.finetune`): LoRA
   adapters by default (`musicgen/lm/lora.py`: only they train, the base weights are
   frozen), or every weight (`method="full"`). Progress bar, checkpoints, resumable.
   With `refiner=True`, `refiner_run/`: the refiner trained further on the same clips
   (`RefinerExperiment.init_from`, every weight: it is small).
4. The new pipeline folder `OUT`, written whole or not at all: the base's codec, refiner
   and judge, and either the base LM with the adapter beside it (`adapter/`, named in
   `pipeline.json`: a few hundred kilobytes), or the fine-tuned LM itself (full
   fine-tuning, or LoRA with `merge=True`).

`finetune.json` in the work folder records what it cost and what it changed: trainable
parameters, adapter bytes, the train step's memory (XLA's analysis) and the process's
peak memory, wall time, and the held-out clips' cross-entropy before and after.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Literal

import jax
import numpy as np
from flax import nnx

from diffusion.refiner.api import Refiner
from diffusion.refiner.family import RefinerDataConfig, RefinerExperiment
from mgcore.config import load_saved_config, save_config, to_dict
from mgcore.config_types import ConfigError
from mgcore.data.manifest import iter_manifest, write_manifest
from mgcore.data.prepare import prepare_manifest
from mgcore.optim import OptimizerConfig
from mgcore.trainer import TrainConfig
from mgcore.weights import load_workdir_model
from musicgen import train
from musicgen.controls.annotate import annotate_manifest
from musicgen.controls.parse import parse_prompt
from musicgen.evaluation.judge.api import Judge
from musicgen.lm.adapter import fingerprint, merge, save_adapter
from musicgen.lm.api import LanguageModel, trained_lm
from musicgen.lm.family import (
    FinetuneConfig,
    LMDataConfig,
    LMExperiment,
    LMFamily,
    evaluate_text_gap,
)
from musicgen.lm.lora import LoRAConfig, count
from musicgen.lm.token_encode import encode_dataset
from musicgen.pipeline import MusicGen
from musicgen.pipeline_folder import read_settings

log = logging.getLogger(__name__)


class FinetuneError(ValueError):
    """Input a fine-tune cannot use (a folder with no usable audio, clips too short, an
    output that exists), in one line."""


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """How to fine-tune (the command's flags).

    Attributes:
      method: "lora" (adapters only; the default) or "full" (every weight).
      rank, alpha, targets: the adapters (`LoRAConfig`).
      steps: optimiser updates (None: `PASSES` passes over the training clips, at least
        50 and at most 2000).
      learning_rate: peak rate (None: 1e-3 for LoRA, 1e-4 for full fine-tuning, with
        warmup and cosine decay).
      batch_size: windows a step.
      seconds: training window (None: the base LM's, at most 10 s).
      valid_fraction: share of the clips held out to measure the fine-tune.
      annotate: estimate tempo, beats, key and instruments into the clips' attributes.
      merge: write the adapter merged into the LM's weights instead of beside it.
      eval_every: held-out cross-entropy every this many steps (0: only before and after).
      refiner: also fine-tune the pipeline's refiner (every weight; its codec frozen)
        on the same clips, for `refiner_steps` updates.
    """

    method: Literal["lora", "full"] = "lora"
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = LoRAConfig().targets
    steps: int | None = None
    learning_rate: float | None = None
    batch_size: int = 8
    seconds: float | None = None
    valid_fraction: float = 0.1
    annotate: bool = True
    merge: bool = False
    eval_every: int = 100
    refiner: bool = False
    refiner_steps: int = 200


def finetune(
    base: str | os.PathLike,
    audio_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    captions: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    options: FinetuneOptions | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tunes the pipeline `base` on the audio of `audio_dir` into the pipeline `out`.

    Args:
      base: a pipeline folder, or a Hugging Face MusicGen folder.
      audio_dir: the user's audio (captions from `captions` or sidecar files; none needed).
      out: the new pipeline folder (must not exist).
      workdir: the work folder (default `OUT.finetune`); a rerun resumes in it.
      options: how (`FinetuneOptions`).

    Returns:
      The summary written to `finetune.json`.

    Raises:
      FinetuneError, PretrainedError, ManifestError, ConfigError: one line each; nothing
      is written to `out` unless the whole fine-tune succeeded.
    """
    options = options or FinetuneOptions()
    started = time.perf_counter()
    out = Path(out)
    if out.exists():
        raise FinetuneError(f"{out} exists; name a new folder for the fine-tuned pipeline")
    work = Path(workdir) if workdir is not None else out.with_name(out.name + ".finetune")
    mg = MusicGen.from_pretrained(base)
    if options.refiner and not (Path(base) / "refiner").is_dir():
        raise FinetuneError(f"{base} has no refiner to fine-tune; leave out --refiner")
    seconds = options.seconds or min(mg.lm.window_seconds, 10.0)
    new_work = not work.exists()
    try:
        manifest = _prepare(mg, Path(base), Path(audio_dir), captions, work, seconds, options,
                            progress)  # fmt: skip
    except Exception:
        if new_work:  # a folder that can't be used leaves no work folder behind either
            shutil.rmtree(work, ignore_errors=True)
        raise
    tokens = work / "tokens"
    if not (tokens / "cache.json").exists():
        encode_dataset(mg.codec, manifest, tokens, splits=("train", "valid"), progress=progress)
    if options.steps is None:
        options = dataclasses.replace(options, steps=default_steps(manifest, seconds, options))
    lm_source = _base_lm(mg, Path(base), work)
    config = _experiment(mg, lm_source, _codec_source(Path(base)), tokens, seconds, options)
    run = work / "run"
    _write_config(config, run)
    family = LMFamily(config)
    before = _held_out_ce(family, mg.lm.model)
    train.run(None, run, [f"train.steps={options.steps}"], progress=progress)
    _, model = load_workdir_model(run, trained_lm)
    after = _held_out_ce(family, model)
    if options.refiner:
        mg.refiner = _finetune_refiner(mg, Path(base), manifest, work, options, progress)
    summary = _write_pipeline(mg, model, Path(base), out, work, options)
    summary.update(
        method=options.method,
        steps=options.steps,
        clips=_clips(manifest),
        held_out_ce_before=before,
        held_out_ce_after=after,
        trainable_parameters=count(model) if options.method == "lora" else _size(model),
        base_parameters=_size(mg.lm.model),
        memory=_memory(run),
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        seconds=round(time.perf_counter() - started, 1),
    )
    (work / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ----------------------------------------------------------------------------- the data
def _prepare(mg, base: Path, audio_dir: Path, captions, work: Path, seconds: float,
             options: FinetuneOptions, progress: bool) -> Path:  # fmt: skip
    """The annotated manifest of the folder's usable clips (written once, atomically)."""
    manifest = work / "data" / "manifest.jsonl"
    if manifest.exists():
        return manifest
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(".manifest.jsonl.tmp")
    report = prepare_manifest(audio_dir, tmp, captions=captions, min_seconds=seconds,
                              valid_fraction=options.valid_fraction, test_fraction=0.0,
                              progress=progress)  # fmt: skip
    if report.usable == 0:
        tmp.unlink(missing_ok=True)
        reasons = ", ".join(f"{n} {k}" for k, n in sorted(report.unusable.items()))
        short = " (clips shorter than the training window count as too short)" if reasons else ""
        raise FinetuneError(
            f"{audio_dir} holds no usable audio for a {seconds:g} s training window: "
            f"{report.total} audio files"
            + (f", unusable: {reasons}{short}" if reasons else "")
            + "; add clips of at least that length, or lower --seconds"
        )
    rate = mg.codec.sample_rate
    if max(report.sample_rates) < rate:
        tmp.unlink(missing_ok=True)
        raise FinetuneError(
            f"{audio_dir}: every clip is at most {max(report.sample_rates)} Hz and the "
            f"pipeline's codec takes {rate} Hz: it would hear no content above "
            f"{max(report.sample_rates) / 2:g} Hz; use recordings at {rate} Hz or more"
        )
    entries = list(iter_manifest(tmp))  # paths made absolute
    for entry in entries:  # what a caption states is the user's word: estimates fill the rest
        stated = parse_prompt(entry.get("caption") or "").to_dict()
        attributes = entry.get("attributes") or {}
        missing = {k: v for k, v in stated.items() if attributes.get(k) in (None, "", [])}
        entry["attributes"] = {**attributes, **missing}
    write_manifest(tmp, entries)
    if options.annotate:
        judge = Judge.from_pretrained(base / "judge") if (base / "judge").is_dir() else None
        annotate_manifest(tmp, judge=judge, progress=progress)
    entries = list(iter_manifest(tmp))
    for entry in entries:
        if not entry.get("caption"):
            entry["caption"] = caption_from(entry.get("attributes") or {})
    if not any(e["split"] == "valid" for e in entries) and len(entries) > 1:
        entries[-1]["split"] = "valid"  # a small folder still gets a held-out clip
    write_manifest(tmp, entries)
    os.replace(tmp, manifest)
    return manifest


# Passes over the clips by default. On 6.35 minutes of waltzes (results/finetune/), 100
# steps of 8 windows of 3 s (6.7 passes) moved the style as far as 300 (20 passes) did, by
# CLAP and held-out cross-entropy, with half the loss on other styles and tempo kept.
PASSES = 6


def default_steps(manifest: Path, seconds: float, options: FinetuneOptions) -> int:
    """`PASSES` passes over the training clips' audio in windows of `seconds`."""
    audio = sum(e["duration"] for e in iter_manifest(manifest) if e["split"] == "train")
    return int(np.clip(round(PASSES * audio / (options.batch_size * seconds)), 50, 2000))


def caption_from(attributes: dict) -> str:
    """A caption from a clip's (estimated) attributes: "music in 3/4 at 92 BPM in D
    minor with piano and violin"; "music" when nothing is known."""
    parts = ["music"]
    if attributes.get("time_signature"):
        parts.append(f"in {attributes['time_signature']}")
    if attributes.get("bpm"):
        parts.append(f"at {round(float(attributes['bpm']))} BPM")
    if attributes.get("key"):
        parts.append(f"in {attributes['key']} {attributes.get('mode') or ''}".rstrip())
    instruments = attributes.get("instruments") or []
    if instruments:
        parts.append("with " + " and ".join(instruments[:4]))
    return " ".join(parts)


def _clips(manifest: Path) -> dict:
    entries = list(iter_manifest(manifest))
    splits = {s: sum(e["split"] == s for e in entries) for s in ("train", "valid")}
    return {**splits, "minutes": round(sum(e["duration"] for e in entries) / 60, 2)}


# ------------------------------------------------------------------------ the training
def _base_lm(mg: MusicGen, base: Path, work: Path) -> str:
    """What `FinetuneConfig.base` names: the folder the base LM loads from as `mg` has it
    (a pipeline's `lm/`, a Hugging Face folder; with an adapter, the merged LM saved)."""
    if (base / "pipeline.json").is_file():
        if read_settings(base).adapter is None:
            return str((base / "lm").resolve())
        merged = work / "base_lm"
        if not (merged / "lm.json").exists():
            mg.lm.save_pretrained(merged)
        return str(merged.resolve())
    return str(base.resolve())


def _codec_source(base: Path) -> str:
    if (base / "codec").is_dir():
        return str((base / "codec").resolve())
    if (base / "refiner" / "codec").is_dir():
        return str((base / "refiner" / "codec").resolve())
    return str(base.resolve())  # a Hugging Face MusicGen folder: its EnCodec


def _experiment(mg: MusicGen, lm_source: str, codec: str, tokens: Path, seconds: float,
                options: FinetuneOptions) -> LMExperiment:  # fmt: skip
    lora = options.method == "lora"
    model = dataclasses.replace(
        mg.lm.config,
        lora=LoRAConfig(options.rank, options.alpha, options.targets) if lora else LoRAConfig(),
    )
    rate = options.learning_rate or (1e-3 if lora else 1e-4)
    return LMExperiment(
        model=model,
        text=mg.lm.text_config,
        data=LMDataConfig(
            tokens=str(tokens.resolve()),
            codec=codec,
            seconds=seconds,
            batch_size=options.batch_size,
            caption_dropout=0.3,
            eval_batches=4,
            eval_generate=0,
        ),
        sampling=mg.sampling,
        optimizer=OptimizerConfig(
            learning_rate=rate,
            b1=0.9,
            b2=0.95,
            weight_decay=0.0 if lora else 0.01,
            schedule="cosine",
            warmup_steps=min(20, max(options.steps // 10, 1)),
            end_lr_fraction=0.1,
            grad_clip_norm=1.0,
        ),
        train=TrainConfig(
            steps=options.steps,
            log_every=10,
            eval_every=options.eval_every,
            save_every=50,
            keep=2,
            memory_report=True,
        ),
        finetune=FinetuneConfig(base=lm_source, method=options.method),
    )


def _finetune_refiner(mg: MusicGen, base: Path, manifest: Path, work: Path,
                      options: FinetuneOptions, progress: bool) -> Refiner:  # fmt: skip
    """The pipeline's refiner trained further on the clips (`RefinerExperiment.init_from`)."""
    config = RefinerExperiment(
        model=mg.refiner.config,
        data=RefinerDataConfig(
            manifest=str(manifest),
            codec=_codec_source(base),
            crop_seconds=1.0,
            batch_size=options.batch_size,
        ),
        optimizer=OptimizerConfig(
            learning_rate=1e-4,
            b2=0.99,
            schedule="cosine",
            warmup_steps=min(20, max(options.refiner_steps // 10, 1)),
            end_lr_fraction=0.1,
            grad_clip_norm=1.0,
        ),
        train=TrainConfig(steps=options.refiner_steps, log_every=10, save_every=50, keep=2),
        init_from=str((base / "refiner").resolve()),
    )
    run = work / "refiner_run"
    _write_config(config, run)
    train.run(None, run, [f"train.steps={options.refiner_steps}"], progress=progress)
    return Refiner.from_pretrained(run)


def _write_config(config, run: Path) -> None:
    """Saves the run's config, or checks that a resumed run's is the same but for steps."""
    path = run / train.CONFIG_FILE
    if path.exists():
        saved = to_dict(load_saved_config(path))
        saved["train"]["steps"] = config.train.steps
        if saved != to_dict(config):
            raise ConfigError(
                f"{run.parent} holds a fine-tune with other settings; pass a new --workdir "
                "(or the same flags as before) to resume"
            )
        return
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _held_out_ce(family: LMFamily, model) -> float | None:
    """The mean held-out cross-entropy (nats per token) with the clips' captions."""
    batches = family.eval_batches()
    if not batches:
        return None
    values = evaluate_text_gap(model, batches, family.conditioner)
    return round(values["eval/ce_text"], 4)


def _memory(run: Path) -> dict:
    """The compiled train step's memory, as the trainer logged it (`memory_report`)."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "memory/step_total_bytes" in row:
            return {k.removeprefix("memory/"): int(v) for k, v in row.items()
                    if k.startswith("memory/")}  # fmt: skip
    return {}


def _size(model) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model))))


# ------------------------------------------------------------------------ the pipeline
def _write_pipeline(mg: MusicGen, model, base: Path, out: Path, work: Path,
                    options: FinetuneOptions) -> dict:  # fmt: skip
    """Writes `out` (whole or not at all) and returns what it holds."""
    float16 = read_settings(base).float16 if (base / "pipeline.json").is_file() else False
    lm = mg.lm
    adapter = None
    if options.method == "lora" and not options.merge:
        adapter = work / "adapter"
        save_adapter(adapter, model, fingerprint(lm.model))
    else:
        merged = merge(model, model.config) if model.config.lora.rank else model
        lm = LanguageModel(merged, lm.text_config, lm.window_seconds, lm.frame_rate,
                           lm.conditioner)  # fmt: skip
    new = MusicGen(lm, mg.codec, mg.refiner, max_duration=mg.max_duration,
                   sampling=mg.sampling, refine_steps=mg.refine_steps)  # fmt: skip
    tmp = out.with_name(f".{out.name}.writing")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        new.save_pretrained(tmp, float16=float16, adapter=adapter)
        if (base / "judge").is_dir():
            shutil.copytree(base / "judge", tmp / "judge")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"out": str(out)}
    if adapter is not None:
        summary["adapter_bytes"] = sum(p.stat().st_size for p in (out / "adapter").iterdir())
    summary["lm_bytes"] = sum(p.stat().st_size for p in (out / "lm").rglob("*") if p.is_file())
    return summary
