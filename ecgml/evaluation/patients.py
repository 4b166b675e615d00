"""Patient level: a patient's probability is the mean of its beats' (as in the study)."""

from __future__ import annotations

import pandas as pd

from ecgml.errors import EcgmlError


def patient_level(df: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: ``y_prob`` is the mean over its beats, ``y_true`` its label
    (columns ``patient_id, y_true, y_prob``, plus ``split`` if present), in first-seen order."""
    missing = [c for c in ("patient_id", "y_true", "y_prob") if c not in df.columns]
    if missing:
        raise EcgmlError(f"patient_level: missing column(s) {missing} in the predictions")
    grouped = df.groupby("patient_id", sort=False)
    keys = ["y_true", *(["split"] if "split" in df.columns else [])]
    spread = grouped[keys].nunique()
    for key in keys:
        if (spread[key] > 1).any():
            patient = spread.index[spread[key] > 1][0]
            raise EcgmlError(
                f"patient {str(patient)!r} has beats with different {key} values: "
                f"a patient has one {key}; fix the manifest or the split"
            )
    out = grouped[keys].first()
    out["y_prob"] = grouped["y_prob"].mean()
    return out.reset_index()[["patient_id", "y_true", "y_prob", *keys[1:]]]
