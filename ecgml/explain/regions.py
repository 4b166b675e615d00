"""ECG regions (P, PR, QRS, ST, T, U) of a beat, in ms relative to its R-peak.

Boundaries come from NeuroKit2's wavelet delineation (:func:`ecgml.signal.delineate_record`) of
a median beat (per true class or per patient): the median beat is tiled a few times so the
delineator has context, and the fiducials of the inner copies are averaged. Any fiducial the
delineator misses, or that breaks the P < PR < QRS < ST < T order, falls back to the fixed
window in ``explain.regions.fixed_ms``; the T wave is widened to at least ``min_t_half_ms`` either
side of its (delineated) peak (its onset no earlier than ``min_st_ms`` after the QRS offset
unless the peak itself is), and its end to where the median beat returns within 10% of the T
height to baseline, because the dwt T on/offsets of a median beat are often too tight.
Each boundary row says where it came from (``neurokit``, ``neurokit (fixed p_off, …)``, ``fixed``).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ecgml.signal import DelineationError, delineate_record

log = logging.getLogger(__name__)

REGIONS = ("P", "PR", "QRS", "ST", "T", "U")
#: Boundary columns, in order: region k spans [BOUNDARIES[k], BOUNDARIES[k + 1]).
BOUNDARIES = ("p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off", "u_off")
FIXED_DEFAULTS = {
    "p_on": -220.0,
    "p_off": -120.0,
    "qrs_on": -50.0,
    "qrs_off": 50.0,
    "t_on": 120.0,
    "t_off": 380.0,
}
#: Fiducial columns here → :data:`ecgml.signal.WAVES` names.
_NK_KEYS = {
    "p_on": "P_Onsets",
    "p_off": "P_Offsets",
    "qrs_on": "R_Onsets",
    "qrs_off": "R_Offsets",
    "t_on": "T_Onsets",
    "t_peak": "T_Peaks",
    "t_off": "T_Offsets",
}


def median_beat(beats: np.ndarray, valid: np.ndarray, min_share: float = 0.5) -> np.ndarray:
    """Sample-wise median of R-aligned beats over their valid samples (NaN where too few)."""
    masked = np.where(valid, beats, np.nan)
    share = valid.mean(axis=0) if len(beats) else np.zeros(beats.shape[1])
    out = np.full(beats.shape[1], np.nan)
    enough = share >= min_share
    if enough.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[enough] = np.nanmedian(masked[:, enough], axis=0)
    return out


def delineate_medians(
    medians: Sequence[np.ndarray], r_indices: Sequence[int], fs: float, tiles: int = 8
) -> pd.DataFrame:
    """NeuroKit2 fiducials (ms from R) of each median beat; NaN where the delineator gave none.

    All beats go through one ``ecg_delineate`` call: each is cut to its finite samples, tiled
    ``tiles`` times, and the fiducials of the inner copies are averaged.
    """
    columns = list(_NK_KEYS)
    empty = pd.DataFrame(np.nan, index=range(len(medians)), columns=columns)
    pieces, rpeaks, owners, offset = [], [], [], 0
    for k, (beat, r) in enumerate(zip(medians, r_indices, strict=True)):
        finite = np.flatnonzero(np.isfinite(beat))
        if len(finite) == 0 or not finite[0] <= r <= finite[-1]:
            continue
        segment = beat[finite[0] : finite[-1] + 1]
        for copy_index in range(tiles):
            pieces.append(segment)
            rpeaks.append(offset + r - finite[0])
            owners.append((k, 0 < copy_index < tiles - 1))
            offset += len(segment)
    if not pieces:
        return empty
    try:
        waves = delineate_record(np.concatenate(pieces), np.asarray(rpeaks), fs)
    except DelineationError as err:
        log.warning("%s: fixed ECG regions are used", err)
        return empty
    offsets = waves.sub(np.asarray(rpeaks), axis=0) * 1000.0 / fs
    rel = pd.DataFrame({name: offsets[key].to_numpy() for name, key in _NK_KEYS.items()})
    rel["owner"] = [owner for owner, _ in owners]
    inner = rel[[is_inner for _, is_inner in owners]]
    found = inner.groupby("owner")[columns].median()
    return found.reindex(range(len(medians)))


def t_wave_end(
    beat: np.ndarray, r: int, fs: float, t_peak_ms: float, fraction: float = 0.1
) -> float:
    """ms from R where the T wave, after its peak, first falls within ``fraction`` of its height.

    Height is measured from the baseline (median of the beat's finite samples); NaN if the T
    peak lies outside the beat or the wave never returns before the beat ends.
    """
    finite = np.isfinite(beat)
    if not np.isfinite(t_peak_ms):
        return float("nan")
    peak = round(r + t_peak_ms * fs / 1000.0)
    if not finite.any() or not 0 <= peak < len(beat) or not finite[peak]:
        return float("nan")
    baseline = float(np.median(beat[finite]))
    height = beat[peak] - baseline
    if height == 0:
        return float("nan")
    after = (beat[peak:] - baseline) / height
    returned = np.flatnonzero(~(after > fraction))  # NaN (end of beat) counts as returned
    return float((peak + returned[0] - r) * 1000.0 / fs) if len(returned) else float("nan")


def region_bounds(
    fiducials: Mapping[str, float], cfg: Mapping[str, Any], beat_end_ms: float
) -> dict[str, Any]:
    """Boundaries ``p_on … u_off`` (ms from R) from delineated fiducials, with fallbacks.

    ``fiducials`` may carry ``t_end``: the T end found on the median beat itself (see
    :func:`t_wave_end`), which extends a dwt T offset that stops short of it.
    """
    fixed = {**FIXED_DEFAULTS, **dict(cfg.get("fixed_ms") or {})}
    min_half = float(cfg.get("min_t_half_ms", 80))
    min_st = float(cfg.get("min_st_ms", 40))
    u_ms = float(cfg.get("u_ms", 200))

    def value(name: str) -> float:
        v = fiducials.get(name, np.nan)
        return float(v) if v is not None and np.isfinite(v) else np.nan

    bounds = {name: value(name) for name in FIXED_DEFAULTS}
    t_peak = value("t_peak")
    if np.isfinite(t_peak):
        bounds["t_on"] = np.nanmin([bounds["t_on"], t_peak - min_half])
        earliest = bounds["qrs_off"] + min_st
        if bounds["t_on"] < earliest:  # no ST segment left: dwt onset caught the S recovery
            bounds["t_on"] = min(max(earliest, t_peak - min_half), t_peak)
        bounds["t_off"] = np.nanmax([bounds["t_off"], t_peak + min_half, value("t_end")])
        if np.isfinite(bounds["qrs_off"]):
            bounds["t_on"] = max(bounds["t_on"], bounds["qrs_off"])
    replaced = _repair_order(bounds, fixed)
    bounds["u_off"] = max(bounds["t_off"], min(bounds["t_off"] + u_ms, beat_end_ms))
    if not replaced:
        source = "neurokit"
    elif len(replaced) == len(FIXED_DEFAULTS):
        source = "fixed"
    else:
        source = f"neurokit (fixed {', '.join(replaced)})"
    return {**bounds, "regions_source": source}


def _repair_order(bounds: dict[str, float], fixed: Mapping[str, float]) -> list[str]:
    """Replace missing or out-of-order boundaries with the fixed ones; return which were."""
    replaced = []
    names = list(FIXED_DEFAULTS)
    for name in names:
        if not np.isfinite(bounds[name]):
            bounds[name] = float(fixed[name])
            replaced.append(name)
    for k in range(1, len(names)):
        name, previous = names[k], names[k - 1]
        if bounds[name] < bounds[previous]:
            for fix in (previous, name):
                if fix not in replaced:
                    bounds[fix] = float(fixed[fix])
                    replaced.append(fix)
    if any(bounds[b] < bounds[a] for a, b in itertools.pairwise(names)):
        bounds.update({name: float(fixed[name]) for name in names})
        replaced = names
    return replaced


def fixed_bounds(cfg: Mapping[str, Any], beat_end_ms: float) -> dict[str, Any]:
    return region_bounds({}, cfg, beat_end_ms)


def region_masses(
    profile: np.ndarray, r: int, fs: float, bounds: Mapping[str, float]
) -> dict[str, float]:
    """Share of the (non-negative, NaN outside the beat) profile inside each region + other."""
    total = float(np.nansum(profile))
    out = {}
    for k, region in enumerate(REGIONS):
        lo = _to_sample(bounds[BOUNDARIES[k]], r, fs, len(profile))
        hi = _to_sample(bounds[BOUNDARIES[k + 1]], r, fs, len(profile))
        out[region] = float(np.nansum(profile[lo:hi])) / total if total > 0 and hi > lo else 0.0
    out["other"] = max(0.0, 1.0 - sum(out.values())) if total > 0 else 0.0
    return out


def region_at(ms: float, bounds: Mapping[str, float]) -> str:
    """The region holding the time ``ms`` (from R), or ``other``."""
    for k, region in enumerate(REGIONS):
        if bounds[BOUNDARIES[k]] <= ms < bounds[BOUNDARIES[k + 1]]:
            return region
    return "other"


def _to_sample(ms: float, r: int, fs: float, length: int) -> int:
    return int(np.clip(round(r + ms * fs / 1000.0), 0, length))
