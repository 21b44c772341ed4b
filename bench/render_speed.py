"""Dataset rendering speed: `musicgen data synth` in x real time, against the 20x target.

Renders a fresh dataset of `--hours` into a temporary folder with `--workers`
processes (composition or music21 parsing, FluidSynth, FLAC encoding, captions)
and reports seconds of audio rendered per second of wall time. The issue's bar
is 20x real time on 2 CPU cores; the ratio to it is printed last.

    .venv/bin/python bench/render_speed.py [--hours 0.05] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile

from musicgen.synth.build import synth_dataset

TARGET = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summary = synth_dataset(tmp, args.hours, args.seed, workers=args.workers, progress=False)
    print(
        f"{summary['clips']} clips, {summary['hours'] * 60:.1f} min of audio "
        f"in {summary['seconds']:.1f} s with {args.workers} workers"
    )
    print(f"rendering speed: {summary['realtime_factor']:.1f}x real time (target {TARGET:g}x)")
    print(f"ratio to target: {summary['realtime_factor'] / TARGET:.2f}")


if __name__ == "__main__":
    main()
