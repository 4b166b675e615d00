"""Signal → beats: R-peak detection, one window per R-peak, quality filter, padding, export.

``extract_windows`` is the shared slicing primitive (the synthetic cohort uses it with the
generator's known R-peaks). ``detect_rpeaks`` finds R-peaks with NeuroKit2; ``extract_beats``
cuts the windows and rejects interference beats (each with its reason); ``pad_beats`` brings
beats of any length to one length (the study's zero-padding); ``export_beat_store`` writes
the beats as a beat store (``manifest.csv`` + one CSV per beat).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ecgml.beatstore import write_beat_store

DEFAULT_PRE_R_MS = 250.0
DEFAULT_POST_R_MS = 650.0
#: Beats whose correlation with the recording's median beat falls below this are interference.
DEFAULT_MIN_CORRELATION = 0.8
#: Beats whose peak-to-peak amplitude is more than this factor above/below the median's.
DEFAULT_MAX_AMPLITUDE_RATIO = 2.0
#: Quality rejection needs a median beat; with fewer beats every in-bounds beat is kept.
MIN_BEATS_FOR_REJECTION = 3

REASON_EDGE = "window runs past the signal's edge"


def window_samples(fs: float, pre_r_ms: float, post_r_ms: float) -> tuple[int, int]:
    """Samples before and after the R-peak for a window of the given milliseconds."""
    return round(pre_r_ms * fs / 1000.0), round(post_r_ms * fs / 1000.0)


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


# --------------------------------------------------------------------------- R-peaks


def detect_rpeaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices: NeuroKit2's default detector on the NeuroKit2-cleaned signal.

    Returns an empty array when the signal is too short (< 2 s) or flat to hold a beat.
    """
    import neurokit2 as nk  # slow import (~2 s): only where peaks are needed

    signal = np.asarray(signal, dtype=np.float64).ravel()
    if signal.size < int(2 * fs) or not np.all(np.isfinite(signal)) or np.ptp(signal) == 0:
        return np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns on short/odd input; we check output
        cleaned = nk.ecg_clean(signal, sampling_rate=fs, method="neurokit")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit")
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    return np.unique(peaks[(peaks >= 0) & (peaks < signal.size)])


# --------------------------------------------------------------------------- beats


@dataclass
class BeatSet:
    """The beats of one recording.

    ``beats`` has shape ``(n, pre + post)`` with the R-peak at column ``r_offset``;
    ``r_indices`` are the kept R-peaks in the source signal and ``beat_index`` their position
    among all detected R-peaks (rejected ones leave gaps); ``rejected`` lists every dropped
    R-peak with its reason.
    """

    beats: np.ndarray
    r_indices: np.ndarray
    beat_index: np.ndarray
    fs: float
    pre_r_ms: float
    post_r_ms: float
    median_beat: np.ndarray
    rejected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["beat_index", "r_index", "reason"])
    )

    @property
    def r_offset(self) -> int:
        """Column of the R-peak inside each beat."""
        return window_samples(self.fs, self.pre_r_ms, self.post_r_ms)[0]

    def __len__(self) -> int:
        return len(self.beats)


