"""The study's Table 2 layout: Group × eight metrics, each "value (low–high)".

Proportions (accuracy, sensitivity, specificity, precision, NPV) are shown as percentages, like
the study ("89.47% (77.40–95.61)"); AUROC, F1 and MCC as fractions ("0.94 (0.87–0.98)").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from ecgml.evaluation.metrics import METRICS, PROPORTIONS

METRIC_TITLES = {
    "accuracy": "Accuracy",
    "auroc": "AUROC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "npv": "NPV",
    "f1": "F1-Score",
    "mcc": "MCC",
}


def format_value(metric: str, value: float, low: float, high: float) -> str:
    """One table cell: "89.47% (77.40–95.61)" for proportions, "0.94 (0.87–0.98)" otherwise;
    "n/a" for an undefined value or interval."""
    if value is None or math.isnan(value):
        return "n/a"
    if metric in PROPORTIONS:
        point, bounds = f"{100 * value:.2f}%", (100 * low, 100 * high)
    else:
        point, bounds = f"{value:.2f}", (low, high)
    if any(b is None or math.isnan(b) for b in bounds):
        return f"{point} (n/a)"
    return f"{point} ({bounds[0]:.2f}–{bounds[1]:.2f})"


def column_title(metric: str, level: float = 0.95) -> str:
    return f"{METRIC_TITLES[metric]} ({level:.0%} CI)"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def format_results_table(
    rows: Mapping[str, Mapping[str, float]], prefix: str = "", level: float = 0.95
) -> tuple[str, pd.DataFrame]:
    """(markdown, CSV frame) of the Table 2 layout, one row per group.

    ``rows`` maps a group name (e.g. "Hyperkalemia") to metrics with keys ``{prefix}m``,
    ``{prefix}m_ci_low``, ``{prefix}m_ci_high`` (the output of ``compute_metrics``, or the MLflow
    dict of ``evaluate_predictions`` with ``prefix="test/"``). The markdown shows the formatted
    cells; the frame has them too, followed by the numeric values (``accuracy``,
    ``accuracy_ci_low``, …) so results stay machine-comparable across runs.
    """
    formatted, numeric = [], []
    for group, metrics in rows.items():
        cells: dict[str, object] = {"Group": group}
        numbers: dict[str, float] = {}
        for m in METRICS:
            value, low, high = (
                float(metrics.get(f"{prefix}{m}{suffix}", math.nan))
                for suffix in ("", "_ci_low", "_ci_high")
            )
            cells[column_title(m, level)] = format_value(m, value, low, high)
            numbers.update({m: value, f"{m}_ci_low": low, f"{m}_ci_high": high})
        formatted.append(cells)
        numeric.append(numbers)
    table = pd.DataFrame(formatted, columns=["Group", *(column_title(m, level) for m in METRICS)])
    frame = pd.concat([table, pd.DataFrame(numeric, index=table.index)], axis=1)
    return _markdown(table), frame


#: The clinical columns beside Table 2: (title, metric key without prefix, percent?).
CLINICAL_COLUMNS = (
    ("ECE, model's own", "ece_raw", False),
    ("ECE, recalibrated", "ece", False),
    ("Calibration slope", "calibration_slope", False),
    ("Calibration intercept", "calibration_intercept", False),
    ("Brier", "brier", False),
)


def _cell(metrics: Mapping[str, float], key: str, percent: bool, digits: int = 3) -> str:
    value, low, high = (
        float(metrics.get(f"{key}{s}", math.nan)) for s in ("", "_ci_low", "_ci_high")
    )
    if math.isnan(value):
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    point = f"{scale * value:.{digits}f}{unit}"
    if math.isnan(low) or math.isnan(high):
        return point
    return f"{point} ({scale * low:.{digits}f}–{scale * high:.{digits}f})"


def format_clinical_table(
    rows: Mapping[str, Mapping[str, float]],
    prevalences: tuple[float, ...] = (0.01, 0.05, 0.2),
    prefix: str = "test/",
) -> tuple[str, pd.DataFrame]:
    """(markdown, frame) of the clinical columns beside Table 2, one row per group: calibration
    (ECE before/after recalibration, slope, intercept, Brier) and PPV/NPV at each prevalence."""
    columns = [*CLINICAL_COLUMNS]
    for p in prevalences:
        columns += [
            (f"PPV at {p:.0%}", f"ppv_at_{p:g}", True),
            (f"NPV at {p:.0%}", f"npv_at_{p:g}", True),
        ]
    formatted, numeric = [], []
    for group, metrics in rows.items():
        formatted.append(
            {
                "Group": group,
                **{
                    title: _cell(metrics, f"{prefix}{key}", percent, 1 if percent else 3)
                    for title, key, percent in columns
                },
            }
        )
        numeric.append(
            {
                f"{key}{s}": float(metrics.get(f"{prefix}{key}{s}", math.nan))
                for _, key, _ in columns
                for s in ("", "_ci_low", "_ci_high")
            }
        )
    table = pd.DataFrame(formatted, columns=["Group", *(c[0] for c in columns)])
    frame = pd.concat([table, pd.DataFrame(numeric, index=table.index)], axis=1)
    return _markdown(table), frame
