"""Beats laid out exactly as a trained model saw them: one function for every scoring path.

Training lays beats out with :func:`~ecgml.signal.align_beats` (after the optional isoelectric
referencing); a logged model records that layout (``seq_len``, ``fs``, ``r_index``,
``baseline``). :func:`prepare_beats` repeats it on new beats — resampled to the model's rate
when needed — for ``ecgml.predict`` and for the served MLflow model alike.
:func:`prepare_strip` does the same for a whole-strip model's input (``unit: strip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ecgml.signal.align import align_beats, resample_beat
from ecgml.signal.baseline import reference_beats

#: Sampling rates closer than this count as the same (no resampling).
FS_TOLERANCE = 1e-6


class BeatLayout(Protocol):
    """What a model records of its input layout (a logged model's metadata)."""

    @property
    def seq_len(self) -> int: ...
    @property
    def fs(self) -> float: ...
    @property
    def r_index(self) -> int | None: ...
    @property
    def baseline(self) -> str: ...


def prepare_beats(
    beats: Sequence[np.ndarray], r_indices: Sequence[int], fs: float | None, layout: BeatLayout
) -> np.ndarray:
    """Beats ``(n, layout.seq_len)`` float32, laid out as the model saw them in training."""
    fs = float(fs or layout.fs)
    rows, rs = list(beats), [int(r) for r in r_indices]
    if not rows:
        return np.zeros((0, layout.seq_len), dtype=np.float32)
    if abs(fs - layout.fs) > FS_TOLERANCE:
        rows = [resample_beat(b, fs, layout.fs) for b in rows]
        rs = [round(r * layout.fs / fs) for r in rs]
    rows = reference_beats(rows, rs, layout.fs, layout.baseline)
    if layout.r_index is None:
        x, _ = align_beats(rows, rs, layout.seq_len, align="start")
    else:
        x, _ = align_beats(rows, rs, layout.seq_len, align="r_peak", r_column=layout.r_index)
    return x


def prepare_strip(signal: np.ndarray, fs: float, strip_fs: float, width: int) -> np.ndarray:
    """One lead of a recording as a whole-strip model reads it: resampled to ``strip_fs``, its
    first ``width`` samples minus the signal's median (the recorder's offset), zero-padded at
    the end; float32 ``(width,)``. Training (record stores) and serving share it."""
    signal = np.asarray(signal, dtype=np.float64)
    if abs(float(fs) - float(strip_fs)) > FS_TOLERANCE:
        signal = resample_beat(signal, float(fs), float(strip_fs))
    out = np.zeros(int(width), dtype=np.float32)
    if signal.size:
        kept = signal[: int(width)] - np.median(signal)
        out[: kept.size] = kept
    return out


def prepare_strips(
    signals: Sequence[np.ndarray], fs: Sequence[float] | float, layout: BeatLayout
) -> np.ndarray:
    """Recordings ``(n, layout.seq_len)`` float32 for a whole-strip model (its ``fs`` is the
    strip's rate, start-aligned): :func:`prepare_strip` of each, at its own rate ``fs``."""
    rates = [float(fs)] * len(signals) if isinstance(fs, int | float) else [float(f) for f in fs]
    rows = [
        prepare_strip(s, f, layout.fs, layout.seq_len) for s, f in zip(signals, rates, strict=True)
    ]
    return np.stack(rows) if rows else np.zeros((0, layout.seq_len), dtype=np.float32)
