"""Weights held fixed in training: `FrozenParam`, a variable that is not an `nnx.Param`.

The trainer differentiates and updates a model's `nnx.Param`s only (`trainer.py`); every
other variable rides along in its state unchanged, is sharded by its annotations and is
saved in each checkpoint. So freezing a weight is changing its variable type: the
refiner's pretrained codec is frozen whole, a LoRA fine-tune freezes everything but its
adapters (`musicgen/lm/lora.py`). A frozen weight reaches the jitted step as an argument,
never as a constant baked into the program.
"""

from __future__ import annotations

import jax
from flax import nnx


class FrozenParam(nnx.Variable):
    """A pretrained weight held fixed in training."""


def frozen(module: nnx.Module, keep=None) -> nnx.Module:
    """A copy of `module` whose `nnx.Param`s are `FrozenParam`s (metadata kept).

    Args:
      module: the model.
      keep: a variable type (e.g. `nnx.LoRAParam`) whose parameters stay trainable.
    """
    graphdef, state = nnx.split(module)

    def freeze(v):
        if isinstance(v, nnx.Param) and not (keep is not None and isinstance(v, keep)):
            return FrozenParam(v.get_value(), **v.get_metadata())
        return v

    state = jax.tree.map(freeze, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state)
