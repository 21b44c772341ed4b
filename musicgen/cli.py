"""The `musicgen` command line: the parsers, and `main`, which runs the handler that a
subcommand names (`musicgen.commands`), each a thin wrapper over functions a notebook
can call too. Errors a user can fix (a bad argument, an unusable file)
print one line and exit with status 2 (usage) or 1 (input), never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from musicgen import __version__, inputs
from musicgen.cli_eval import add_eval_commands
from musicgen.cli_generate import add_generate_commands
from musicgen.cli_types import Parser as _Parser
from musicgen.cli_types import UsageError
from musicgen.cli_types import fraction as _fraction
from musicgen.cli_types import nonnegative_float as _nonnegative_float
from musicgen.cli_types import nonnegative_int as _nonnegative_int
from musicgen.cli_types import positive_float as _positive_float
from musicgen.cli_types import positive_int as _positive_int
from musicgen.cli_types import ranged as _ranged


def _add_train_command(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train a codec, token LM or refiner experiment (resumes by itself)",
        description=(
            "Trains the model family that the experiment names, on every device JAX sees "
            "(and every host of a distributed job). Writes the resolved config, checkpoints "
            "and metrics.jsonl into --workdir; running the same command again resumes from "
            "the latest checkpoint. Stop with Ctrl-C or SIGTERM: it saves first."
        ),
    )
    train.add_argument(
        "--config",
        help="experiment file with an optional argument, e.g. experiments/codec_tiny.py:debug "
        "(default: the config saved in --workdir)",
    )
    train.add_argument("--workdir", required=True, help="the run's folder")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.steps=2000 (repeatable, type-checked)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run="cmd_train")


def _add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="render, import and check datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="COMMAND", parser_class=_Parser)
    dsub.required = True

    synth = dsub.add_parser(
        "synth",
        help="render the embedded captioned music dataset",
        description=(
            "Renders procedurally composed pieces in many styles and arranged works of the "
            "music21 corpus with FluidSynth to 44.1 kHz stereo FLAC, with captions, "
            "attributes and train/valid/test splits in DIR/manifest.jsonl. A rerun resumes."
        ),
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--hours", type=_positive_float, required=True, help="hours of audio")
    synth.add_argument(
        "--seed", type=_ranged(inputs.SEED), default=0, help="random seed (default: 0)"
    )
    synth.add_argument("--soundfont", help="a GM SoundFont (default: Debian's TimGM6mb)")
    synth.add_argument("--workers", type=_positive_int, default=2, help="processes (default: 2)")
    synth.set_defaults(run="cmd_data_synth")

    prepare = dsub.add_parser(
        "prepare",
        help="build a manifest from a folder of your own audio",
        description=(
            "Checks every audio file under --audio-dir and writes a manifest of the usable "
            "ones. Captions come from --captions (CSV or JSONL with path and caption "
            "columns; an audiocraft JSONL manifest works too) or sidecar .txt / .json files."
        ),
    )
    prepare.add_argument("--audio-dir", required=True, help="folder of audio files")
    prepare.add_argument("--captions", help="CSV or JSONL captions file")
    prepare.add_argument("--out", required=True, help="manifest to write (.jsonl)")
    prepare.add_argument("--valid-fraction", type=_fraction, default=0.05)
    prepare.add_argument("--test-fraction", type=_fraction, default=0.05)
    prepare.add_argument("--min-seconds", type=_positive_float, default=1.0)
    prepare.add_argument("--workers", type=_positive_int, default=2)
    prepare.add_argument(
        "--annotate",
        action="store_true",
        help="estimate each clip's tempo, beats and key (and, with --judge, instruments) "
        "into its attributes, marked as estimated (for training with controls)",
    )
    prepare.add_argument("--judge", help="judge folder or workdir that hears instruments")
    prepare.set_defaults(run="cmd_data_prepare")

    check = dsub.add_parser(
        "check",
        help="count usable and unusable files of a manifest, by reason",
        description="Decodes every file a manifest names and prints what can be trained on.",
    )
    check.add_argument("manifest", help="manifest (.jsonl)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--min-seconds", type=_positive_float, default=1.0)
    check.add_argument("--workers", type=_positive_int, default=2)
    check.set_defaults(run="cmd_data_check")

    encode = dsub.add_parser(
        "encode",
        help="pre-encode a dataset into codec tokens for the token LM",
        description=(
            "Encodes every clip of the manifest's splits once, whole, with the codec (at its "
            "rate and channels, loudness-normalised as its training crops were) into token "
            "shards, an index per split and cache.json in --out. A rerun resumes; files "
            "that cannot be used are skipped and counted."
        ),
    )
    encode.add_argument(
        "--codec", required=True, help="codec folder (save_pretrained, EnCodec/DAC) or workdir"
    )
    encode.add_argument("--manifest", required=True, help="manifest (.jsonl)")
    encode.add_argument("--out", required=True, help="cache folder")
    encode.add_argument(
        "--splits",
        type=_split_list,
        default=("train", "valid", "test"),
        help="comma-separated splits (default: train,valid,test)",
    )
    encode.add_argument(
        "--batch-seconds",
        type=_positive_float,
        default=60.0,
        help="audio decoded ahead and encoded per step; equal-length clips share a batch "
        "(default: 60)",
    )
    encode.add_argument(
        "--workers", type=_positive_int, default=2, help="threads decoding audio (default: 2)"
    )
    encode.add_argument("--no-progress", action="store_true", help="no progress bar")
    encode.set_defaults(run="cmd_data_encode")


def _add_finetune_command(sub) -> None:
    ft = sub.add_parser(
        "finetune",
        help="adapt a trained pipeline to a folder of your own music (LoRA or full)",
        description=(
            "Prepares the folder's clips (checked, annotated with tempo, key and instruments, "
            "captioned where they have no caption), encodes them with the pipeline's codec, "
            "fine-tunes its LM (LoRA adapters by default) and writes a new pipeline folder "
            "that every command loads. Work goes into --workdir (default OUT.finetune); "
            "running the same command again resumes."
        ),
    )
    ft.add_argument(
        "--from",
        dest="from_",
        required=True,
        metavar="PIPELINE",
        help="pipeline folder (e.g. models/reference) or Hugging Face MusicGen folder",
    )
    ft.add_argument("--audio-dir", required=True, help="folder of your audio files")
    ft.add_argument("--captions", help="CSV or JSONL captions file (else sidecars, or written)")
    ft.add_argument("--out", required=True, help="the new pipeline folder (must not exist)")
    ft.add_argument("--workdir", help="work folder (default: OUT.finetune)")
    ft.add_argument(
        "--method",
        choices=("lora", "full"),
        default="lora",
        help="LoRA adapters (default) or every weight",
    )
    ft.add_argument("--rank", type=_positive_int, default=8, help="LoRA rank (default 8)")
    ft.add_argument(
        "--alpha", type=_positive_float, default=16.0, help="LoRA scale numerator (default 16)"
    )
    ft.add_argument(
        "--targets",
        nargs="+",
        metavar="NAME",
        help="projections with adapters (default: self_attn encoder_attn fc1 fc2)",
    )
    ft.add_argument(
        "--steps",
        type=_positive_int,
        help="updates (default: 6 passes over the clips, at least 50, at most 2000)",
    )
    ft.add_argument(
        "--learning-rate", type=_positive_float, help="peak rate (default 1e-3 LoRA, 1e-4 full)"
    )
    ft.add_argument("--batch-size", type=_positive_int, default=8, help="(default 8)")
    ft.add_argument(
        "--seconds",
        type=_positive_float,
        help="training window; shorter clips are skipped (default: the LM's, at most 10)",
    )
    ft.add_argument(
        "--valid-fraction",
        type=_fraction,
        default=0.1,
        help="clips held out to measure the fine-tune (default 0.1)",
    )
    ft.add_argument(
        "--eval-every",
        type=_nonnegative_int,
        default=100,
        help="held-out cross-entropy every N steps (default 100; 0: never)",
    )
    ft.add_argument(
        "--merge",
        action="store_true",
        help="write the LM with the adapter merged in, not beside it",
    )
    ft.add_argument(
        "--no-annotate", action="store_true", help="do not estimate tempo, key and instruments"
    )
    ft.add_argument(
        "--refiner", action="store_true", help="also fine-tune the refiner on the same clips"
    )
    ft.add_argument(
        "--refiner-steps", type=_positive_int, default=200, help="its updates (default 200)"
    )
    ft.add_argument("--no-progress", action="store_true", help="no progress bars")
    ft.set_defaults(run="cmd_finetune")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="musicgen",
        description="Text-to-music in JAX: codec, token LM and diffusion refiner.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="the main job: three prompts, a long piece and a continuation, into out/",
        description=(
            "Generates music for three prompts, one piece longer than the LM's context "
            "and continues a clip (yours, or one rendered from the embedded dataset) with "
            "the reference model in the repo (or --checkpoint), and writes 44.1 kHz WAV "
            "files, a spectrogram PNG of each and index.html into --out: per generation "
            "the controls asked and what the harness measures (tempo, key, instruments "
            "heard by the judge) with a tick or a cross; prints the time each stage took."
        ),
    )
    demo.add_argument("--out", default="out", help="output folder (default: out)")
    demo.add_argument("--checkpoint", help="pipeline folder (default: models/reference)")
    demo.add_argument("--prompt", action="append", help="a prompt (repeat; default: three)")
    demo.add_argument("--clip", help="audio file to continue (default: an embedded-dataset clip)")
    demo.add_argument(
        "--duration", type=_positive_float, default=10.0, help="seconds per clip (default 10)"
    )
    demo.add_argument(
        "--long-duration",
        type=_nonnegative_float,
        default=30.0,
        help="seconds of the piece by sliding window (default 30; 0: none)",
    )
    demo.add_argument(
        "--seed", type=_ranged(inputs.SEED), default=0, help="random seed (default: 0)"
    )
    demo.add_argument("--judge", help="judge folder that hears instruments (default: models/judge)")
    demo.add_argument(
        "--refine-steps", type=_ranged(inputs.REFINE_STEPS), help="refiner steps (default: 8)"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(run="cmd_demo")

    app = sub.add_parser(
        "app",
        help="a local web app: prompt, controls, continuation, history",
        description=(
            "Serves a web page on this machine for making music with the reference model "
            "(or --checkpoint): prompts with their controls (read from the prompt, "
            "editable), sampling options, a clip to continue (upload or microphone), "
            "variations; each result with its player, spectrogram, the controls asked "
            "beside what the harness measures, and its WAV; the session's history."
        ),
    )
    app.add_argument("--checkpoint", help="pipeline or Hugging Face MusicGen folder "
                     "(default: models/reference)")  # fmt: skip
    app.add_argument("--adapter", help="a LoRA adapter folder to load the LM with")
    app.add_argument("--judge", help="judge folder that hears instruments (default: the "
                     "pipeline's judge/, else models/judge)")  # fmt: skip
    app.add_argument("--out", default="out/app", help="where results go (default: out/app)")
    app.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    app.add_argument("--port", type=_ranged(inputs.Range(1, 65535, integer=True)), default=7860,
                     help="port (default: 7860)")  # fmt: skip
    app.add_argument("--max-upload-minutes", type=_positive_float, default=10.0,
                     help="the longest clip accepted to continue (default: 10)")  # fmt: skip
    app.set_defaults(run="cmd_app")

    info = sub.add_parser(
        "info",
        help="check audio files and print their format, level and loudness",
        description="Reads each file as training would and prints what it holds.",
    )
    info.add_argument("files", nargs="+", help="audio files (any format libsndfile reads)")
    info.set_defaults(run="cmd_info")
    _add_data_commands(sub)
    _add_train_command(sub)
    _add_finetune_command(sub)
    add_eval_commands(sub)
    add_generate_commands(sub)
    return parser


def _split_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated manifest splits."""
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in splits if s not in ("train", "valid", "test")]
    if bad or not splits:
        raise argparse.ArgumentTypeError(f"splits are train, valid and test, got '{text}'")
    return splits


# Writing fails for reasons of the place, not of the program: reported in one line.
_WRITE_ERRNOS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `musicgen` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # The handlers import the whole framework (seconds): only once a command is chosen.
    from musicgen import commands

    try:
        return getattr(commands, args.run)(args)
    except UsageError as err:
        print(
            f"musicgen {args.command}: error: {err} (see 'musicgen {args.command} --help')",
            file=sys.stderr,
        )
        return 2
    except commands.USER_ERRORS as err:
        print(f"musicgen: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a file the user named cannot be written (or read): no traceback
        if not isinstance(err, PermissionError) and err.errno not in _WRITE_ERRNOS:
            raise
        what = f"{err.filename}: " if err.filename else ""
        reason = " ".join((err.strerror or str(err)).split())
        if isinstance(err, PermissionError) and "permission" not in reason.lower():
            reason = f"permission denied ({reason})"
        print(f"musicgen: error: {what}{reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musicgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
