"""The reference model in `models/reference` (v2): a codec, its judge, a refiner and a token
LM with controls, trained in order on 16 hours of the embedded dataset on 2 CPU cores and
assembled into one float16 pipeline folder with the judge inside (`models/reference/judge`,
where `musicgen eval generate` and the demo find it).

    musicgen data synth --out data/embedded_16h --hours 16 --seed 0
    musicgen train --config experiments/reference.py:codec --workdir runs/reference/codec
    musicgen train --config experiments/reference.py:judge --workdir runs/reference/judge
    musicgen data encode --codec runs/reference/codec \\
        --manifest data/embedded_16h/manifest.jsonl --out data/tokens/reference
    musicgen train --config experiments/reference.py:refiner --workdir runs/reference/refiner
    musicgen train --config experiments/reference.py:lm --workdir runs/reference/lm
    musicgen assemble --lm runs/reference/lm --codec runs/reference/codec \\
        --refiner runs/reference/refiner --judge runs/reference/judge \\
        --out models/reference --float16 --refine-steps 4

- `codec`: `codec_vocos` (STFT-frame encoder reading magnitudes, Vocos decoder, EMA codes;
  50 Hz x 4 codebooks x 1024) with reconstruction losses only: the refiner writes the
  pipeline's audio above 7 kHz and the LM needs codes that keep pitch, which the
  discriminators do not buy at this budget (`results/codec_vocos/README.md`).
- `judge`: `judge_tiny` on the 16-hour set's training split.
- `refiner`: `refiner_tiny` over that codec at width 128 (3.5M parameters, not 9.7M):
  trained beside the 256-wide one for the same 40 minutes of one shared core (1261
  against 641 steps, over an early snapshot of this codec), it refined 32 test clips as
  well (mel distance 2.286 / 2.337 at 4 / 8 steps against 2.275 / 2.342, LSD above
  8 kHz 16.6 / 16.4 dB against 16.0 / 16.5, every gap within one standard error), at a
  third of the bytes the 40 MB budget has room for (`results/reference/README.md`).
- `lm`: `lm_controls` (tempo, beat grid, metre, key, instruments, chords) on the codec's
  tokens, 2500 steps; its held-out cross-entropy was still falling when they ended.

The pipeline refines with 4 steps: on 32 test clips they scored as well as 8 (mel
distance 2.043 against 2.084, LSD above 8 kHz 16.8 against 16.4 dB, both within a
standard error) at half the refiner's cost.

`models/reference/MODEL_CARD.md` gives the runs as they happened (steps, wall time, what
shared the CPU) and the `musicgen eval` numbers. No stage named means `:lm`;
`:codec,debug` (and so on) shrink a stage to seconds.
"""

import dataclasses
from pathlib import Path

from mgcore.config import load_experiment, parse_arg

STAGES = ("codec", "judge", "lm", "refiner")
MANIFEST = "data/embedded_16h/manifest.jsonl"
CODEC = "runs/reference/codec"
CODEC_STEPS = 16000
# What one 3-hour session of this 2-core machine holds after the codec and its token cache
# (the model card gives the runs): the refiner beside the encoding, the LM after it.
REFINER_STEPS = 2000
LM_STEPS = 2500


def get_config(arg: str = ""):
    args = parse_arg(arg, known={*STAGES, "debug"})
    stages = [s for s in STAGES if s in args] or ["lm"]
    if len(stages) != 1:
        raise ValueError(f"name one stage ({', '.join(STAGES)}), got {arg!r}")
    stage, debug = stages[0], "debug" in args

    def recipe(name: str):
        path = Path(__file__).resolve().parent / f"{name}.py"
        return load_experiment(f"{path}:debug" if debug else str(path))

    def replace(config, **parts: dict):
        """`config` with the named fields of its parts (data, loss, train) replaced."""
        return dataclasses.replace(config, **{
            name: dataclasses.replace(getattr(config, name), **fields)
            for name, fields in parts.items()
        })  # fmt: skip

    if stage == "codec":
        config = recipe("codec_vocos")
        if debug:
            return config
        return replace(config, data={"manifest": MANIFEST},
                       loss={"adversarial_start": 10**9},
                       train={"steps": CODEC_STEPS})  # fmt: skip
    if stage == "judge":
        config = recipe("judge_tiny")
        return config if debug else replace(config, data={"manifest": MANIFEST})
    if stage == "refiner":
        config = recipe("refiner_tiny")
        if debug:
            return config
        return replace(config, model={"width": 128}, data={"manifest": MANIFEST, "codec": CODEC},
                       train={"steps": REFINER_STEPS})  # fmt: skip
    config = recipe("lm_controls")
    if debug:
        return config
    data = {"tokens": "data/tokens/reference", "codec": CODEC, "manifest": MANIFEST,
            "embedded_hours": 16.0}  # fmt: skip
    return replace(config, data=data, train={"steps": LM_STEPS})
