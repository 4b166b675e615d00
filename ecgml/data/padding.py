"""One length for every beat: zero-padding (the study's convention) or cropping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_to_length(
    beats: Sequence[np.ndarray],
    r_indices: Sequence[int | None] | None = None,
    length: int | None = None,
) -> tuple[np.ndarray, int | None]:
    """Stack ragged beats into ``(n, length)`` with zeros where a beat has no samples.

    With ``r_indices`` (one per beat), beats are aligned so every R-peak lands on the same
    sample, which is returned (else ``None`` and beats start at sample 0). ``length=None`` keeps
    every sample of every beat; a shorter ``length`` crops, keeping the R-peak at the same
    relative position.
    """
    if len(beats) == 0:
        return np.zeros((0, length or 0), dtype=np.float32), None
    lengths = np.array([len(b) for b in beats])
    if r_indices is None:
        width = int(length or lengths.max())
        out = np.zeros((len(beats), width), dtype=np.float32)
        for row, beat in enumerate(beats):
            n = min(len(beat), width)
            out[row, :n] = beat[:n]
        return out, None
    r = np.asarray(r_indices, dtype=np.int64)
    pre, post = int(r.max()), int((lengths - r).max())
    width = int(length or pre + post)
    r_target = round(width * pre / (pre + post)) if length else pre
    out = np.zeros((len(beats), width), dtype=np.float32)
    for row, (beat, r_beat) in enumerate(zip(beats, r, strict=True)):
        start = r_target - int(r_beat)
        lo, hi = max(start, 0), min(start + len(beat), width)
        if hi > lo:
            out[row, lo:hi] = beat[lo - start : hi - start]
    return out, r_target
