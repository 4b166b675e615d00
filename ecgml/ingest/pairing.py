"""Pair each ECG with the closest potassium and sodium result of its patient.

Rules (``pairing.rule``):

- ``same_day`` (the study's): the closest result on the ECG's calendar date;
- ``window``: the closest result within ``window_h`` hours either side (1 h is Kardio-Net's).

Ties (a result as far before as another is after) go to the earlier result. Times are naive
local times (:mod:`ecgml.ingest.labs` made them so). Results outside the store's bounds never
reach this step (``lab_out_of_range``), so the next-closest value is the one paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgml.errors import EcgmlError
from ecgml.ingest.labs import ANALYTES

RULES = ("same_day", "window")


@dataclass(frozen=True)
class PairingRule:
    rule: str = "same_day"
    window_h: float = 24.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise EcgmlError(
                f"pairing.rule={self.rule!r} is not a rule: use one of {', '.join(RULES)}"
            )
        if not (np.isfinite(self.window_h) and self.window_h > 0):
            raise EcgmlError(f"pairing.window_h={self.window_h!r} must be a positive number of h")


def pair_labs(ecgs: pd.DataFrame, labs: pd.DataFrame, rule: PairingRule) -> pd.DataFrame:
    """For ``ecgs`` (``patient_id``, ``time``; any index), one row per ECG (same index) with
    ``<analyte>`` and ``<analyte>_time`` for each analyte, NaN / NaT when none qualifies."""
    out = pd.DataFrame(index=ecgs.index)
    for analyte in ANALYTES:
        mine = labs[labs["analyte"] == analyte]
        value, time = _closest(ecgs, mine, rule)
        out[analyte] = value
        out[f"{analyte}_time"] = time
    return out


def _closest(
    ecgs: pd.DataFrame, labs: pd.DataFrame, rule: PairingRule
) -> tuple[np.ndarray, np.ndarray]:
    """The closest qualifying result per ECG: the nearer of the last one at or before the ECG
    and the first one after it (the earlier on a tie)."""
    left = pd.DataFrame(
        {
            "order": np.arange(len(ecgs)),
            "patient_id": ecgs["patient_id"].astype(str).to_numpy(),
            "time": pd.to_datetime(ecgs["time"]).to_numpy(dtype="datetime64[ns]"),
        }
    )
    right = pd.DataFrame(
        {
            "patient_id": labs["patient_id"].astype(str).to_numpy(),
            "lab_time": labs["time"].to_numpy(dtype="datetime64[ns]"),
            "value": labs["value"].to_numpy(dtype=float),
        }
    )
    by = ["patient_id"]
    if rule.rule == "same_day":
        left["day"] = left["time"].dt.normalize()
        right["day"] = right["lab_time"].dt.normalize()
        by.append("day")
    right["time"] = right["lab_time"]
    left = left.sort_values("time", kind="stable")
    right = right.sort_values("time", kind="stable")
    tolerance = pd.Timedelta(hours=rule.window_h) if rule.rule == "window" else None
    before = _asof(left, right, by, "backward", tolerance)
    after = _asof(left, right, by, "forward", tolerance)
    gap_before = (before["time"] - before["lab_time"]).to_numpy()
    gap_after = (after["lab_time"] - after["time"]).to_numpy()
    take_after = _is_nearer(gap_after, gap_before)
    value = np.where(take_after, after["value"].to_numpy(), before["value"].to_numpy())
    time = np.where(take_after, after["lab_time"].to_numpy(), before["lab_time"].to_numpy())
    order = before["order"].to_numpy()
    values, times = np.empty(len(ecgs)), np.empty(len(ecgs), dtype="datetime64[ns]")
    values[order], times[order] = value, time
    return values, times


def _asof(
    left: pd.DataFrame,
    right: pd.DataFrame,
    by: list[str],
    direction: str,
    tolerance: pd.Timedelta | None,
) -> pd.DataFrame:
    merged = pd.merge_asof(
        left,
        right,
        on="time",
        by=by,
        direction=direction,
        tolerance=tolerance,
        allow_exact_matches=True,
    )
    return merged.sort_values("order", kind="stable").reset_index(drop=True)


def _is_nearer(gap_after: np.ndarray, gap_before: np.ndarray) -> np.ndarray:
    """Where the later result is strictly nearer (or the only one)."""
    has_after = ~np.isnat(gap_after)
    has_before = ~np.isnat(gap_before)
    strictly = np.zeros(gap_after.shape, dtype=bool)
    both = has_after & has_before
    strictly[both] = gap_after[both] < gap_before[both]
    return (has_after & ~has_before) | strictly
