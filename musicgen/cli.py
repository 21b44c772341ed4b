"""The `musicgen` command line.

Subcommands are added as the stages land; each is a thin wrapper over functions a
notebook can call too. Errors a user can fix (a bad argument, an unusable file)
print one line and exit with status 2 (usage) or 1 (input), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _cmd_demo(args: argparse.Namespace) -> int:
    from musicgen import demo

    demo.run(out_dir=args.out, seconds=args.seconds, seed=args.seed)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from musicgen import demo

    for path in args.files:
        demo.print_file_report(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from musicgen import __version__

    parser = _Parser(
        prog="musicgen",
        description="Text-to-music in JAX: codec, token LM and diffusion refiner.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="the main job: run what the framework can do so far and print its numbers",
        description=(
            "Synthesises a short stereo 44.1 kHz clip, writes and re-reads it, and reports "
            "its loudness, STFT round-trip error, log-mel statistics, and what a 32 kHz "
            "codec-rate round trip costs in multi-scale mel and STFT distance."
        ),
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument(
        "--seconds", type=_positive_float, default=8.0, help="clip length (default: 8)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser(
        "info",
        help="check audio files and print their format, level and loudness",
        description="Reads each file as training would and prints what it holds.",
    )
    info.add_argument("files", nargs="+", help="audio files (any format libsndfile reads)")
    info.set_defaults(func=_cmd_info)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `musicgen` console script."""
    from mgcore.audio import AudioFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AudioFileError as err:
        print(f"musicgen: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musicgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
