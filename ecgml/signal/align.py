"""One length for every beat: R-peak alignment with zero-padding (the study's convention) or
cropping.

:func:`align_beats` is the single layout used by training (``ecgml.data``) and serving
(``ecgml.inference``): training lets :func:`beat_layout` choose the width and R column from its
beats; serving passes the width and R column the model was trained with (its metadata), so both
place every sample through the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

import numpy as np

Align = Literal["r_peak", "start"]
Mode = Literal["pad", "crop"]


def beat_layout(
    lengths: Sequence[int],
    r_indices: Sequence[int] | int | None = None,
    length: int | None = None,
    mode: Mode = "pad",
) -> tuple[int, int | None]:
    """``(width, r_column)`` for beats of these lengths (``r_column`` None: start-aligned).

    - ``length=None``: ``mode="pad"`` makes room for the longest stretch before and after R
      (nothing is lost); ``mode="crop"`` keeps only what every beat has (no zeros inside).
    - an explicit ``length``: the R column keeps its relative position in the natural width
      (``round(length * pre / (pre + post))``), so cropping takes samples off both sides.
    """
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if lengths_arr.size == 0:
        raise ValueError("no beats to align")
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
    if length is not None and length < 1:
        raise ValueError(f"length must be a positive number of samples, got {length}")
    pick = np.max if mode == "pad" else np.min
    r = _broadcast_r(r_indices, lengths_arr)
    if r is None:
        return int(length or pick(lengths_arr)), None
    pre, post = int(pick(r)), int(pick(lengths_arr - r))
    width = int(length or pre + post)
    return width, (round(width * pre / (pre + post)) if length else pre)


def align_beats(
    beats: Sequence[np.ndarray] | np.ndarray,
    r_indices: Sequence[int] | int | None = None,
    length: int | None = None,
    *,
    align: Align = "r_peak",
    mode: Mode = "pad",
    r_column: int | None = None,
) -> tuple[np.ndarray, int | None]:
    """Stack ragged beats into float32 ``(n, width)`` with zeros where a beat has no samples.

    With ``align="r_peak"`` and ``r_indices`` (one per beat, or one for all) every R-peak lands
    on the returned R column; with ``align="start"`` (or no R indices) beats start at column 0
    and the R column is ``None``. Width and R column come from :func:`beat_layout`, unless
    ``r_column`` is given (serving: the model's own), which needs ``length`` too.
    """
    if align not in ("r_peak", "start"):
        raise ValueError(f"align must be 'r_peak' or 'start', got {align!r}")
    rows = [np.asarray(b, dtype=np.float32).ravel() for b in beats]
    r = None if align == "start" else r_indices
    r_col: int | None
    if r is not None and r_column is not None:
        if length is None:
            raise ValueError("an explicit r_column needs an explicit length")
        width, r_col = int(length), int(r_column)
        starts = r_col - np.broadcast_to(np.asarray(r, dtype=np.int64), (len(rows),))
    else:
        width, r_col = beat_layout([len(b) for b in rows], r, length, mode)
        starts = np.zeros(len(rows), np.int64) if r_col is None else r_col - np.asarray(r)
        starts = np.broadcast_to(starts, (len(rows),))
    return _place(rows, starts, width), r_col


def _place(rows: Sequence[np.ndarray], starts: np.ndarray, width: int) -> np.ndarray:
    """Row ``k`` copied into ``(n, width)`` zeros from column ``starts[k]`` (cut at the edges)."""
    out = np.zeros((len(rows), width), dtype=np.float32)
    for k, (row, start) in enumerate(zip(rows, starts, strict=True)):
        start = int(start)
        lo, hi = max(start, 0), min(start + len(row), width)
        if hi > lo:
            out[k, lo:hi] = row[lo - start : hi - start]
    return out


def _broadcast_r(r_indices: Sequence[int] | int | None, lengths: np.ndarray) -> np.ndarray | None:
    if r_indices is None:
        return None
    r = np.broadcast_to(np.asarray(r_indices, dtype=np.int64), lengths.shape).copy()
    if np.any(r < 0) or np.any(r >= lengths):
        raise ValueError("every R index must lie inside its beat")
    return r


def resample_beat(beat: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """``beat`` from ``fs_in`` to ``fs_out`` (polyphase, ratio limited to a denominator 1000)."""
    from scipy.signal import resample_poly  # deferred: scipy.signal is slow to import

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(beat, ratio.numerator, ratio.denominator).astype(np.float32)
