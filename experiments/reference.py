"""The reference model in `models/reference`: the three tiny recipes, trained in order on the
embedded dataset on 2 CPU cores, then assembled into one float16 pipeline folder.

    musicgen data synth --out data/embedded --hours 2 --seed 0
    musicgen data synth --out data/embedded_8h --hours 8 --seed 0
    musicgen train --config experiments/reference.py:codec --workdir runs/reference/codec
    musicgen train --config experiments/reference.py:refiner --workdir runs/reference/refiner
    musicgen data encode --codec runs/reference/codec \\
        --manifest data/embedded_8h/manifest.jsonl --out data/tokens/reference
    musicgen train --config experiments/reference.py:lm --workdir runs/reference/lm
    musicgen assemble --lm runs/reference/lm --codec runs/reference/codec \\
        --refiner runs/reference/refiner --out models/reference --float16

- `codec`: `codec_tiny` for 1200 steps on 2 h (48 minutes, shared CPU);
- `refiner`: `refiner_tiny` for 2000 steps on 2 h over that codec (43 minutes);
- `lm`: `lm_tiny` on the codec's tokens of 8 h (1273 training clips, 4x the 2 h set; with
  2 h the caption helped only on training clips), 1000 steps (about 25 minutes).

`models/reference/MODEL_CARD.md` gives the commands as they were run and the `musicgen
eval` numbers. No stage named means `:lm`; `:codec,debug` (and so on) shrink a stage to
seconds.
"""

import dataclasses
from pathlib import Path

from mgcore.config import load_experiment, parse_arg

STAGES = ("codec", "lm", "refiner")
CODEC = "runs/reference/codec"


def get_config(arg: str = ""):
    args = parse_arg(arg, known={*STAGES, "debug"})
    stages = [s for s in STAGES if s in args] or ["lm"]
    if len(stages) != 1:
        raise ValueError(f"name one stage (codec, lm or refiner), got {arg!r}")
    stage, debug = stages[0], "debug" in args

    def recipe(name: str):
        path = Path(__file__).resolve().parent / f"{name}.py"
        return load_experiment(f"{path}:debug" if debug else str(path))

    if stage == "codec":
        config = recipe("codec_tiny")
        if debug:
            return config
        return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=1200))
    if stage == "refiner":
        config = recipe("refiner_tiny")
        if debug:
            return config
        data = dataclasses.replace(config.data, codec=CODEC)
        train = dataclasses.replace(config.train, steps=2000)
        return dataclasses.replace(config, data=data, train=train)
    config = recipe("lm_tiny")
    if debug:
        return config
    data = dataclasses.replace(
        config.data,
        tokens="data/tokens/reference",
        codec=CODEC,
        manifest="data/embedded_8h/manifest.jsonl",
        embedded_hours=8.0,
    )
    return dataclasses.replace(config, data=data)
