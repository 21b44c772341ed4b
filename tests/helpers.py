"""Small assertions shared by the tests."""

import numpy as np


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| over all elements (Frobenius norm)."""
    actual = np.asarray(actual, dtype=np.complex128 if np.iscomplexobj(actual) else np.float64)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
