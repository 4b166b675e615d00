"""Per-beat isoelectric referencing: measure every beat against its own PR segment.

Clinicians read ST deviation (and every other amplitude) relative to the isoelectric PR segment,
not to the recorder's zero, which baseline wander moves by a sizeable fraction of a millivolt.
:func:`reference_beats` does the same to each beat before it is laid out (``data.baseline``):

- ``none``: the beat as stored;
- ``pr_segment``: subtract the PR-segment level, the mean of the flattest ``PR_WINDOW_MS``
  window between ``PR_SEARCH_MS`` before the R-peak (the isoelectric point searched as the
  flattest stretch before QRS onset, as ST-monitoring algorithms do);
- ``linear``: subtract the line through the PR-segment level and the flattest ``TP_WINDOW_MS``
  window in the last ``TP_SEARCH_MS`` of the beat (the T-P segment), so a linear wander is
  removed too. A beat too short for either window falls back to the constant PR level.

Training (``ecgml.data``), pretraining and serving (``ecgml.inference``) call this one function
with the method the model was trained with (its logged metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Baseline = Literal["none", "pr_segment", "linear"]
BASELINES: tuple[str, ...] = ("none", "pr_segment", "linear")
#: The PR-segment search range, in ms before the R-peak (start, end).
PR_SEARCH_MS = (120.0, 30.0)
PR_WINDOW_MS = 20.0
#: The T-P segment is searched in the beat's last TP_SEARCH_MS.
TP_SEARCH_MS = 150.0
TP_WINDOW_MS = 40.0


def flattest_window(segment: np.ndarray, width: int) -> tuple[float, float]:
    """``(mean level, centre index)`` of the ``width``-sample window of least range."""
    width = max(1, min(width, len(segment)))
    windows = np.lib.stride_tricks.sliding_window_view(segment, width)
    k = int(np.argmin(windows.max(axis=1) - windows.min(axis=1)))
    return float(windows[k].mean()), k + (width - 1) / 2.0


def isoelectric_level(beat: np.ndarray, r_index: int, fs: float) -> tuple[float, float]:
    """``(level, sample)`` of the PR segment of ``beat`` (R-peak at ``r_index``)."""
    lo = max(0, r_index - round(PR_SEARCH_MS[0] * fs / 1000.0))
    hi = max(lo + 1, r_index - round(PR_SEARCH_MS[1] * fs / 1000.0))
    level, centre = flattest_window(beat[lo:hi], round(PR_WINDOW_MS * fs / 1000.0))
    return level, lo + centre


def reference_beat(beat: np.ndarray, r_index: int, fs: float, method: str) -> np.ndarray:
    """``beat`` minus its isoelectric baseline (``method`` in :data:`BASELINES`)."""
    if method not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {method!r}")
    beat = np.asarray(beat, dtype=np.float32).ravel()
    if method == "none" or len(beat) == 0:
        return beat
    if not 0 <= r_index < len(beat):
        raise ValueError(f"R index {r_index} lies outside a beat of {len(beat)} samples")
    level, at = isoelectric_level(beat, r_index, fs)
    start = len(beat) - round(TP_SEARCH_MS * fs / 1000.0)
    if method == "pr_segment" or start <= r_index:
        return beat - np.float32(level)
    tp_level, tp_centre = flattest_window(beat[start:], round(TP_WINDOW_MS * fs / 1000.0))
    slope = (tp_level - level) / (start + tp_centre - at)
    line = level + slope * (np.arange(len(beat)) - at)
    return (beat - line).astype(np.float32)


def reference_beats(
    beats: Sequence[np.ndarray], r_indices: Sequence[int], fs: float, method: str
) -> list[np.ndarray]:
    """:func:`reference_beat` of every beat (one R index each)."""
    if len(beats) != len(r_indices):
        raise ValueError(f"{len(beats)} beats but {len(r_indices)} R indices")
    return [reference_beat(b, int(r), fs, method) for b, r in zip(beats, r_indices, strict=True)]
