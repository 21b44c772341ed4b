"""`musicgen generate` and `musicgen continue`: the pipeline (`musicgen.pipeline`) from the
command line. Without `--checkpoint` they use the reference model in the repo."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from musicgen.cli_types import UsageError
from musicgen.cli_types import positive_float as _positive_float
from musicgen.cli_types import positive_int as _positive_int


def _load(args: argparse.Namespace):
    from musicgen.pipeline import MusicGen

    start = time.perf_counter()
    mg = MusicGen.from_pretrained(args.checkpoint, refiner=args.refiner)
    print(
        f"loaded {args.checkpoint or 'the reference model'} in {time.perf_counter() - start:.1f} s"
    )
    return mg


def _options(args: argparse.Namespace) -> dict:
    return dict(
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
    """`out` for one clip; `out` numbered (`song_0.wav`, `song_1.wav`, ...) for several."""
    path = Path(out)
    if path.suffix.lower() not in (".wav", ".flac"):
        raise UsageError(f"-o {out}: write a .wav or .flac file")
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n)]


def _run(mg, call, paths: list[Path]) -> int:
    from mgcore.audio import save_audio

    start = time.perf_counter()
    try:
        audio = call()
    except (ValueError, TypeError) as err:  # the pipeline's checks of the arguments
        raise UsageError(str(err)) from None
    total = time.perf_counter() - start
    for path, clip in zip(paths, audio, strict=True):
        save_audio(path, clip, mg.sample_rate)
        print(f"written: {path} ({clip.shape[-1] / mg.sample_rate:.1f} s, {mg.sample_rate} Hz)")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in mg.timings.items())
    print(f"generated in {total:.1f} s ({stages})")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    paths = output_paths(args.output, len(args.prompts))
    mg = _load(args)
    return _run(mg, lambda: mg.generate(args.prompts, args.duration, **_options(args)), paths)


def _cmd_continue(args: argparse.Namespace) -> int:
    from mgcore.audio import load_audio

    paths = output_paths(args.output, 1)
    clip, rate = load_audio(args.clip)
    mg = _load(args)
    prompts = [args.prompt] if args.prompt else None
    call = lambda: mg.generate_continuation(clip, rate, prompts, args.duration, **_options(args))  # noqa: E731
    return _run(mg, call, paths)


def _cmd_assemble(args: argparse.Namespace) -> int:
    from codec.api import Codec
    from diffusion.refiner_api import Refiner
    from musicgen.lm_api import LanguageModel
    from musicgen.pipeline import MusicGen

    refiner = Refiner.from_pretrained(args.refiner) if args.refiner else None
    mg = MusicGen(
        LanguageModel.from_pretrained(args.lm),
        Codec.from_pretrained(args.codec),
        refiner,
        max_duration=args.max_duration,
    )
    out = mg.save_pretrained(args.out, float16=args.float16)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    print(f"written: {out} ({size / 1e6:.1f} MB)")
    return 0


def _sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        help="pipeline folder or Hugging Face MusicGen folder "
        "(default: the reference model in models/reference)",
    )
    p.add_argument("--refiner", help="use this refiner (folder or workdir) instead")
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=10.0,
        help="seconds of audio (default 10; continue: in all, clip included)",
    )
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same audio")
    p.add_argument("--cfg-coef", type=_positive_float, help="guidance (default: the model's, 3)")
    p.add_argument("--temperature", type=float, help="softmax temperature (0: greedy)")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass (0: off)")
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="skip the diffusion refiner: codec decoding resampled to 44.1 kHz",
    )
    p.add_argument("--refine-steps", type=_positive_int, help="refiner steps (default: 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_generate_commands(sub) -> None:
    gen = sub.add_parser(
        "generate",
        help="music from text prompts (44.1 kHz WAV)",
        description="Generates one clip per prompt; several prompts write numbered files "
        "(out_0.wav, out_1.wav, ...).",
    )
    gen.add_argument("prompts", nargs="+", help="text prompts, each in quotes")
    gen.add_argument(
        "-o", "--output", default="out.wav", help="output .wav/.flac (default out.wav)"
    )
    _sampling_flags(gen)
    gen.set_defaults(func=_cmd_generate)

    cont = sub.add_parser(
        "continue",
        help="continue an audio clip, optionally steered by a prompt",
        description="Encodes the clip (any rate, mono or stereo), keeps it exactly and "
        "generates the rest, to --duration seconds in all.",
    )
    cont.add_argument("clip", help="audio file to continue (WAV, FLAC, ...)")
    cont.add_argument("prompt", nargs="?", help="text prompt (default: none)")
    cont.add_argument(
        "-o", "--output", default="continued.wav", help="output .wav/.flac (default continued.wav)"
    )
    _sampling_flags(cont)
    cont.set_defaults(func=_cmd_continue)

    asm = sub.add_parser(
        "assemble",
        help="join a trained LM, codec and refiner into one pipeline folder",
        description="Loads each stage (training workdir or saved folder) and writes a "
        "pipeline folder that `musicgen generate --checkpoint` and MusicGen.from_pretrained "
        "load.",
    )
    asm.add_argument("--lm", required=True, help="LM workdir or saved folder")
    asm.add_argument("--codec", required=True, help="codec workdir or saved folder")
    asm.add_argument("--refiner", help="refiner workdir or saved folder (optional)")
    asm.add_argument("--out", required=True, help="pipeline folder to write")
    asm.add_argument(
        "--max-duration",
        type=_positive_float,
        default=120.0,
        help="longest generation allowed, seconds (default 120)",
    )
    asm.add_argument("--float16", action="store_true", help="store weights as float16")
    asm.set_defaults(func=_cmd_assemble)
