"""Codebook interleaving patterns: how K parallel codebook streams become one sequence.

The codec gives K token streams per frame; the LM predicts one sequence step at a time
and all K heads at once. A pattern says, for every codebook k and sequence step s, which
codec frame sits there (or none: the special token). MusicGen (Copet et al., 2023,
section 2.2) compares:

- `delay` (MusicGen's default): codebook k is shifted right by `delays[k]` steps
  (`[0, 1, 2, 3]`; stereo `[0, 0, 1, 1, 2, 2, 3, 3]`), so codebook k of frame f is
  predicted after codebooks < k of the same frame. F frames take F + max(delays) steps.
- `parallel`: every codebook of frame f at step f (all delays 0). F steps.
- `flattened`: one codebook per step, frame-major (step f*K + k holds codebook k of
  frame f). K*F steps; the best in the paper, K times slower to sample.

One mechanism serves all three: a `layout_KxS` table of frame indices (-1 where the
special token goes), built once per length in NumPy, and gathers that interleave and
de-interleave codes. The LM's input is the sequence shifted right by one step behind an
all-special start step (audiocraft's and Hugging Face's convention), so the logits at
step s predict sequence step s.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np


@dataclasses.dataclass(frozen=True)
class PatternConfig:
    """Which interleaving, and the delays of `delay` (None: codebook k delayed by k)."""

    kind: Literal["delay", "parallel", "flattened"] = "delay"
    delays: tuple[int, ...] | None = None


class Pattern:
    """The layout of a pattern for K codebooks; lengths are chosen per call."""

    def __init__(self, config: PatternConfig, num_codebooks: int):
        self.config = config
        self.num_codebooks = num_codebooks
        if config.kind == "delay":
            delays = config.delays if config.delays is not None else tuple(range(num_codebooks))
        else:
            delays = (0,) * num_codebooks
        if len(delays) != num_codebooks or min(delays) < 0:
            raise ValueError(f"pattern needs {num_codebooks} delays >= 0, got {delays}")
        self.delays = np.asarray(delays, np.int64)

    def steps(self, frames: int) -> int:
        """Sequence steps that hold `frames` whole frames."""
        if self.config.kind == "flattened":
            return frames * self.num_codebooks
        return frames + int(self.delays.max())

    def frames(self, steps: int) -> int:
        """Whole frames complete after `steps` sequence steps (inverse of `steps`)."""
        if self.config.kind == "flattened":
            return steps // self.num_codebooks
        return max(steps - int(self.delays.max()), 0)

    def layout(self, steps: int) -> np.ndarray:
        """`[K, steps]` int32: the frame at each (codebook, step), -1 for special."""
        s_S = np.arange(steps)
        if self.config.kind == "flattened":
            k_K = np.arange(self.num_codebooks)[:, None]
            on = (s_S[None] % self.num_codebooks) == k_K
            return np.where(on, s_S[None] // self.num_codebooks, -1).astype(np.int32)
        frame_KxS = s_S[None] - self.delays[:, None]
        return np.where(frame_KxS >= 0, frame_KxS, -1).astype(np.int32)

    def positions(self, frames: int) -> np.ndarray:
        """`[K, frames]` int32: the step at which each (codebook, frame) sits."""
        f_F = np.arange(frames)
        if self.config.kind == "flattened":
            return (f_F[None] * self.num_codebooks + np.arange(self.num_codebooks)[:, None]).astype(
                np.int32
            )
        return (f_F[None] + self.delays[:, None]).astype(np.int32)

    def interleave(self, codes_BxKxF, special: int, steps: int | None = None, xp=np):
        """Codes `[B, K, F]` -> sequence `[B, K, steps]` (default: all F frames).

        Steps whose frame is absent (before a delay, or at/after F) hold `special`.
        `xp` is `numpy` or `jax.numpy`.
        """
        frames = codes_BxKxF.shape[-1]
        steps = self.steps(frames) if steps is None else steps
        layout_KxS = self.layout(steps)
        valid_KxS = (layout_KxS >= 0) & (layout_KxS < frames)
        index_KxS = np.clip(layout_KxS, 0, max(frames - 1, 0))
        gathered = xp.take_along_axis(
            codes_BxKxF,
            xp.broadcast_to(index_KxS, (codes_BxKxF.shape[0], *index_KxS.shape)),
            axis=2,
        )
        return xp.where(valid_KxS[None], gathered, special)

    def deinterleave(self, seq_BxKxS, frames: int | None = None, xp=np):
        """Sequence `[B, K, S]` -> codes `[B, K, frames]` (default: the whole frames in S)."""
        frames = self.frames(seq_BxKxS.shape[-1]) if frames is None else frames
        index_KxF = self.positions(frames)
        return xp.take_along_axis(
            seq_BxKxS,
            xp.broadcast_to(index_KxF, (seq_BxKxS.shape[0], *index_KxF.shape)),
            axis=2,
        )

    def valid(self, steps: int, frames_B, xp=np):
        """`[B, K, steps]` bool: steps that hold a real frame (< that row's frame count)."""
        layout_KxS = self.layout(steps)
        frames_B = xp.asarray(frames_B)
        return (layout_KxS[None] >= 0) & (layout_KxS[None] < frames_B[:, None, None])