def extract_beats(
    signal: np.ndarray,
    fs: float,
    r_indices: np.ndarray | None = None,
    pre_r_ms: float = DEFAULT_PRE_R_MS,
    post_r_ms: float = DEFAULT_POST_R_MS,
    min_correlation: float | None = DEFAULT_MIN_CORRELATION,
    max_amplitude_ratio: float | None = DEFAULT_MAX_AMPLITUDE_RATIO,
) -> BeatSet:
    """Cut one window per R-peak and drop interference beats, recording why.

    R-peaks default to :func:`detect_rpeaks`. A beat is rejected when its window runs past the
    signal, when its Pearson correlation with the recording's median beat is below
    ``min_correlation``, or when its peak-to-peak amplitude differs from the median beat's by
    more than ``max_amplitude_ratio`` either way (``None`` switches a test off).
    """
    signal = np.asarray(signal, dtype=np.float32).ravel()
    if r_indices is None:
        r_indices = detect_rpeaks(signal, fs)
    r_all = np.asarray(r_indices, dtype=np.int64).ravel()
    index_all = np.arange(r_all.size)
    windows, kept_r = extract_windows(signal, r_all, fs, pre_r_ms, post_r_ms)
    in_bounds = np.isin(r_all, kept_r)
    reasons: list[tuple[int, int, str]] = [
        (int(i), int(r), REASON_EDGE)
        for i, r in zip(index_all[~in_bounds], r_all[~in_bounds], strict=True)
    ]
    beat_index = index_all[in_bounds]
    median = np.median(windows, axis=0) if len(windows) else np.zeros(windows.shape[1])
    keep = np.ones(len(windows), dtype=bool)
    if len(windows) >= MIN_BEATS_FOR_REJECTION:
        for k, reason in enumerate(
            _quality_reasons(windows, median, min_correlation, max_amplitude_ratio)
        ):
            if reason:
                keep[k] = False
                reasons.append((int(beat_index[k]), int(kept_r[k]), reason))
    rejected = pd.DataFrame(reasons, columns=["beat_index", "r_index", "reason"])
    return BeatSet(
        beats=windows[keep],
        r_indices=kept_r[keep],
        beat_index=beat_index[keep],
        fs=float(fs),
        pre_r_ms=float(pre_r_ms),
        post_r_ms=float(post_r_ms),
        median_beat=median.astype(np.float32),
        rejected=rejected.sort_values("beat_index").reset_index(drop=True),
    )


def _quality_reasons(
    windows: np.ndarray,
    median: np.ndarray,
    min_correlation: float | None,
    max_amplitude_ratio: float | None,
) -> list[str]:
    """One reason per beat ('' when the beat is fine)."""
    correlation = _correlation_with(windows, median)
    median_ptp = float(np.ptp(median))
    ptp = np.ptp(windows, axis=1)
    reasons = []
    for corr, amplitude in zip(correlation, ptp, strict=True):
        if min_correlation is not None and corr < min_correlation:
            reasons.append(
                f"low correlation with the median beat (r={corr:.2f} < {min_correlation:g})"
            )
        elif (
            max_amplitude_ratio is not None
            and median_ptp > 0
            and not 1 / max_amplitude_ratio <= amplitude / median_ptp <= max_amplitude_ratio
        ):
            reasons.append(
                f"amplitude outlier (peak-to-peak {amplitude:.2f} mV vs median {median_ptp:.2f} mV)"
            )
        else:
            reasons.append("")
    return reasons


