"""Low-rank adapters (LoRA, Hu et al., 2021) on the token LM's projections.

An adapted projection computes `x W + (alpha / r) (x A) B`: `W` is the trained weight,
held fixed; `A` `[in, r]` starts random and `B` `[r, out]` at zero, so a new adapter
changes nothing and training moves only `r (in + out)` numbers per projection. The
adapters are `nnx.LoRAParam`s (a kind of `nnx.Param`), so `freeze_base` can turn every
other parameter into a `FrozenParam` that the trainer neither differentiates nor keeps
optimiser moments for: the memory and time that LoRA saves over full fine-tuning.

`adapter.merge` folds each adapter into its weight (`W + (alpha / r) A B`) and gives the
model without adapters: the same function, sampled at full speed.

Targets name projections by their place in a block: `self_attn.q_proj`, `k_proj`,
`v_proj`, `out_proj` (and the same under `encoder_attn`, the cross-attention to the text),
and the MLP's `fc1`, `fc2`. A target matches a projection when it is its whole name, its
first part (`self_attn`: all four of the self-attention) or its last (`q_proj`: both
attentions' queries).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from mgcore.bounds import within
from mgcore.config_types import ConfigError
from mgcore.frozen import frozen

PROJECTIONS = tuple(
    [f"{attn}.{p}" for attn in ("self_attn", "encoder_attn")
     for p in ("q_proj", "k_proj", "v_proj", "out_proj")] + ["fc1", "fc2"]
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Which projections carry adapters, and their shape.

    Attributes:
      rank: the adapters' rank r (0: no adapters).
      alpha: the scale numerator; the update is `alpha / rank` times `x A B` (so changing
        the rank keeps the learning rate meaningful).
      targets: the projections adapted (module docstring); default all of attention and
        the MLP, as QLoRA found best.
    """

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = ("self_attn", "encoder_attn", "fc1", "fc2")

    def __post_init__(self):
        within(self, "rank", 0, 65536)
        within(self, "alpha", 0.0, 1e6, low_open=True)
        for target in self.targets:
            if not any(_matches(target, p) for p in PROJECTIONS):
                raise ConfigError(
                    f"lora.targets: {target!r} names no projection; choose from "
                    f"{', '.join(PROJECTIONS)} (or self_attn, encoder_attn, q_proj, ...)"
                )

    def on(self, projection: str) -> tuple[int, float] | None:
        """(rank, alpha) for `projection` when it carries an adapter, else None."""
        if self.rank and any(_matches(t, projection) for t in self.targets):
            return self.rank, self.alpha
        return None


def _matches(target: str, projection: str) -> bool:
    parts = projection.split(".")
    return target in (projection, parts[0], parts[-1])


def adapted(model: nnx.Module):
    """(path, module) of every module of `model` that holds an adapter."""
    for path, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Module) and getattr(module, "lora_a", None) is not None:
            yield path, module


def freeze_base(model: nnx.Module) -> nnx.Module:
    """A copy of `model` whose every parameter but the adapters is a `FrozenParam`."""
    return frozen(model, keep=nnx.LoRAParam)


def trained_form(model: nnx.Module, base: str, method: str) -> nnx.Module:
    """The decoder as the trainer holds it in a run (`LMExperiment.finetune`): in a LoRA
    fine-tune (a `base`, method "lora") every weight but the adapters is frozen, so that
    the run's checkpoints restore into it."""
    return freeze_base(model) if base and method == "lora" else model


def count(model: nnx.Module, kind=nnx.LoRAParam) -> int:
    """How many numbers the variables of `kind` hold."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, kind)))
