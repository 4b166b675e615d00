"""Calibration: pixels per mm from the grid's pitch, or from the 1 mV × 200 ms pulse.

Standard paper runs at 25 mm/s and 10 mm/mV with 1 mm minor and 5 mm major lines, so the
grid's pitch in x and y gives seconds and millivolts at any DPI.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from ecgml.digitize.image import grid_channel

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
MINOR_PER_MAJOR = 5
#: Plausible scan resolutions: 40–1200 DPI, i.e. 1.6–47 px per mm.
MIN_PX_PER_MM, MAX_PX_PER_MM = 40 / 25.4, 1200 / 25.4
#: Share of the major pitch's harmonic positions (up to HARMONIC_MAX_FREQ) holding a peak.
MIN_HARMONIC_SHARE = 0.7
#: Combs this much less complete than the best one are sub-harmonics, not the grid.
SHARE_SLACK = 0.1
#: The strongest peak is at most this harmonic of the major pitch (the minor lines are the 5th).
MAX_SUBHARMONIC = 12
#: Harmonics above this (cycles/px) are left out: pixel rounding of line positions aliases there.
HARMONIC_MAX_FREQ = 0.3
MIN_PEAK_TO_LOCAL = 8.0
#: Largest x/y pixel-pitch mismatch accepted on a rectified photo.
MAX_ASPECT_ERROR = 0.1


@dataclass(frozen=True)
class Calibration:
    """Pixels per mm along x (time) and y (amplitude), and where they came from."""

    px_per_mm_x: float
    px_per_mm_y: float
    source: str  # "grid", "pulse" or "dpi"

    @property
    def px_per_s(self) -> float:
        return self.px_per_mm_x * PAPER_SPEED_MM_S

    @property
    def px_per_mv(self) -> float:
        return self.px_per_mm_y * GAIN_MM_MV


def grid_pitch(profile: np.ndarray, hint: float | None = None) -> tuple[float, float]:
    """Major-line period (px) of a 1-D grid profile and the share of its harmonics present.

    The grid repeats at the major pitch, so its spectrum has a clear peak at (nearly) every
    harmonic of the major frequency f0 (thin minor lines make the 5th, 10th, … strongest).
    Starting from the strongest peak f_d, the candidates are f_d / k; the lowest one whose
    harmonic positions are still (nearly) all peaks is f0 (a sub-harmonic leaves every second
    position empty). With ``hint`` (a period from the other axis: paper is square) only that
    period is tried, with a wider tolerance. A least-squares fit over the harmonics makes f0
    precise. Returns ``(nan, 0)`` when the profile shows no such comb.
    """
    x = np.asarray(profile, dtype=np.float64)
    n = x.size
    if n < 64:
        return float("nan"), 0.0
    window = max(3, int(MAX_PX_PER_MM * MINOR_PER_MAJOR * 1.5))
    x = x - uniform_filter1d(x, size=min(window, n), mode="nearest")  # remove lighting trends
    x = x * np.hanning(n)
    n_fft = 1 << int(np.ceil(np.log2(n * 8)))
    power = np.abs(np.fft.rfft(x, n_fft)) ** 2
    f_low = 1.0 / (MAX_PX_PER_MM * MINOR_PER_MAJOR)
    band = slice(int(np.ceil(f_low * n_fft)), int(0.5 * n_fft))
    if power[band].max() <= 0:
        return float("nan"), 0.0
    dominant = band.start + int(np.argmax(power[band]))
    threshold = 0.005 * power[dominant]
    if hint is not None:
        candidates = [1.0 / hint]
    else:
        f_dominant = _interpolated_peak(power, dominant) / n_fft
        candidates = [f_dominant / k for k in range(1, MAX_SUBHARMONIC + 1)]
    combs: list[tuple[float, float]] = []  # (refined f0, share) per candidate
    for f0 in candidates:
        if f0 < f_low:
            break
        harmonics = np.arange(1, int(HARMONIC_MAX_FREQ / f0) + 1)
        if harmonics.size < 3:
            continue
        found = []
        for h in harmonics:
            slack = 0.02 * h * f0 * n_fft if hint is not None else 0.0
            tolerance = max(1.5 * n_fft / n, slack)
            found.append(_peak_near(power, h * f0 * n_fft, tolerance, threshold, f0 * n_fft))
        present = np.array([pos is not None for pos in found])
        # Blur and JPEG wipe out high harmonics: judge the comb up to its last visible one.
        last = int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0
        share = float(present[:last].mean()) if last >= 3 else 0.0
        if share >= MIN_HARMONIC_SHARE and present[:last].sum() >= 3:
            h = harmonics[present]
            f = np.array([pos for pos in found if pos is not None]) / n_fft
            combs.append((float(np.dot(f, h) / np.dot(h, h)), share))
    if not combs:
        return float("nan"), 0.0
    best_share = max(share for _, share in combs)
    # A complete highest comb is the minor pitch when a comb at a fifth of it exists.
    f_top, top_share = max(combs)
    if top_share >= best_share - SHARE_SLACK:
        for f_major, share in combs:
            if abs(f_top / f_major / MINOR_PER_MAJOR - 1) < 0.02:
                return 1.0 / f_major, share
    # Else the lowest frequency whose comb is (about) as complete as the best one: a
    # sub-harmonic leaves gaps.
    f0, share = min((c for c in combs if c[1] >= best_share - SHARE_SLACK), key=lambda c: c[0])
    return 1.0 / f0, share


def _peak_near(
    power: np.ndarray, position: float, tolerance: float, threshold: float, spacing: float
) -> float | None:
    """Sub-bin position of the peak within ``tolerance`` bins of ``position``, if it is a real
    peak: above ``threshold`` and well above the spectrum between neighbouring harmonics."""
    lo, hi = int(position - tolerance), int(position + tolerance) + 1
    if hi >= power.size - 1 or lo < 1:
        return None
    k = lo + int(np.argmax(power[lo:hi]))
    if power[k] < threshold or k in (lo, hi - 1):
        return None
    half = max(2, int(0.45 * spacing))
    local = np.median(power[max(0, k - half) : k + half + 1])
    if power[k] < MIN_PEAK_TO_LOCAL * local:
        return None
    return _interpolated_peak(power, k)


def _interpolated_peak(power: np.ndarray, k: int) -> float:
    """Sub-bin position of a spectral peak (parabola through the log-power at k-1, k, k+1)."""
    if k <= 0 or k >= power.size - 1:
        return float(k)
    a, b, c = np.log(power[k - 1 : k + 2] + 1e-300)
    denom = a - 2 * b + c
    return float(k + 0.5 * (a - c) / denom) if denom != 0 else float(k)


def detect_grid(
    image: np.ndarray, square: bool = True, hsv: np.ndarray | None = None
) -> Calibration | None:
    """Pixels per mm from the grid lines (None when no periodic grid is found).

    The time axis (long, many periods) is measured first; the amplitude axis is then measured
    near the same pitch (paper grids are square) and must confirm it. ``square=False`` (a
    rectified photo, whose pixels need not be square) lets y differ by up to 10 %.
    """
    channel = grid_channel(image, hsv)
    period_x, _ = grid_pitch(cv2.reduce(channel, 0, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel())
    if not np.isfinite(period_x):
        return None
    rows = cv2.reduce(channel, 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel()
    period_y, _ = grid_pitch(rows, hint=period_x)
    if not np.isfinite(period_y) and not square:
        # A rectified photo's aspect is only known to a few percent: search y on its own.
        period_y, _ = grid_pitch(rows)
        if abs(period_y / period_x - 1) > MAX_ASPECT_ERROR:
            period_y = float("nan")
    if not np.isfinite(period_y):
        return None  # a rhythm along x alone (e.g. the heartbeat) is no grid
    return Calibration(period_x / MINOR_PER_MAJOR, period_y / MINOR_PER_MAJOR, "grid")


def calibration_from_dpi(dpi: float) -> Calibration:
    """Pixels per mm for a scan at a known resolution."""
    return Calibration(dpi / 25.4, dpi / 25.4, "dpi")
