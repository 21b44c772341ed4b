"""Fine-tuning on a style the model never heard (issue 22's measurement, `results/finetune/`).

One style of the embedded dataset is held out whole: a base LM (the reference LM's
recipe, `reference.py:lm`) trains on every other clip; `musicgen finetune` then adapts
the assembled base pipeline to a few minutes of the style, by LoRA and by full
fine-tuning, and the style's other clips (never trained on by either) measure what
changed, beside the other styles' test clips (which must not get worse).

    musicgen data synth --out data/embedded_8h --hours 8 --seed 0
    python experiments/finetune_style.py split --manifest data/embedded_8h/manifest.jsonl \\
        --style waltz --minutes 6 --out data/style_waltz
    musicgen data encode --codec models/reference/refiner/codec \\
        --manifest data/style_waltz/without/manifest.jsonl --out data/tokens/without_waltz
    musicgen train --config experiments/finetune_style.py --workdir runs/without_waltz
    musicgen assemble --lm runs/without_waltz --codec models/reference/refiner/codec \\
        --refiner models/reference/refiner --out runs/base_without_waltz
    musicgen finetune --from runs/base_without_waltz --audio-dir data/style_waltz/finetune \\
        --out runs/waltz_lora
    musicgen finetune --from runs/base_without_waltz --audio-dir data/style_waltz/finetune \\
        --out runs/waltz_full --method full

`split` writes `without/manifest.jsonl` (every clip not of the style), `finetune/` (the
style's training-split clips up to `--minutes`, as a user's folder: links to the audio and
each caption in a `.txt` beside it) and `heldout/manifest.jsonl` (the style's other clips,
all marked `test`). No stage named means the base LM; `:debug` shrinks it to seconds.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from mgcore.config import load_experiment, parse_arg

TOKENS = "data/tokens/without_waltz"
MANIFEST = "data/style_waltz/without/manifest.jsonl"
CODEC = "models/reference/refiner/codec"
STEPS = 1500


def get_config(arg: str = ""):
    args = parse_arg(arg, known={"debug"})
    path = Path(__file__).resolve().parent / "reference.py"
    config = load_experiment(f"{path}:lm,debug" if "debug" in args else f"{path}:lm")
    if "debug" in args:
        return config
    data = dataclasses.replace(config.data, tokens=TOKENS, codec=CODEC, manifest=MANIFEST,
                               embedded_hours=0.0)  # fmt: skip
    return dataclasses.replace(
        config, data=data, train=dataclasses.replace(config.train, steps=STEPS)
    )


def split(manifest: str, style: str, minutes: float, out: str) -> dict:
    """Writes the three parts (module docstring); returns their clip counts and minutes."""
    source = Path(manifest).resolve()
    entries = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    for e in entries:
        e["path"] = str((source.parent / e["path"]).resolve())
    of_style = [e for e in entries if (e.get("attributes") or {}).get("genre") == style]
    if not of_style:
        raise SystemExit(f"no clip of genre {style!r} in {manifest}")
    out = Path(out)
    for part in ("without", "finetune", "heldout"):
        (out / part).mkdir(parents=True, exist_ok=True)
    chosen, seconds = [], 0.0
    for e in sorted((e for e in of_style if e["split"] == "train"), key=lambda e: e["path"]):
        if seconds >= minutes * 60:
            break
        chosen.append(e)
        seconds += e["duration"]
    for i, e in enumerate(chosen):
        link = out / "finetune" / f"{i:03d}{Path(e['path']).suffix}"
        if not link.exists():
            os.symlink(e["path"], link)
        link.with_suffix(".txt").write_text(e["caption"] + "\n")
    kept = {e["path"] for e in chosen}
    heldout = [{**e, "split": "test"} for e in of_style if e["path"] not in kept]
    without = [e for e in entries if e not in of_style]
    for name, rows in (("without", without), ("heldout", heldout)):
        text = "".join(json.dumps(e) + "\n" for e in rows)
        (out / name / "manifest.jsonl").write_text(text)
    summary = {
        name: {"clips": len(rows), "minutes": round(sum(e["duration"] for e in rows) / 60, 2)}
        for name, rows in (("without", without), ("finetune", chosen), ("heldout", heldout))
    }
    (out / "split.json").write_text(json.dumps({"style": style, **summary}, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="hold one style out of a manifest")
    s.add_argument("--manifest", required=True)
    s.add_argument("--style", required=True, help="a genre of the manifest, e.g. waltz")
    s.add_argument("--minutes", type=float, default=6.0, help="of the style to fine-tune on")
    s.add_argument("--out", required=True)
    a = parser.parse_args()
    print(json.dumps(split(a.manifest, a.style, a.minutes, a.out)))
    sys.exit(0)
