"""Refiner speed on CPU: the real-time factor per number of sampling steps, and what the
steps buy in quality.

Speed: `Refiner.refine` on `--seconds` of coarse codes (batch 1, mono), the whole path a
user pays for: decoding the codes with the codec, the codec latent, and the diffusion
sampler over 44.1 kHz compressed-STFT frames in windows; one warm-up call per step count
(compilation excluded), then the median of `--repeats` runs. The real-time factor is
seconds of 44.1 kHz audio per second of compute (above 1: faster than real time).

Quality (with `--checkpoint` and `--manifest`): `musicgen eval refiner`'s measurement
(`diffusion.refiner.eval`) on `--clips` test clips of `--seconds` each: the multi-scale
mel distance and the log-spectral distance above 8 kHz of the refined audio against the
original 44.1 kHz audio, per step count, beside the baseline (the same coarse codes
decoded and resampled to 44.1 kHz with soxr).

Without `--checkpoint` the network and the codec are random (speed does not depend on
the weights): the `refiner_tiny` shapes over a `codec_tiny`-shaped codec.

    .venv/bin/python bench/refiner.py [--checkpoint runs/refiner_tiny]
        [--manifest data/embedded/manifest.jsonl] [--steps 4,8,16,32,50] [--seconds 10]
        [--repeats 3] [--clips 8] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# bench/codec.py would shadow the `codec` package from this script's folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))


def random_refiner(quick: bool):
    """A refiner with random weights: `refiner_tiny`'s shapes (`--quick`: the debug ones)."""
    from flax import nnx

    from codec.api import Codec
    from codec.model import CodecModel
    from diffusion.refiner.api import Refiner
    from diffusion.refiner.model import RefinerNet
    from mgcore.config import load_experiment

    name = "refiner_tiny.py:debug" if quick else "refiner_tiny.py"
    config = load_experiment(str(_HERE.parent / "experiments" / name)).model
    if quick:
        from codec.api import random_codec

        codec = random_codec()
    else:
        codec_config = load_experiment(str(_HERE.parent / "experiments" / "codec_tiny.py")).model
        with nnx.use_eager_sharding(False):
            codec = Codec(CodecModel(codec_config, rngs=nnx.Rngs(0)))
    with nnx.use_eager_sharding(False):
        net = RefinerNet(config, rngs=nnx.Rngs(0))
    return Refiner(net, codec)


def speed(refiner, seconds: float, steps: list[int], repeats: int) -> dict[int, float]:
    """Median seconds of `refine` on `seconds` of random codes, per step count."""
    frames = round(seconds * refiner.codec.frame_rate)
    k = refiner.config.coarse.codebooks
    codes = np.random.default_rng(0).integers(0, refiner.codec.codebook_size, (1, k, frames))
    times = {}
    for s in steps:
        refiner.refine(codes, steps=s)  # compiles this step count
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = refiner.refine(codes, steps=s)
            runs.append(time.perf_counter() - start)
        assert np.isfinite(out).all()
        times[s] = statistics.median(runs)
    return times


def quality(checkpoint: str, manifest: str, clips: int, seconds: float, steps: list[int]):
    """`musicgen eval refiner`'s report on the test split (mean distances per row)."""
    from diffusion.refiner.eval import evaluate_refiner

    return evaluate_refiner(
        checkpoint, manifest, steps=tuple(steps), max_clips=clips, seconds=seconds, progress=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a refiner workdir or saved folder (default: random)")
    parser.add_argument("--manifest", help="held-out clips for the quality table")
    parser.add_argument("--steps", default="4,8,16,32,50", help="sampler step counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=8, help="held-out clips for quality")
    parser.add_argument("--quick", action="store_true", help="smoke run: debug shapes, 1 s")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    if args.quick:
        args.seconds, args.repeats, steps = 1.0, 1, [2, 4]

    import jax

    from diffusion.refiner.api import Refiner

    if args.checkpoint:
        refiner = Refiner.from_pretrained(args.checkpoint)
    else:
        refiner = random_refiner(args.quick)
    cores = len(os.sched_getaffinity(0))
    params = sum(x.size for x in jax.tree.leaves(refiner.state))
    print(
        f"device: {jax.devices()[0].platform}, {cores} cores; refiner "
        f"{'from ' + args.checkpoint if args.checkpoint else 'with random weights'} "
        f"({params / 1e6:.2f}M parameters, width {refiner.config.width}, depth "
        f"{refiner.config.depth}, k = {refiner.config.coarse.codebooks} codebooks at "
        f"{refiner.codec.sample_rate} Hz -> {refiner.sample_rate} Hz, sampler "
        f"{refiner.config.sampler.kind}); {args.seconds:g} s of audio, batch 1, median of "
        f"{args.repeats} after a warm-up call"
    )
    times = speed(refiner, args.seconds, steps, args.repeats)
    print(f"{'steps':>5s} {'seconds':>8s} {'x real time':>11s} {'ms / step / audio s':>19s}")
    for s, t in times.items():
        print(f"{s:5d} {t:8.2f} {args.seconds / t:11.2f} {1e3 * t / s / args.seconds:19.1f}")
    if args.checkpoint and args.manifest:
        report = quality(args.checkpoint, args.manifest, args.clips, args.seconds, steps)
        print(
            f"quality on {report.clips} test clips of {args.seconds:g} s (lower is better; "
            "baseline: the same coarse codes decoded and resampled to 44.1 kHz with soxr):"
        )
        print(f"{'':>14s} {'mel distance':>12s} {'LSD > 8 kHz dB':>14s} {'x real time':>11s}")
        base = report.rows["baseline"]
        print(f"{'baseline':>14s} {base['mel']:12.3f} {base['lsd_high']:14.2f}")
        for s in steps:
            row = report.rows[f"{s} steps"]
            print(
                f"{f'{s} steps':>14s} {row['mel']:12.3f} {row['lsd_high']:14.2f} "
                f"{args.seconds / times[s]:11.2f}"
            )
    default = 16 if 16 in times else steps[-1]
    print(f"real-time factor at {default} steps (seconds of audio per second): "
          f"{args.seconds / times[default]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
