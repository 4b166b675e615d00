"""Labels per task: binary (disorder = 1, normal = 0), multi-label, serum regression targets."""

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
    conflicts = _check_labelled(meta, source)
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


def _check_labelled(meta: pd.DataFrame, source: str) -> set[str]:
    """Refuse ``unknown`` beats; the patients listed under two groups (excluded, logged)."""
    if (meta["group"] == "unknown").any():
        raise EcgmlError(
            f"{source} has beats with group 'unknown': training needs labelled beats "
            "(normal, hyperkalemia, hypokalemia or hyponatremia)"
        )
    conflicts = conflicting_patients(meta)
    if conflicts:
        log.warning("excluded %d patient(s) listed under more than one group", len(conflicts))
    return conflicts


def multilabel_labels(
    meta: pd.DataFrame, disorders: tuple[str, ...], source: str = "beat store"
) -> tuple[pd.DataFrame, LabelSummary]:
    """Every labelled beat with ``y_<disorder>`` (1/0) per disorder; ``normal`` = all zero.

    A disorder is present when it is the patient's ``group``, or, for hyponatremia, when the
    store gives ``sodium`` below 135 mmol/L (a hypokalemic patient with hyponatremia too keeps
    ``group=hypokalemia``). ``y`` is the label combination (an integer code): the stratum of
    the patient-level split and the bootstrap.
    """
    conflicts = _check_labelled(meta, source)
    selected = meta.loc[~meta["patient_id"].isin(conflicts)].copy()
    present = sorted(set(selected["group"]) - {"normal"})
    if len(set(selected["group"])) < 2 or not present:
        raise EcgmlError(
            f"{source} has only group(s) {sorted(set(selected['group']))}: task=multilabel "
            "needs normal patients and at least one disorder; add them or use task=binary"
        )
    for disorder in disorders:
        label = selected["group"] == disorder
        if disorder == "hyponatremia" and "sodium" in selected.columns:
            label |= pd.to_numeric(selected["sodium"], errors="coerce").lt(135.0)
        selected[f"y_{disorder}"] = label.astype("int64")
    bits = sum(selected[f"y_{d}"] * (1 << i) for i, d in enumerate(disorders))
    selected["y"] = bits.astype("int64")
    per_patient = selected.groupby("patient_id")["y"].first()
    n_pos = int((per_patient > 0).sum())
    summary = LabelSummary(
        len(selected), len(per_patient), n_pos, len(per_patient) - n_pos, len(conflicts)
    )
    return selected.reset_index(drop=True), summary


def regression_targets(
    meta: pd.DataFrame, column: str, low: float, high: float, source: str = "beat store"
) -> tuple[pd.DataFrame, LabelSummary]:
    """Beats of the patients with a ``column`` value, ``target`` = that value (mmol/L).

    Patients without a value are left out (count logged). ``y`` is the group (an integer
    code) for stratified splits; the summary's positives are patients outside ``[low, high]``.
    """
    if column not in meta.columns:
        raise EcgmlError(
            f"{source} has no '{column}' column: task={column} needs the serum value "
            f"(mmol/L) of each patient in manifest.csv; add it or use task=binary"
        )
    conflicts = _check_labelled(meta, source)
    values = pd.to_numeric(meta[column], errors="coerce")
    keep = values.notna() & ~meta["patient_id"].isin(conflicts)
    missing = meta.loc[values.isna(), "patient_id"].nunique()
    if missing:
        log.warning("%d patient(s) without a %s value left out of task=%s", missing, column, column)
    selected = meta.loc[keep].copy()
    selected["target"] = values[keep].astype("float64")
    if selected.empty:
        raise EcgmlError(
            f"{source}: no patient has a '{column}' value: fill the column or use task=binary"
        )
    per_patient = selected.groupby("patient_id")["target"].first()
    abnormal = int(((per_patient < low) | (per_patient > high)).sum())
    if abnormal == 0 or per_patient.nunique() < 3:
        raise EcgmlError(
            f"{source}: every {column} value is within {low:g}–{high:g} mmol/L (or nearly all "
            f"equal): task={column} cannot learn from it; add abnormal patients"
        )
    codes = {g: i for i, g in enumerate(sorted(selected["group"].unique()))}
    selected["y"] = selected["group"].map(codes).astype("int64")
    summary = LabelSummary(
        len(selected), len(per_patient), abnormal, len(per_patient) - abnormal, len(conflicts)
    )
    log.info(
        "task=%s: %d patients, %d outside %g–%g mmol/L",
        column,
        len(per_patient),
        abnormal,
        low,
        high,
    )
    return selected.reset_index(drop=True), summary
