"""Patient level: a patient's probability is the mean of its beats' (as in the study), or their
median or maximum (``evaluation.aggregate``). A learned (attention) pooling over a patient's beats
is a record model: ``data.unit=record model=set_cnn1d``."""

from __future__ import annotations

import pandas as pd

from ecgml.errors import EcgmlError

#: ``evaluation.aggregate``: how a patient's beat scores become one patient score.
AGGREGATES = ("mean", "median", "max")


def check_aggregate(how: str) -> str:
    """``how`` (a plain string) when it is one of :data:`AGGREGATES`, else a one-line error."""
    how = str(how)
    if how not in AGGREGATES:
        raise EcgmlError(
            f"evaluation.aggregate={how!r} is not known: use one of {', '.join(AGGREGATES)}"
        )
    return how


def aggregate_beats(
    grouped: pd.core.groupby.DataFrameGroupBy, columns: list[str], how: str
) -> pd.DataFrame:
    """Each patient's ``columns`` reduced over its beats with ``how`` (:data:`AGGREGATES`)."""
    return grouped[columns].agg(check_aggregate(how))


def patient_level(df: pd.DataFrame, aggregate: str = "mean") -> pd.DataFrame:
    """One row per patient: ``y_prob`` is the ``aggregate`` (mean, median or max) over its
    beats, ``y_true`` its label
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
    out["y_prob"] = aggregate_beats(grouped, ["y_prob"], aggregate)["y_prob"]
    return out.reset_index()[["patient_id", "y_true", "y_prob", *keys[1:]]]
