"""Beats laid out as a model saw them in training: resampled to its ``fs`` when needed, measured
against their isoelectric level as in training (``baseline``, :func:`ecgml.signal.reference_beats`),
then R-aligned and zero-padded/cropped to its ``seq_len`` by :func:`ecgml.signal.align_beats`, the
function training uses too, with the model's own R column (``r_index``; ``None``: start-aligned).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ecgml.signal import align_beats, reference_beats, resample_beat

if TYPE_CHECKING:  # annotations only: model_io pulls MLflow and torch
    from ecgml.tracking.registry import LoadedModel

#: Sampling rates closer than this count as the same (no resampling).
FS_TOLERANCE = 1e-6


def prepare_beats(
    beats: Sequence[np.ndarray], r_indices: Sequence[int], fs: float | None, model: LoadedModel
) -> np.ndarray:
    """Beats ``(n, model.seq_len)`` laid out as the model saw them in training."""
    fs = float(fs or model.fs)
    rows, rs = list(beats), [int(r) for r in r_indices]
    if not rows:
        return np.zeros((0, model.seq_len), dtype=np.float32)
    if abs(fs - model.fs) > FS_TOLERANCE:
        rows = [resample_beat(b, fs, model.fs) for b in rows]
        rs = [round(r * model.fs / fs) for r in rs]
    rows = reference_beats(rows, rs, model.fs, model.baseline)
    align = "start" if model.r_index is None else "r_peak"
    x, _ = align_beats(rows, rs, model.seq_len, align=align, r_column=model.r_index)
    return x
