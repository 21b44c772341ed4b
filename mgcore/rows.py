"""Dense layers over the rows of an activation: flatten the leading axes, multiply, restore.

XLA:CPU computes a dense layer's weight gradient as x^T @ g. For an activation of rank 3
or more (`[B, T, I]`) it first transposes x to `[I, B, T]` in a loop fusion that also
recomputes x's elementwise producers, visiting the input element by element across
cache lines; for a 2-D `[B*T, I]` it does not. In a profile of the token LM's training
step those transposes took 2.9 s of 6.5 s; with the rows flattened the step took 3.1 s
(`bench/lm_train.py`). Every dense layer of the LM and the refiner goes through here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx


def on_rows(fn: Callable[[jax.Array], jax.Array], x_BxI: jax.Array) -> jax.Array:
    """`fn` applied to `x` as a 2-D `[rows, I]` array; the result gets x's leading axes."""
    lead = x_BxI.shape[:-1]
    y_NxO = fn(x_BxI.reshape(-1, x_BxI.shape[-1]))
    return y_NxO.reshape(*lead, y_NxO.shape[-1])


class Linear(nnx.Linear):
    """`nnx.Linear` over the rows of its input (see the module docstring)."""

    def __call__(self, inputs: jax.Array, *args, **kwargs) -> jax.Array:
        return on_rows(lambda x: super(Linear, self).__call__(x, *args, **kwargs), inputs)
