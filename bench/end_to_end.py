"""Wall-clock seconds to make 10 s of 44.1 kHz audio from one prompt, split by stage.

    .venv/bin/python bench/end_to_end.py [--checkpoint DIR] [--seconds 10] [--repeats 3]
        [--refine-steps 8] [--weights float32,int8]

The pipeline is the reference model in `models/reference` unless `--checkpoint` names
another. Each configuration runs once to compile (not timed), then `--repeats` times; the
medians are printed per stage: the LM (text encoding and token sampling), and the refiner
(or, with `refine=False`, the codec decoding resampled to 44.1 kHz with soxr). The full
pipeline runs with each of `--weights` for the LM (`SamplingConfig.weights`: the
model's float32, and int8: `musicgen generate --weights int8`). The last lines are the
real-time factors of the full pipeline: seconds of audio per wall-clock second (above 1 is
faster than real time), the model's own sampling last.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent  # bench/codec.py would shadow the codec package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

PROMPT = "A cheerful celtic folk tune with fiddle and flute at 112 bpm in D major."


def measure(mg, seconds: float, repeats: int, refine: bool, steps: int | None) -> dict:
    """Median seconds per stage and in total over `repeats` timed runs after a warm-up."""
    mg.generate([PROMPT], seconds, seed=0, refine=refine, refine_steps=steps, progress=False)
    runs = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        mg.generate([PROMPT], seconds, seed=seed, refine=refine, refine_steps=steps, progress=False)
        runs.append({**mg.timings, "total": time.perf_counter() - start})
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    import jax

    from musicgen.pipeline import MusicGen

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="pipeline folder (default: models/reference)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per run (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--refine-steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--weights", default="float32,int8", help="LM weights, comma-separated")
    args = parser.parse_args()
    mg = MusicGen.from_pretrained(args.checkpoint)
    steps = args.refine_steps or mg.refine_steps
    own = mg.sampling
    print(
        f"device: {jax.devices()[0].platform}, {jax.device_count()} device(s); "
        f"{args.checkpoint or 'models/reference'}; one prompt, {args.seconds:g} s of 44.1 kHz "
        f"audio; medians of {args.repeats} runs after a warm-up (compilation excluded)"
    )
    rows, full = {}, {}
    for weights in [w for w in args.weights.split(",") if w]:
        mg.sampling = dataclasses.replace(own, weights=weights)
        full[weights] = measure(mg, args.seconds, args.repeats, True, steps)
        rows[f"refined ({steps} steps), LM {weights}"] = full[weights]
    mg.sampling = own
    rows[f"codec decoding + soxr, LM {own.weights}"] = measure(
        mg, args.seconds, args.repeats, False, None
    )
    for name, row in rows.items():
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in row.items() if k != "total")
        print(
            f"{name:<34} total {row['total']:6.2f} s ({stages}); "
            f"{args.seconds / row['total']:.2f}x real time"
        )
    for weights in sorted(full, key=lambda w: w == own.weights):  # the model's own last
        print(
            f"real-time factor, full pipeline (LM {weights} + refiner): "
            f"{args.seconds / full[weights]['total']:.2f}x"
        )


if __name__ == "__main__":
    main()
