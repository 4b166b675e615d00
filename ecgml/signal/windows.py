"""Beat windows: one fixed window per R-peak, and the quality filter that drops interference.

``extract_windows`` is the slicing primitive (the synthetic cohort uses it with the generator's
known R-peaks); ``extract_beats`` cuts the windows around detected (or given) R-peaks and rejects
interference beats, each with its reason, into a :class:`BeatSet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ecgml.signal.rpeaks import detect_rpeaks

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