def _correlation_with(windows: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row with ``template`` (0 for flat rows)."""
    centered = windows - windows.mean(axis=1, keepdims=True)
    tmpl = template - template.mean()
    denom = np.linalg.norm(centered, axis=1) * np.linalg.norm(tmpl)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centered @ tmpl) / denom
    return np.nan_to_num(corr, nan=0.0)


# --------------------------------------------------------------------------- padding

Align = Literal["r_peak", "start"]
Mode = Literal["pad", "crop"]


def aligned_r_position(
    lengths: Sequence[int],
    r_indices: Sequence[int] | int | None,
    length: int | None = None,
    align: Align = "r_peak",
    mode: Mode = "pad",
) -> tuple[int, int]:
    """``(output_length, r_column)`` that :func:`pad_beats` uses for these beats.

    ``r_column`` is where every R-peak lands (``-1`` when aligning on the start without
    R indices). See :func:`pad_beats` for the rules.
    """
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if lengths_arr.size == 0:
        raise ValueError("no beats to pad")
    if align not in ("r_peak", "start"):
        raise ValueError(f"align must be 'r_peak' or 'start', got {align!r}")
    if mode not in ("pad", "crop"):
        raise ValueError(f"mode must be 'pad' or 'crop', got {mode!r}")
    if length is not None and length < 1:
        raise ValueError(f"length must be a positive number of samples, got {length}")
    r = _broadcast_r(r_indices, lengths_arr)
    if align == "start" or r is None:
        out_len = length or int(lengths_arr.max() if mode == "pad" else lengths_arr.min())
        return out_len, -1 if r is None else int(r[0]) if np.all(r == r[0]) else -1
    pre, post = r, lengths_arr - r
    if mode == "pad":
        r_col, natural = int(pre.max()), int(pre.max() + post.max())
    else:
        r_col, natural = int(pre.min()), int(pre.min() + post.min())
    out_len = length or natural
    return out_len, min(r_col, out_len - 1)


def pad_beats(
    beats: Sequence[np.ndarray] | np.ndarray,
    length: int | None = None,
    r_indices: Sequence[int] | int | None = None,
    align: Align = "r_peak",
    mode: Mode = "pad",
) -> np.ndarray:
    """Bring beats of any length to one length with zeros (the study's convention).

    - ``align="r_peak"`` with ``r_indices`` (one per beat, or one for all): every R-peak lands
      in the same column; ``align="start"`` (or no R indices): beats start at column 0.
    - ``length=None``: ``mode="pad"`` makes room for the longest stretch before and after R
      (nothing is lost); ``mode="crop"`` keeps only what every beat has (no zeros inside).
    - an explicit ``length``: beats are zero-padded or cropped to it; with R alignment the
      R column is kept from the ``length=None`` rule (capped to the length), so cropping
      takes samples off the end.

    Returns a float32 array ``(n_beats, length)``; use :func:`aligned_r_position` for the
    R column.
    """
    rows = [np.asarray(b, dtype=np.float32).ravel() for b in beats]
    lengths = [len(b) for b in rows]
    out_len, r_col = aligned_r_position(lengths, r_indices, length, align, mode)
    r = _broadcast_r(r_indices, np.asarray(lengths))
    out = np.zeros((len(rows), out_len), dtype=np.float32)
    for k, row in enumerate(rows):
        shift = 0 if align == "start" or r is None else r_col - int(r[k])
        src_start = max(0, -shift)
        dst_start = max(0, shift)
        n = min(len(row) - src_start, out_len - dst_start)
        if n > 0:
            out[k, dst_start : dst_start + n] = row[src_start : src_start + n]
    return out


def _broadcast_r(r_indices: Sequence[int] | int | None, lengths: np.ndarray) -> np.ndarray | None:
    if r_indices is None:
        return None
    r = np.broadcast_to(np.asarray(r_indices, dtype=np.int64), lengths.shape).copy()
    if np.any(r < 0) or np.any(r >= lengths):
        raise ValueError("every R index must lie inside its beat")
    return r


# --------------------------------------------------------------------------- export


def beat_rows(beat_set: BeatSet, labels: Mapping[str, Any]) -> pd.DataFrame:
    """Manifest rows for one recording's beats.

    ``labels`` holds ``patient_id`` and ``group`` (default ``unknown``) and optionally
    ``record_id`` (default: the patient id) and provenance (``center``, ``device``,
    ``source_image``). Beat ids are ``<record_id>_<beat_index>``.
    """
    if "patient_id" not in labels:
        raise ValueError("labels need a patient_id")
    record_id = str(labels.get("record_id", labels["patient_id"]))
    n = len(beat_set)
    rows = pd.DataFrame(
        {
            "patient_id": [str(labels["patient_id"])] * n,
            "group": [str(labels.get("group", "unknown"))] * n,
            "beat_id": [f"{record_id}_{int(i):03d}" for i in beat_set.beat_index],
            "record_id": [record_id] * n,
            "beat_index": beat_set.beat_index.astype(int),
            "r_index": [beat_set.r_offset] * n,
        }
    )
    for key in ("center", "device", "source_image"):
        if key in labels and labels[key] is not None:
            rows[key] = str(labels[key])
    return rows


def export_beat_store(
    root: Path | str, recordings: Sequence[tuple[BeatSet, Mapping[str, Any]]]
) -> Path:
    """Write the beats of several recordings as one beat store (``manifest.csv`` last)."""
    recordings = [(bs, labels) for bs, labels in recordings if len(bs)]
    if not recordings:
        raise ValueError("no beats to export")
    first = recordings[0][0]
    for bs, _ in recordings:
        if (bs.fs, bs.pre_r_ms, bs.post_r_ms) != (first.fs, first.pre_r_ms, first.post_r_ms):
            raise ValueError("all recordings must share fs and the beat window to share a store")
    beats = [beat for bs, _ in recordings for beat in bs.beats]
    rows = pd.concat([beat_rows(bs, labels) for bs, labels in recordings], ignore_index=True)
    return write_beat_store(
        root, beats, rows, fs=first.fs, pre_r_ms=first.pre_r_ms, post_r_ms=first.post_r_ms
    )
