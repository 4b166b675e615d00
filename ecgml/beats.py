"""Signal → beats: R-peak detection and one window per R-peak.

``extract_windows`` is the shared slicing primitive (the synthetic cohort uses it with the
generator's known R-peaks); R-peak detection and beat quality filtering build on it.
"""

from __future__ import annotations

import numpy as np

DEFAULT_PRE_R_MS = 250.0
DEFAULT_POST_R_MS = 650.0


def window_samples(fs: float, pre_r_ms: float, post_r_ms: float) -> tuple[int, int]:
    """Samples before and after the R-peak for a window of the given milliseconds."""
    return int(round(pre_r_ms * fs / 1000.0)), int(round(post_r_ms * fs / 1000.0))


def extract_windows(
    signal: np.ndarray,
    r_indices: np.ndarray,
    fs: float,
    pre_r_ms: float = DEFAULT_PRE_R_MS,
    post_r_ms: float = DEFAULT_POST_R_MS,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a fixed window around each R-peak.

    Returns ``(beats, kept)``: beats of shape ``(n, pre + post)`` with the R-peak at index
    ``pre``, and the R indices kept (windows running past either end of the signal are dropped).
    """
    pre, post = window_samples(fs, pre_r_ms, post_r_ms)
    r_indices = np.asarray(r_indices, dtype=np.int64)
    kept = r_indices[(r_indices - pre >= 0) & (r_indices + post <= len(signal))]
    if kept.size == 0:
        return np.zeros((0, pre + post), dtype=np.float32), kept
    offsets = np.arange(-pre, post)
    beats = np.asarray(signal, dtype=np.float32)[kept[:, None] + offsets[None, :]]
    return beats, kept
