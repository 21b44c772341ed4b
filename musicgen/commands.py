"""What each `musicgen` subcommand runs (`musicgen.cli` builds the parsers and names the
handler here by `run`); each is a thin wrapper over functions a notebook can call too.

This module imports the whole framework; `musicgen.cli` imports it only once a command
is dispatched, so `musicgen --help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from codec.api import load_codec
from diffusion.refiner.api import Refiner
from diffusion.refiner.eval import evaluate_refiner
from diffusion.refiner.eval import write_report as write_refiner_report
from mgcore.audio import AudioFileError, save_audio
from mgcore.checkpoint import CheckpointError
from mgcore.config import ConfigError
from mgcore.data.check import check_manifest, report_json
from mgcore.data.manifest import ManifestError
from mgcore.data.prepare import prepare_manifest
from mgcore.lock import WorkdirError
from mgcore.trainer import EXIT_PREEMPTED, NonFiniteError, Preempted
from mgcore.weights import PretrainedError, to_float16
from musicgen import demo, inputs, train
from musicgen.cli_types import UsageError
from musicgen.controls import ControlError, Controls
from musicgen.controls.annotate import annotate_manifest, summary_line
from musicgen.evaluation.codec_music import evaluate_codec_music
from musicgen.evaluation.codec_music import markdown as codec_markdown
from musicgen.evaluation.codec_music import write_report as write_codec_report
from musicgen.evaluation.generate_eval import evaluate_generation
from musicgen.evaluation.judge.api import Judge, default_judge
from musicgen.evaluation.report import markdown
from musicgen.evaluation.report import write_report as write_generate_report
from musicgen.evaluation.scoring import GenerateEvalConfig
from musicgen.finetune import FinetuneError, FinetuneOptions, finetune
from musicgen.lm.api import LanguageModel
from musicgen.lm.eval import evaluate_lm
from musicgen.lm.eval import write_report as write_lm_report
from musicgen.lm.lora import LoRAConfig
from musicgen.lm.sampling import SamplingConfig
from musicgen.lm.token_cache import TokenCacheError
from musicgen.lm.token_encode import encode_dataset
from musicgen.pipeline import MusicGen
from musicgen.synth.build import synth_dataset
from musicgen.synth.render import RenderError
from musicgen.text import TextEncoderError

# Errors that mean bad input, not a bug: reported in one line, exit status 1.
USER_ERRORS: tuple[type[Exception], ...] = (
    AudioFileError,
    ControlError,
    ConfigError,
    FinetuneError,
    ManifestError,
    NonFiniteError,
    PretrainedError,
    RenderError,
    TextEncoderError,
    TokenCacheError,
    WorkdirError,
    CheckpointError,
    FileNotFoundError,
    NotADirectoryError,
)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        demo.run(
            out_dir=args.out,
            checkpoint=args.checkpoint,
            duration=args.duration,
            long_duration=args.long_duration,
            seed=args.seed,
            clip=args.clip,
            judge=args.judge,
            prompts=args.prompt,
            refine_steps=args.refine_steps,
            progress=not args.no_progress,
        )
    except inputs.BadArgument as err:  # the checks of the arguments, before any generation
        raise UsageError(str(err)) from None
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from musicgen.app.server import serve  # Gradio: imported for this command only

    try:
        serve(args.checkpoint, out_dir=args.out, host=args.host, port=args.port,
              judge=args.judge, adapter=args.adapter,
              max_upload_seconds=60 * args.max_upload_minutes)  # fmt: skip
    except inputs.BadArgument as err:
        raise UsageError(str(err)) from None
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    for path in args.files:
        demo.print_file_report(path)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    summary = synth_dataset(
        args.out, args.hours, args.seed, soundfont=args.soundfont, workers=args.workers
    )
    print(
        f"{summary['clips']} clips, {summary['hours']:.3f} h "
        f"(train {summary['splits']['train']}, valid {summary['splits']['valid']}, "
        f"test {summary['splits']['test']}; {summary['with_drums']} with drums, "
        f"{summary['genres']} genres) in {summary['seconds']:.1f} s: "
        f"{summary['realtime_factor']:.1f}x real time"
    )
    print(f"manifest: {Path(args.out) / 'manifest.jsonl'}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    report = prepare_manifest(
        args.audio_dir,
        args.out,
        captions=args.captions,
        valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction,
        min_seconds=args.min_seconds,
        workers=args.workers,
    )
    print(report.format_table())
    if args.annotate:
        judge = Judge.from_pretrained(args.judge) if args.judge else None
        print(summary_line(annotate_manifest(args.out, judge=judge)))
    print(f"manifest: {args.out} ({report.usable} clips)")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    report = check_manifest(
        args.manifest, min_seconds=args.min_seconds, workers=args.workers, progress=not args.json
    )
    print(report_json(report) if args.json else report.format_table())
    return 0


def cmd_data_encode(args: argparse.Namespace) -> int:
    train.use_compilation_cache()  # one program per clip length: a rerun skips compiling them
    summary = encode_dataset(
        args.codec,
        args.manifest,
        args.out,
        splits=args.splits,
        batch_seconds=args.batch_seconds,
        workers=args.workers,
        progress=not args.no_progress,
    )
    splits = ", ".join(
        f"{name} {s['clips']} clips / {s['frames']} frames" for name, s in summary["splits"].items()
    )
    skipped = sum(summary["skipped"].values())
    print(
        f"encoded {summary['encoded']} clips ({summary['encoded_seconds'] / 3600:.3f} h) in "
        f"{summary['seconds']:.1f} s, skipped {skipped}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in summary['skipped'].items())})" if skipped else "")
        + f"; cache: {splits}"
    )
    print(f"cache: {Path(args.out) / 'cache.json'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    try:
        last = train.run(args.config, args.workdir, args.set, progress=not args.no_progress)
    except Preempted as stop:  # a checkpoint is saved: resumable, and the status says so
        print(f"musicgen train: {stop}", file=sys.stderr)
        return EXIT_PREEMPTED
    if last:
        print(f"step {last['step']}: loss {last['loss']:.4f}; workdir {args.workdir}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    options = FinetuneOptions(
        method=args.method,
        rank=args.rank,
        alpha=args.alpha,
        targets=tuple(args.targets) if args.targets else LoRAConfig().targets,
        steps=args.steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seconds=args.seconds,
        valid_fraction=args.valid_fraction,
        annotate=not args.no_annotate,
        merge=args.merge,
        eval_every=args.eval_every,
        refiner=args.refiner,
        refiner_steps=args.refiner_steps,
    )
    try:
        summary = finetune(args.from_, args.audio_dir, args.out, captions=args.captions,
                           workdir=args.workdir, options=options,
                           progress=not args.no_progress)  # fmt: skip
    except Preempted as stop:
        print(f"musicgen finetune: {stop}; run the same command again", file=sys.stderr)
        return EXIT_PREEMPTED
    before, after = summary["held_out_ce_before"], summary["held_out_ce_after"]
    if before is not None:
        print(f"held-out cross-entropy: {before:.4f} -> {after:.4f} nats/token")
    extra = (
        f", adapter {summary['adapter_bytes'] / 1e6:.2f} MB" if "adapter_bytes" in summary else ""
    )
    print(
        f"{options.method}, {summary['steps']} steps: {summary['trainable_parameters']} "
        f"trainable parameters{extra}, "
        f"train step {summary['memory'].get('step_total_bytes', 0) / 1e6:.1f} MB, "
        f"{summary['seconds']:.0f} s"
    )
    print(f"written: {summary['out']}")
    return 0


def cmd_eval_codec(args: argparse.Namespace) -> int:
    judge = default_judge(args.judge)
    report, first = evaluate_codec_music(
        args.checkpoint,
        args.manifest,
        judge=Judge.from_pretrained(judge) if judge is not None else None,
        split=args.split,
        n_codebooks=tuple(args.codebooks) if args.codebooks else None,
        max_clips=args.clips,
        seconds=args.seconds,
    )
    print(codec_markdown(report))
    if args.out:
        json_path, _ = write_codec_report(report, args.out, first)
        print(f"written: {json_path}, codec_eval.md and spectrograms.png")
    return 0


def cmd_eval_lm(args: argparse.Namespace) -> int:
    lm = None
    if (Path(args.checkpoint) / "pipeline.json").is_file():  # its LM, with its adapter
        if not args.tokens:
            raise UsageError("a pipeline folder as --checkpoint needs --tokens")
        lm = MusicGen.from_pretrained(args.checkpoint).lm
    report = evaluate_lm(
        args.checkpoint,
        lm=lm,
        tokens=args.tokens,
        split=args.split,
        caption_field=args.caption_field,
        seconds=args.seconds,
        head_seconds=args.head_seconds,
        batch_size=args.batch,
        weights=tuple(args.weights),
    )
    print(report.markdown())
    if args.out:
        json_path, _ = write_lm_report(report, args.out)
        print(f"written: {json_path} and lm_eval.md")
    return 0


def cmd_eval_refiner(args: argparse.Namespace) -> int:
    report = evaluate_refiner(
        args.checkpoint,
        args.manifest,
        split=args.split,
        steps=tuple(args.steps),
        max_clips=args.clips,
        seconds=args.seconds,
        batch_size=args.batch,
        seed=args.seed,
    )
    print(report.markdown())
    if args.out:
        json_path, _ = write_refiner_report(report, args.out)
        print(f"written: {json_path} and refiner_eval.md")
    return 0


def cmd_eval_generate(args: argparse.Namespace) -> int:
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              cfg_coef=args.cfg_coef, dtype=args.dtype)  # fmt: skip
    config = GenerateEvalConfig(
        split=args.split, n=args.n, seconds=args.seconds, continuations=args.continuations,
        prompt_seconds=args.prompt_seconds, continue_seconds=args.continue_seconds,
        batch=args.batch, seed=args.seed, sampling=sampling,
        controls_table=not args.no_controls_table,
    )  # fmt: skip
    report = evaluate_generation(args.checkpoint, args.manifest, judge=args.judge,
                                 codec=args.codec, tokens=args.tokens, config=config)  # fmt: skip
    print(markdown(report))
    if args.out:
        paths = write_generate_report(report, args.out)
        print(f"written: {', '.join(str(p) for p in paths)}")
    return 0


def _load(args: argparse.Namespace):
    start = time.perf_counter()
    mg = MusicGen.from_pretrained(args.checkpoint, refiner=args.refiner, adapter=args.adapter)
    if getattr(args, "weights", None):
        mg.sampling = dataclasses.replace(mg.sampling, weights=args.weights)
    print(
        f"loaded {args.checkpoint or 'the reference model'} in {time.perf_counter() - start:.1f} s"
    )
    return mg


def _controls(args: argparse.Namespace) -> dict | None:
    """The control flags given (None: none), checked before any model is loaded."""
    given = {
        name: getattr(args, name)
        for name in ("bpm", "key", "time_signature", "instruments", "chords")
        if getattr(args, name, None) is not None
    }
    if not given:
        return None
    try:
        Controls.make(**given)
    except ControlError as err:
        raise UsageError(str(err)) from None
    return given


def _options(args: argparse.Namespace) -> dict:
    return dict(
        controls=_controls(args),
        seed=args.seed,
        cfg_coef=args.cfg_coef,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        refine=not args.no_refine,
        refine_steps=args.refine_steps,
        progress=not args.no_progress,
    )


def output_paths(out: str, n: int) -> list[Path]:
    """`out` for one clip; `out` numbered (`song_0.wav`, `song_1.wav`, ...) for several.

    Checked before any work: a .wav or .flac file, not a folder, in a folder that can be
    written (or created); else a UsageError, or a PermissionError naming `out`.
    """
    path = Path(out)
    if path.suffix.lower() not in (".wav", ".flac"):
        raise UsageError(f"-o {out}: write a .wav or .flac file")
    paths = (
        [path] if n == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n)]
    )
    try:
        return [inputs.output_file(p) for p in paths]
    except inputs.BadArgument as err:
        raise UsageError(f"-o {err}") from None  # the message starts with the path


def _prompts(prompts, allow_empty: bool = False) -> list[str]:
    try:
        return inputs.prompts(prompts, allow_empty=allow_empty)
    except inputs.BadArgument as err:
        raise UsageError(str(err)) from None


def _save(path: Path, clip, rate: int) -> None:
    try:
        save_audio(path, clip, rate)
    except OSError as err:  # name the user's file, not save_audio's temporary one
        raise type(err)(err.errno, err.strerror, str(path)) from None


def _run(mg, call, paths: list[Path]) -> int:
    start = time.perf_counter()
    try:
        audio = call()
    except inputs.BadArgument as err:  # the pipeline's checks, before any model work
        raise UsageError(str(err)) from None
    total = time.perf_counter() - start
    for i, used in enumerate(mg.controls_used):
        label = f" {i}" if len(mg.controls_used) > 1 else ""
        print(f"controls{label}: {used.describe()}")
    for path, clip in zip(paths, audio, strict=True):
        _save(path, clip, mg.sample_rate)
        print(f"written: {path} ({clip.shape[-1] / mg.sample_rate:.1f} s, {mg.sample_rate} Hz)")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in mg.timings.items())
    print(f"generated in {total:.1f} s ({stages})")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    _prompts(args.prompts)
    _controls(args)
    paths = output_paths(args.output, len(args.prompts))
    mg = _load(args)
    return _run(mg, lambda: mg.generate(args.prompts, args.duration, **_options(args)), paths)


def cmd_continue(args: argparse.Namespace) -> int:
    prompts = _prompts([args.prompt], allow_empty=True) if args.prompt else None
    _controls(args)
    paths = output_paths(args.output, 1)
    info = demo.check_clip(args.clip)  # the header only: a long clip is refused undecoded
    if info.duration >= args.duration:
        raise UsageError(
            f"--duration {args.duration:g} s is the result's length, clip included; "
            f"it must exceed the clip's {info.duration:.2f} s ({args.clip})"
        )
    mg = _load(args)
    try:  # before decoding: the clip is then shorter than max_duration
        inputs.duration(args.duration, mg.max_duration)
    except inputs.BadArgument as err:
        raise UsageError(str(err)) from None
    clip, rate = demo.read_clip(args.clip)
    call = lambda: mg.generate_continuation(clip, rate, prompts, args.duration, **_options(args))  # noqa: E731
    return _run(mg, call, paths)


def cmd_assemble(args: argparse.Namespace) -> int:
    try:
        inputs.output_folder(Path(args.out).parent)  # before loading anything
    except inputs.BadArgument as err:
        raise UsageError(f"--out {args.out}: {err}") from None
    refiner = Refiner.from_pretrained(args.refiner) if args.refiner else None
    judge = Judge.from_pretrained(args.judge) if args.judge else None
    mg = MusicGen(
        LanguageModel.from_pretrained(args.lm),
        load_codec(args.codec),
        refiner,
        max_duration=args.max_duration,
        refine_steps=args.refine_steps,
    )
    out = mg.save_pretrained(args.out, float16=args.float16)
    if judge is not None:  # written beside, then moved in: never half a judge
        tmp = Path(tempfile.mkdtemp(prefix=".judge.", dir=out))
        try:
            judge.save_pretrained(tmp)
            if args.float16:
                for path in tmp.glob("*.safetensors"):
                    to_float16(path)
            os.replace(tmp, out / "judge")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    print(f"written: {out} ({size / 1e6:.1f} MB)")
    return 0
