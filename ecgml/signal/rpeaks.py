"""R-peak detection: NeuroKit2's default detector on the NeuroKit2-cleaned signal."""

from __future__ import annotations

import warnings

import numpy as np

#: Shorter signals cannot hold a beat for the detector.
MIN_DURATION_S = 2.0


def detect_rpeaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices (sorted, unique, inside the signal).

    Returns an empty array when the signal is too short (< 2 s), not finite or flat.
    """
    import neurokit2 as nk  # deferred: a slow import (~2 s), needed only where peaks are

    signal = np.asarray(signal, dtype=np.float64).ravel()
    too_short = signal.size < int(MIN_DURATION_S * fs)
    if too_short or not np.all(np.isfinite(signal)) or np.ptp(signal) == 0:
        return np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns on short/odd input; we check output
        cleaned = nk.ecg_clean(signal, sampling_rate=fs, method="neurokit")
        _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit")
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    return np.unique(peaks[(peaks >= 0) & (peaks < signal.size)])
