"""How well a digitized signal matches the truth (benchmarks and tests).

SNR as in the 2024 PhysioNet Challenge, ``10·log10(Σx² / Σ(x̂−x)²)``, aligned as docs/contracts.md
says: each signal's median removed, then the best time lag within ±0.3 s (the image carries no
absolute time or baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_LAG_S = 0.3


@dataclass(frozen=True)
class Agreement:
    snr_db: float
    pearson_r: float
    lag_samples: int  # estimate[k] ↔ truth[k + lag]


def compare_signals(
    truth: np.ndarray, estimate: np.ndarray, fs: float, max_lag_s: float = MAX_LAG_S
) -> Agreement:
    """SNR (dB) and Pearson r of ``estimate`` against ``truth`` at the best lag."""
    x = np.asarray(truth, dtype=np.float64) - np.median(truth)
    y = np.asarray(estimate, dtype=np.float64) - np.median(estimate)
    best = Agreement(-np.inf, 0.0, 0)
    max_lag = round(max_lag_s * fs)
    for lag in range(-max_lag, max_lag + 1):
        a, b = _overlap(x, y, lag)
        if a.size < fs:  # less than a second in common
            continue
        noise = float(np.sum((b - a) ** 2))
        snr = np.inf if noise == 0 else 10 * np.log10(float(np.sum(a**2)) / noise)
        if snr > best.snr_db:
            best = Agreement(float(snr), float(np.corrcoef(a, b)[0, 1]), lag)
    return best


def _overlap(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth and estimate samples paired with ``y[k] ↔ x[k + lag]``."""
    a = x[max(0, lag) :]
    b = y[max(0, -lag) :]
    n = min(a.size, b.size)
    return a[:n], b[:n]


def match_peaks(
    reference: np.ndarray, detected: np.ndarray, tolerance: int
) -> tuple[int, int, int, np.ndarray]:
    """Greedy one-to-one matching in time order: ``(tp, fp, fn, |errors| of matches)``."""
    reference, detected = np.sort(reference), np.sort(detected)
    used = np.zeros(detected.size, dtype=bool)
    errors = []
    for ref in reference:
        lo, hi = np.searchsorted(detected, [ref - tolerance, ref + tolerance + 1])
        candidates = [k for k in range(lo, hi) if not used[k]]
        if candidates:
            best = min(candidates, key=lambda k: abs(int(detected[k]) - int(ref)))
            used[best] = True
            errors.append(abs(int(detected[best]) - int(ref)))
    tp = len(errors)
    return tp, int(detected.size - tp), int(reference.size - tp), np.asarray(errors)


def peak_f1(
    reference: np.ndarray, detected: np.ndarray, fs: float, window_ms: float = 150.0
) -> float:
    """F1 of R-peak detection at ±``window_ms`` (ANSI/AAMI EC57 matching)."""
    tp, fp, fn, _ = match_peaks(reference, detected, round(window_ms * fs / 1000))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
