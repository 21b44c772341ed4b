"""Distances between sets of audio, as the text-to-music literature reports them.

`frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of
embeddings (FAD, Kilgour et al. 2019; Stable Audio's FD-OpenL3), here over the judge's
audio tower. `label_kl`: audiocraft's KL metric, the KL divergence from the classifier's
label distribution on the reference clip to that on the generation for the same prompt,
averaged over prompts; the instrument classifier's multi-label probabilities are
normalised into one distribution over labels, as audiocraft does with PaSST's.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def frechet_distance(a_NxD: np.ndarray, b_MxD: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of the two sets' Gaussians.

    Args:
      a_NxD, b_MxD: embeddings, one row per clip (at least 2 rows each).
    """
    a, b = np.asarray(a_NxD, np.float64), np.asarray(b_MxD, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D], got {a.shape}, {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 clips a set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product: regularise both, as FID code does
        eps = 1e-6 * np.eye(a.shape[1])
        root = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = np.real(root)
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    return float(max(value, 0.0))


def label_kl(reference_NxL: np.ndarray, generated_NxL: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """KL(reference || generated) per row `[N]`, each row's label scores normalised to sum 1.

    Args:
      reference_NxL, generated_NxL: non-negative label scores (e.g. sigmoid probabilities)
        of paired clips: row i of both belongs to prompt i.
    """
    p = np.asarray(reference_NxL, np.float64) + eps
    q = np.asarray(generated_NxL, np.float64) + eps
    if p.shape != q.shape:
        raise ValueError(f"label scores must pair up, got {p.shape} and {q.shape}")
    p, q = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    return np.sum(p * np.log(p / q), axis=-1)
