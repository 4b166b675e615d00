"""From paired serum values to a study group, and one group per patient.

An ECG is ``normal`` only when both analytes are paired and inside ``[low, high]``; one
analyte abnormal and the other normal or unpaired gives that disorder (K < low: hypokalemia,
K > high: hyperkalemia, Na < low: hyponatremia). Excluded: no result paired
(``no_lab_in_window``), Na > high (``out_of_scope``: no hypernatremia group), one analyte
normal and the other unpaired (``incomplete_labs``), two disorders (``two_disorders``, unless
``comorbid=keep``: the potassium disorder is the group, both values kept for the multi-label
and serum tasks).

Training drops a patient listed under two groups, so ``selection=per_patient`` gives all of a
patient's ECGs one group: the disorder of the patient's first abnormal ECG, else ``normal``;
their ECGs of another group are excluded (``other_group_of_patient``). ``selection=all``
keeps every paired ECG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgml.errors import EcgmlError

SELECTIONS = ("per_patient", "all")
COMORBID = ("exclude", "keep")


@dataclass(frozen=True)
class GroupRule:
    potassium_low: float = 3.5
    potassium_high: float = 5.0
    sodium_low: float = 135.0
    sodium_high: float = 145.0
    comorbid: str = "exclude"
    selection: str = "per_patient"

    def __post_init__(self) -> None:
        if not self.potassium_low < self.potassium_high:
            raise EcgmlError("groups.potassium_low must be below groups.potassium_high")
        if not self.sodium_low < self.sodium_high:
            raise EcgmlError("groups.sodium_low must be below groups.sodium_high")
        if self.comorbid not in COMORBID:
            raise EcgmlError(f"groups.comorbid={self.comorbid!r}: use one of exclude, keep")
        if self.selection not in SELECTIONS:
            raise EcgmlError(f"selection={self.selection!r}: use one of per_patient, all")


def assign_groups(paired: pd.DataFrame, rule: GroupRule) -> tuple[pd.Series, pd.Series]:
    """``(group, reason)`` per row of ``paired`` (``potassium``, ``sodium``; NaN = unpaired):
    a group where the ECG is kept, else an exclusion reason (the other one empty)."""
    k = paired["potassium"].to_numpy(dtype=float)
    na = paired["sodium"].to_numpy(dtype=float)
    has_k, has_na = ~np.isnan(k), ~np.isnan(na)
    k_low, k_high = has_k & (k < rule.potassium_low), has_k & (k > rule.potassium_high)
    na_low, na_high = has_na & (na < rule.sodium_low), has_na & (na > rule.sodium_high)
    k_disorder = k_low | k_high
    group = np.full(len(paired), "", dtype=object)
    reason = np.full(len(paired), "", dtype=object)
    group[has_k & has_na & ~k_disorder & ~na_low & ~na_high] = "normal"
    group[na_low & ~k_disorder] = "hyponatremia"
    group[k_low] = "hypokalemia"
    group[k_high] = "hyperkalemia"
    incomplete = (has_k ^ has_na) & ~k_disorder & ~na_low
    reason[incomplete] = "incomplete_labs"
    if rule.comorbid == "exclude":
        reason[k_disorder & na_low] = "two_disorders"
    reason[na_high] = "out_of_scope"
    reason[~has_k & ~has_na] = "no_lab_in_window"
    group[reason != ""] = ""
    return pd.Series(group, index=paired.index), pd.Series(reason, index=paired.index)


def patient_groups(patient_id: pd.Series, time: pd.Series, group: pd.Series) -> pd.Series:
    """Per row, its patient's group: the disorder of the patient's first abnormal ECG by time
    (of the rows with a group), else ``normal``."""
    frame = pd.DataFrame({"patient_id": patient_id, "time": time, "group": group})
    abnormal = frame[~frame["group"].isin(["", "normal"])].sort_values("time", kind="stable")
    first = abnormal.drop_duplicates("patient_id").set_index("patient_id")["group"]
    return frame["patient_id"].map(first).fillna("normal")


def other_group_rows(group: pd.Series, patient_group: pd.Series) -> pd.Series:
    """Rows with a group that is not their patient's (:func:`patient_groups`)."""
    return (group != "") & (group != patient_group)


def one_group_per_patient(patient_id: pd.Series, time: pd.Series, group: pd.Series) -> pd.Series:
    """Rows (of those with a group) whose group differs from their patient's."""
    return other_group_rows(group, patient_groups(patient_id, time, group))
