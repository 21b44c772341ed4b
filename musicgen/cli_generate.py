"""`musicgen generate` and `musicgen continue`: the pipeline (`musicgen.pipeline`) from the
command line. Without `--checkpoint` they use the reference model in the repo."""

from __future__ import annotations

import argparse

from musicgen import inputs
from musicgen.cli_types import positive_float as _positive_float
from musicgen.cli_types import ranged
from musicgen.lm.sampling import WEIGHTS


def _sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        help="pipeline folder or Hugging Face MusicGen folder "
        "(default: the reference model in models/reference)",
    )
    p.add_argument("--refiner", help="use this refiner (folder or workdir) instead")
    p.add_argument("--adapter", help="a LoRA adapter folder (musicgen finetune) for the LM")
    p.add_argument(
        "--duration",
        type=_positive_float,
        default=10.0,
        help="seconds of audio (default 10; continue: in all, clip included)",
    )
    p.add_argument(
        "--seed",
        type=ranged(inputs.SEED),
        default=0,
        help="the same seed gives the same audio (0 to 2**32 - 1; default 0)",
    )
    p.add_argument(
        "--cfg-coef", type=ranged(inputs.CFG_COEF), help="guidance (default: the model's, 3)"
    )
    p.add_argument(
        "--temperature", type=ranged(inputs.TEMPERATURE), help="softmax temperature (0: greedy)"
    )
    p.add_argument(
        "--top-k",
        type=ranged(inputs.TOP_K),
        help="sample from the k most likely tokens (0: all)",
    )
    p.add_argument("--top-p", type=ranged(inputs.TOP_P), help="nucleus sampling mass (0: off)")
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        help="LM weights to sample with: float32 (default, the model's own codes), bfloat16, "
        "or int8 (the fastest on a CPU)",
    )
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="skip the diffusion refiner: codec decoding resampled to 44.1 kHz",
    )
    p.add_argument(
        "--refine-steps",
        type=ranged(inputs.REFINE_STEPS),
        help="refiner steps, 1 to 1000 (default: the model's, 8)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _control_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "controls",
        "what the music should follow (models trained with controls); each wins over what "
        "the prompt says, which is read too ('126 BPM', 'in E minor', 'in 3/4', instruments)",
    )
    g.add_argument("--bpm", type=float, help="tempo, quarter-note beats per minute (30-300)")
    g.add_argument("--key", help="key and mode, e.g. 'E minor', 'F#m', 'B-flat major', 'D dorian'")
    g.add_argument("--time-signature", help="metre, e.g. 4/4, 3/4, 6/8")
    g.add_argument("--instruments", help="comma-separated instruments, e.g. piano,drums")
    g.add_argument("--chords", help="one chord per bar, repeating, e.g. 'Am F C G'")


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
    _control_flags(gen)
    gen.set_defaults(run="cmd_generate")

    cont = sub.add_parser(
        "continue",
        help="continue an audio clip, optionally steered by a prompt",
        description="Encodes the clip (any rate from 4 to 384 kHz, mono or stereo) and "
        "generates what follows, to --duration seconds in all. The output starts with the "
        "clip itself (resampled to 44.1 kHz only when its rate differs), which fades at "
        "equal power over its last 50 ms into the generated audio.",
    )
    cont.add_argument("clip", help="audio file to continue (WAV, FLAC, ...)")
    cont.add_argument("prompt", nargs="?", help="text prompt (default: none)")
    cont.add_argument(
        "-o", "--output", default="continued.wav", help="output .wav/.flac (default continued.wav)"
    )
    _sampling_flags(cont)
    _control_flags(cont)
    cont.set_defaults(run="cmd_continue")

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
    asm.add_argument(
        "--judge", help="judge workdir or folder to save inside the pipeline as judge/ (optional)"
    )
    asm.add_argument("--out", required=True, help="pipeline folder to write")
    asm.add_argument(
        "--max-duration",
        type=ranged(inputs.MAX_DURATION),
        default=120.0,
        help="longest generation allowed, seconds (default 120)",
    )
    asm.add_argument(
        "--refine-steps",
        type=ranged(inputs.REFINE_STEPS),
        default=8,
        help="the pipeline's default refiner steps (default 8)",
    )
    asm.add_argument("--float16", action="store_true", help="store weights as float16")
    asm.set_defaults(run="cmd_assemble")
