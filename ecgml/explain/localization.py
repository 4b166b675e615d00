"""Per-beat temporal localization of an attribution: padding removal, peak, main segment, regions.

The study's pipeline: zero-padding removal → normalization → saliency map → critical segment.
Here a beat's *valid span* is the stretch between its first and last non-zero sample (the
padding is exact zeros); outside it the profile is NaN and never counted. The profile is the
absolute attribution, smoothed over ``smooth_ms``. Peak saliency is normalized by the largest
beat peak of the analysed set, so it lies in [0, 1] and compares classes on one scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import uniform_filter1d

from ecgml.explain.regions import REGIONS, region_at, region_masses


def valid_spans(beats: np.ndarray) -> np.ndarray:
    """``(n, 2)`` [start, stop) of each beat's non-padding samples ([0, 0) for an all-zero beat)."""
    nonzero = beats != 0
    any_nonzero = nonzero.any(axis=1)
    start = np.where(any_nonzero, nonzero.argmax(axis=1), 0)
    stop = np.where(any_nonzero, beats.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return np.stack([start, stop], axis=1)


def valid_mask(spans: np.ndarray, length: int) -> np.ndarray:
    positions = np.arange(length)
    return (positions >= spans[:, :1]) & (positions < spans[:, 1:])


def detect_r(beats: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """R sample per beat: the largest deviation from the beat's median inside its valid span."""
    out = np.zeros(len(beats), dtype=np.int64)
    for k, (start, stop) in enumerate(spans):
        if stop > start:
            segment = beats[k, start:stop]
            out[k] = start + int(np.argmax(np.abs(segment - np.median(segment))))
    return out


def r_positions(
    beats: np.ndarray,
    spans: np.ndarray,
    r_index: int | None,
    store_r: Sequence[float] | None = None,
) -> tuple[np.ndarray, str]:
    """R sample of each padded beat and how it was found (common / store / detected)."""
    if r_index is not None:
        return np.full(len(beats), int(r_index), dtype=np.int64), "common r_index"
    detected = detect_r(beats, spans)
    if store_r is not None:
        store = np.asarray(store_r, dtype=float)
        ok = np.isfinite(store)
        if ok.all():
            return store.astype(np.int64), "store r_index"
        return np.where(ok, np.nan_to_num(store), detected).astype(np.int64), "store/detected"
    return detected, "detected (argmax |x − median|)"


def saliency_profiles(attributions: np.ndarray, spans: np.ndarray, smooth: int) -> np.ndarray:
    """|attribution| smoothed inside each valid span, NaN outside (padding removed)."""
    out = np.full(attributions.shape, np.nan)
    for k, (start, stop) in enumerate(spans):
        if stop > start:
            part = np.abs(attributions[k, start:stop]).astype(float)
            out[k, start:stop] = uniform_filter1d(part, size=max(1, smooth), mode="nearest")
    return out


def main_segment(profile: np.ndarray, threshold: float) -> tuple[int, int, float]:
    """[start, stop) of the contiguous run above ``threshold × peak`` with the most mass."""
    finite = np.nan_to_num(profile, nan=0.0)
    total = finite.sum()
    peak = finite.max(initial=0.0)
    if peak <= 0:
        return 0, 0, 0.0
    above = np.concatenate([[False], finite >= threshold * peak, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    runs = edges.reshape(-1, 2)
    masses = np.array([finite[a:b].sum() for a, b in runs])
    best = int(np.argmax(masses))
    return int(runs[best, 0]), int(runs[best, 1]), float(masses[best] / total)


def localize_beats(
    profiles: np.ndarray,
    r: np.ndarray,
    fs: float,
    bounds: Sequence[Mapping[str, Any]],
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per beat: peak (ms from R, normalized value), main segment, region masses."""
    to_ms = 1000.0 / fs
    peaks = np.nanmax(np.nan_to_num(profiles, nan=0.0), axis=1)
    scale = peaks.max() if len(peaks) and peaks.max() > 0 else 1.0
    rows = []
    for k, profile in enumerate(profiles):
        finite = np.nan_to_num(profile, nan=0.0)
        peak_at = int(np.argmax(finite))
        start, stop, seg_mass = main_segment(profile, threshold)
        masses = region_masses(profile, int(r[k]), fs, bounds[k])
        primary = max(REGIONS, key=lambda name: masses[name])
        peak_ms = (peak_at - r[k]) * to_ms
        rows.append(
            {
                "r_sample": int(r[k]),
                "peak_ms": peak_ms if peaks[k] > 0 else np.nan,
                "peak_saliency": peaks[k] / scale,
                "segment_start_ms": (start - r[k]) * to_ms if stop > start else np.nan,
                "segment_end_ms": (stop - r[k]) * to_ms if stop > start else np.nan,
                "segment_mass": seg_mass,
                **{f"mass_{name}": masses[name] for name in (*REGIONS, "other")},
                "primary_region": primary if peaks[k] > 0 else "none",
                "peak_region": region_at(peak_ms, bounds[k]) if peaks[k] > 0 else "none",
                "regions_source": bounds[k].get("regions_source", "fixed"),
            }
        )
    return pd.DataFrame(rows)


def mean_profile(profiles: np.ndarray) -> np.ndarray:
    """Mean of the mass-normalized profiles (each beat sums to 1), NaN where no beat is valid."""
    totals = np.nansum(profiles, axis=1, keepdims=True)
    normalized = np.where(totals > 0, profiles / np.where(totals > 0, totals, 1.0), np.nan)
    valid = np.isfinite(normalized)
    counts = valid.sum(axis=0)
    sums = np.nansum(normalized, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
