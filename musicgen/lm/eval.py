"""Held-out cross-entropy of a token LM, with its captions and without: does it use the text?

`musicgen eval lm --checkpoint W [--tokens DIR] [--split test]` scores every window of
every held-out clip of the token cache once (sequential windows of the training length),
twice: with the clip's real caption and with the empty caption (the unconditional branch
of classifier-free guidance). A model that learned from the text has a clearly lower
cross-entropy with it. The same numbers for bfloat16 and int8 weights (int8 activations
too) show what the faster sampling weights cost.

Numbers are nats per token, per codebook; they are in-domain (the embedded dataset's
held-out split), not comparable to published figures.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from mgcore.config import saved_config_dict
from musicgen.lm.api import LanguageModel
from musicgen.lm.family import TextBatches, evaluate_text_gap
from musicgen.lm.sampling import WEIGHTS
from musicgen.lm.token_cache import TokenCache
from musicgen.lm.token_loader import TokenLoader, TokenPipelineConfig

# What each window is scored with: the caption, nothing, and (for an LM with controls) the
# caption with the clip's true controls, and the controls without the caption.
CONDITIONS = {"text": "real", "empty": "empty", "controls": "real + controls",
              "controls_only": "controls only"}  # fmt: skip


@dataclasses.dataclass
class LMReport:
    checkpoint: str
    tokens: str
    split: str
    caption_field: str
    windows: int
    frames_per_window: int
    head_steps: int
    # weights -> {"ce_text", "ce_empty", "ce_text_head", "ce_empty_head": [K],
    #             "gap_se", "gap_head_se", "seconds": float}
    results: dict

    def markdown(self) -> str:
        k = len(next(iter(self.results.values()))["ce_text"])
        head = " | ".join(f"cb {i}" for i in range(k))
        lines = [
            f"Held-out cross-entropy (nats/token), `{self.split}` split of `{self.tokens}`, "
            f"{self.windows} windows of {self.frames_per_window} frames, captions from "
            f"`{self.caption_field}`. In-domain (embedded dataset), not comparable to "
            "published figures.",
        ]
        parts = (
            ("", "Whole windows"),
            ("_head", f"First {self.head_steps} steps of each window (no audio context yet)"),
        )
        for part, title in parts:
            lines += [
                "",
                f"{title}:",
                "",
                f"| weights | caption | {head} | mean |",
                "|---|---|" + "---|" * (k + 1),
            ]
            for weights, r in self.results.items():
                for caption, label in CONDITIONS.items():
                    name = f"ce_{caption}{part}"
                    if name not in r:
                        continue
                    cells = " | ".join(f"{v:.4f}" for v in r[name])
                    lines.append(f"| {weights} | {label} | {cells} | {np.mean(r[name]):.4f} |")
        base = self.results.get("float32")
        if base:
            lines.append("")
            for part, title in (("", "whole windows"), ("_head", "first steps")):
                gap = np.mean(base[f"ce_empty{part}"]) - np.mean(base[f"ce_text{part}"])
                se = base[f"gap{part}_se"]
                lines.append(
                    f"Text gap (empty - real, float32, {title}): {gap:.4f} nats/token, standard "
                    f"error over windows {se:.4f} ({gap / se:.1f} standard errors)."
                )
            for weights, r in self.results.items():
                if weights != "float32":
                    change = np.mean(r["ce_text"]) / np.mean(base["ce_text"]) - 1
                    lines.append(f"{weights} vs float32 (real captions): {100 * change:+.2f} %.")
        return "\n".join(lines) + "\n"


def evaluate_lm(
    checkpoint: str,
    *,
    tokens: str | None = None,
    split: str = "test",
    caption_field: str = "caption",
    seconds: float | None = None,
    head_seconds: float = 1.0,
    batch_size: int = 8,
    weights: tuple[str, ...] = WEIGHTS,
    lm: LanguageModel | None = None,
) -> LMReport:
    """Scores every window of `split` with real and empty captions (and, for an LM with
    controls, with the clips' true controls), per weight format.

    Args:
      checkpoint: a saved LM or an LM training workdir.
      tokens: the token cache (default: the workdir's `data.tokens`).
      split: the cache split to score.
      caption_field: "caption" or "caption_held_out" (the held-out templates).
      seconds: window length (default: the model's training window).
      head_seconds: the opening of each window also scored on its own (default 1 s).
      batch_size: windows per forward pass.
      weights: any of "float32", "bfloat16", "int8".
      lm: the LM already loaded (a pipeline's, with its adapter); `checkpoint` then only
        names it in the report, and `tokens` must be given.
    """
    lm = lm if lm is not None else LanguageModel.from_pretrained(checkpoint)
    if tokens is None:
        tokens = saved_config_dict(Path(checkpoint) / "config.json")["data"]["tokens"]
    cache = TokenCache(tokens)
    frames = max(1, round((seconds or lm.window_seconds) * cache.frame_rate))
    head_steps = max(1, round(head_seconds * cache.frame_rate))
    pipeline = TokenPipelineConfig(
        frames=frames,
        batch_size=batch_size,
        shuffle=False,
        crop="sequential",
        caption_field=caption_field,
        num_epochs=1,
        shard_index=0,
        shard_count=1,
        controls=lm.config.controls,  # the clips' true controls, none dropped
        controls_off=0.0,
        control_dropout=0.0,
    )
    batches = list(TextBatches(TokenLoader(cache.root, split, pipeline), lm.conditioner))
    results = {}
    for name in weights:
        start = time.perf_counter()
        variant = lm.with_weights(name)
        dtype = "bfloat16" if name == "bfloat16" else "float32"
        values = evaluate_text_gap(variant.model, batches, lm.conditioner, dtype, head_steps)
        k = lm.config.num_codebooks
        results[name] = {
            f"ce_{caption}{part}": [values[f"eval/ce_{caption}{part}_{i}"] for i in range(k)]
            for caption in CONDITIONS
            for part in ("", "_head")
            if f"eval/ce_{caption}{part}_0" in values
        }
        results[name]["gap_se"] = values["eval/text_gap_se"]
        results[name]["gap_head_se"] = values["eval/text_gap_head_se"]
        results[name]["seconds"] = time.perf_counter() - start
    windows = int(sum((b["length"] > 0).sum() for b in batches))
    return LMReport(
        str(checkpoint), str(tokens), split, caption_field, windows, frames, head_steps, results
    )


def write_report(report: LMReport, out: str | Path) -> tuple[Path, Path]:
    """Writes `lm_eval.json` and `lm_eval.md` into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "lm_eval.json", out / "lm_eval.md"
    json_path.write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    md_path.write_text(report.markdown())
    return json_path, md_path
