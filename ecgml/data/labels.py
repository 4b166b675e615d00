"""Binary labels for one disorder: positive group = 1, negative group (normal) = 0."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from ecgml.errors import EcgmlError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelSummary:
    n_beats: int
    n_patients: int
    n_positive_patients: int
    n_negative_patients: int
    n_conflicting_patients: int


def conflicting_patients(meta: pd.DataFrame) -> set[str]:
    """Patients listed under more than one group (e.g. two disorders, or a disorder + normal)."""
    groups_per_patient = meta.groupby("patient_id")["group"].nunique()
    return set(groups_per_patient.index[groups_per_patient > 1])


def binary_labels(
    meta: pd.DataFrame, positive: str, negative: str = "normal", source: str = "beat store"
) -> tuple[pd.DataFrame, LabelSummary]:
    """Keep the beats of ``positive`` and ``negative`` patients and add ``y`` (1/0).

    Beats of other groups are left out; patients with more than one group are excluded (the
    study excluded its two patients with multiple disorders) and counted in the summary.
    """
    if (meta["group"] == "unknown").any():
        raise EcgmlError(
            f"{source} has beats with group 'unknown': training needs labelled beats "
            "(normal, hyperkalemia, hypokalemia or hyponatremia)"
        )
    conflicts = conflicting_patients(meta)
    if conflicts:
        log.warning("excluded %d patient(s) listed under more than one group", len(conflicts))
    keep = meta["group"].isin([positive, negative]) & ~meta["patient_id"].isin(conflicts)
    selected = meta.loc[keep].copy()
    selected["y"] = (selected["group"] == positive).astype("int64")
    per_patient = selected.groupby("patient_id")["y"].first()
    n_pos, n_neg = int(per_patient.sum()), int((per_patient == 0).sum())
    if n_pos == 0 or n_neg == 0:
        missing = positive if n_pos == 0 else negative
        raise EcgmlError(
            f"{source} has no '{missing}' patients for disorder={positive}: "
            f"add {missing} beats or pick another disorder"
        )
    summary = LabelSummary(len(selected), len(per_patient), n_pos, n_neg, len(conflicts))
    return selected.reset_index(drop=True), summary
