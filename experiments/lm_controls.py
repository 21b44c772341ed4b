"""`lm_tiny` with controls: tempo and beat grid, metre, key, instruments and chords.

The same decoder, data and budget as `lm_tiny`, plus `model.controls`: each training
window carries its clip's true controls from the manifest (`musicgen data synth` records
bpm, metre, first downbeat, key and mode, instruments and the chord of every bar), the beat
and bar grid and the chord chroma cut at the window's start; a window has no controls at
all with probability 0.3 (text alone), and otherwise drops each control with probability
0.3, so any subset works at sampling and classifier-free guidance covers them.
2000 steps (the token cache of the reference codec over 8 hours).

    musicgen data encode --codec runs/reference/codec \\
        --manifest data/embedded_8h/manifest.jsonl --out data/tokens/reference
    musicgen train --config experiments/lm_controls.py --workdir runs/lm_controls
    musicgen train --config experiments/lm_controls.py:debug --workdir /tmp/lm_controls_debug
"""

import dataclasses
from pathlib import Path

from mgcore.config import load_experiment, parse_arg


def get_config(arg: str = ""):
    args = parse_arg(arg, known={"debug"})
    path = Path(__file__).resolve().parent / "lm_tiny.py"
    config = load_experiment(f"{path}:debug" if "debug" in args else str(path))
    model = dataclasses.replace(config.model, controls=True)
    if "debug" in args:
        return dataclasses.replace(config, model=model)
    data = dataclasses.replace(
        config.data,
        tokens="data/tokens/reference",
        codec="runs/reference/codec",
        controls_off=0.3,
        control_dropout=0.3,
    )
    train = dataclasses.replace(config.train, steps=2000)
    return dataclasses.replace(config, model=model, data=data, train=train)
