"""How a continuation keeps the user's clip: the clip itself, then the generated audio,
joined by an equal-power crossfade over the clip's last samples."""

from __future__ import annotations

import numpy as np

CROSSFADE_SECONDS = 0.05  # a continuation's equal-power fade from the clip into new audio


def crossfade_gains(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade-in, fade-out) gains of an `n`-sample equal-power crossfade: sin and cos of a
    quarter turn, so their squares sum to 1 (uncorrelated signals keep their loudness)."""
    theta = (np.arange(n) + 0.5) / max(n, 1) * (np.pi / 2)
    return np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)


def keep_clip(generated_BxCxT: np.ndarray, clip_BxCxT: np.ndarray, fade: int) -> np.ndarray:
    """The clip itself, then the generated audio from the clip's end on.

    Over the clip's last `fade` samples (at most half the clip) the clip fades out and the
    generated audio (which there renders the clip's codes) fades in, at equal power.

    Args:
      generated_BxCxT: the whole generated result, clip span included.
      clip_BxCxT: the user's clip in the same rate and channels.
      fade: crossfade length in samples.
    """
    out = np.array(generated_BxCxT, np.float32)
    n = min(clip_BxCxT.shape[-1], out.shape[-1])
    fade = min(fade, n // 2)
    keep = n - fade
    fade_in, fade_out = crossfade_gains(fade)
    out[..., :keep] = clip_BxCxT[..., :keep]
    out[..., keep:n] = clip_BxCxT[..., keep:n] * fade_out + out[..., keep:n] * fade_in
    return out
