"""How exactly the prompt parser recovers the controls a caption states.

    python -m musicgen.evaluation.parser_check data/embedded_8h/manifest.jsonl

For every caption of a manifest (the training templates' `caption`, and the held-out
templates' `caption_held_out` on valid and test clips), the truth is what the caption
states of its clip's attributes, found without the parser: the bpm written as a number,
the tonic in any spelling followed by the mode, the metre as "N/D" or one of its names,
the clip's instruments the caption names (a name inside a longer one it also names, as
"guitar" in "electric guitar", does not count). A caption is exact when
`parse_prompt` gives exactly those controls, nothing missed and nothing more.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from musicgen.controls import Controls
from musicgen.controls.parse import parse_prompt
from musicgen.controls.pitch import parse_pitch_class
from musicgen.evaluation.prompts import states_bpm
from musicgen.synth.caption_words import METER_NAMES

_ACCIDENTAL = {"#": r"(?:#|♯|-sharp| sharp)", "b": r"(?:b|♭|-flat| flat)"}


def _states_key(caption: str, key: str, mode: str) -> bool:
    key = str(key).replace("♯", "#").replace("♭", "b")
    tonic = re.escape(key[0]) + (_ACCIDENTAL[key[1]] if len(key) > 1 else r"(?![#♯b♭-])")
    return re.search(rf"(?<![A-Za-z]){tonic}\s+(?i:{re.escape(mode)})\b", caption) is not None


def _states_meter(caption: str, meter: str) -> bool:
    forms = [re.escape(meter)] + [re.escape(n) for n in METER_NAMES.get(meter, ())]
    return re.search(rf"(?<![\d/])(?:{'|'.join(forms)})(?![\d/])", caption) is not None


def _named(caption: str, instruments) -> set[str]:
    names = sorted(set(instruments or ()), key=len, reverse=True)
    text, found = caption.lower(), set()
    for name in names:
        pattern = rf"(?<![a-z]){re.escape(name)}(?:e?s)?(?![a-z])"
        if re.search(pattern, text):
            found.add(name)
            text = re.sub(pattern, " ", text)  # "electric guitar" hides its "guitar"
    return found


def stated(caption: str, attributes: dict) -> Controls:
    """The controls `caption` states of a clip with `attributes` (module docstring)."""
    a = attributes
    fields = {}
    if a.get("bpm") is not None and states_bpm(caption, a["bpm"]):
        fields["bpm"] = float(a["bpm"])
    if a.get("time_signature") and _states_meter(caption, a["time_signature"]):
        fields["time_signature"] = a["time_signature"]
    if a.get("key") and a.get("mode") and _states_key(caption, a["key"], a["mode"]):
        fields.update(key=a["key"], mode=a["mode"])
    named = _named(caption, a.get("instruments"))
    if named:
        fields["instruments"] = sorted(named)
    return Controls(**fields)


def same(parsed: Controls, truth: Controls) -> bool:
    def pc(c: Controls):
        return None if c.key is None else (parse_pitch_class(c.key), c.mode)

    return (
        parsed.bpm == truth.bpm
        and parsed.time_signature == truth.time_signature
        and pc(parsed) == pc(truth)
        and set(parsed.instruments or ()) == set(truth.instruments or ())
    )


def check(manifest: str | Path) -> dict:
    """Exact recoveries per caption kind, and the first few misses of each."""
    out: dict[str, dict] = {}
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            for kind in ("caption", "caption_held_out"):
                caption = entry.get(kind)
                if not caption:
                    continue
                truth, parsed = stated(caption, entry["attributes"]), parse_prompt(caption)
                row = out.setdefault(kind, {"captions": 0, "exact": 0, "misses": []})
                row["captions"] += 1
                if same(parsed, truth):
                    row["exact"] += 1
                elif len(row["misses"]) < 5:
                    row["misses"].append(
                        {
                            "caption": caption,
                            "stated": truth.describe(),
                            "parsed": parsed.describe(),
                        }
                    )
    for row in out.values():
        row["share"] = row["exact"] / max(row["captions"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest")
    args = parser.parse_args(argv)
    result = check(args.manifest)
    for kind, row in result.items():
        print(f"{kind}: {row['exact']} of {row['captions']} exact ({100 * row['share']:.2f} %)")
        for miss in row["misses"]:
            print(f"  miss: {miss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
