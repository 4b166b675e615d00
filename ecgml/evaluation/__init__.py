"""Evaluation: the study's eight metrics with 95% CIs (Wilson; patient-level stratified
bootstrap), decision thresholds, ROC / PR / confusion / calibration figures, and the study's
Table 2 layout; calibration, clinical utility and subgroups (:mod:`ecgml.evaluation.clinical`).
:func:`evaluate_predictions` is the end-of-run entry point."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecgml.evaluation.bootstrap import (
        BootstrapPlan,
        bootstrap_auroc,
        bootstrap_confusion,
        bootstrap_metrics,
        bootstrap_roc_band,
        patient_bootstrap_indices,
    )
    from ecgml.evaluation.calibration import Calibrator, fit_calibrator
    from ecgml.evaluation.clinical import ClinicalSettings
    from ecgml.evaluation.figures import (
        plot_calibration,
        plot_confusion,
        plot_pr,
        plot_roc,
        save_figure,
    )
    from ecgml.evaluation.intervals import percentile_interval, wilson_interval
    from ecgml.evaluation.metrics import METRICS, compute_metrics, confusion_counts
    from ecgml.evaluation.predictions import (
        PREFIXES,
        TABLES,
        Evaluation,
        evaluate_predictions,
        evaluate_with_config,
        metric_keys,
        patient_level,
    )
    from ecgml.evaluation.report import format_results_table
    from ecgml.evaluation.threshold import THRESHOLD_RULES, choose_threshold

#: Where each public name lives: imported on first use, so importing one light submodule
#: (the served model does) does not import every sibling.
_LAZY = {
    "BootstrapPlan": "ecgml.evaluation.bootstrap",
    "Calibrator": "ecgml.evaluation.calibration",
    "ClinicalSettings": "ecgml.evaluation.clinical",
    "Evaluation": "ecgml.evaluation.predictions",
    "METRICS": "ecgml.evaluation.metrics",
    "PREFIXES": "ecgml.evaluation.predictions",
    "TABLES": "ecgml.evaluation.predictions",
    "THRESHOLD_RULES": "ecgml.evaluation.threshold",
    "bootstrap_auroc": "ecgml.evaluation.bootstrap",
    "bootstrap_confusion": "ecgml.evaluation.bootstrap",
    "bootstrap_metrics": "ecgml.evaluation.bootstrap",
    "bootstrap_roc_band": "ecgml.evaluation.bootstrap",
    "choose_threshold": "ecgml.evaluation.threshold",
    "compute_metrics": "ecgml.evaluation.metrics",
    "confusion_counts": "ecgml.evaluation.metrics",
    "evaluate_predictions": "ecgml.evaluation.predictions",
    "evaluate_with_config": "ecgml.evaluation.predictions",
    "fit_calibrator": "ecgml.evaluation.calibration",
    "format_results_table": "ecgml.evaluation.report",
    "metric_keys": "ecgml.evaluation.predictions",
    "patient_bootstrap_indices": "ecgml.evaluation.bootstrap",
    "patient_level": "ecgml.evaluation.predictions",
    "percentile_interval": "ecgml.evaluation.intervals",
    "plot_calibration": "ecgml.evaluation.figures",
    "plot_confusion": "ecgml.evaluation.figures",
    "plot_pr": "ecgml.evaluation.figures",
    "plot_roc": "ecgml.evaluation.figures",
    "save_figure": "ecgml.evaluation.figures",
    "wilson_interval": "ecgml.evaluation.intervals",
}

__all__ = [
    "METRICS",
    "PREFIXES",
    "TABLES",
    "THRESHOLD_RULES",
    "BootstrapPlan",
    "Calibrator",
    "ClinicalSettings",
    "Evaluation",
    "bootstrap_auroc",
    "bootstrap_confusion",
    "bootstrap_metrics",
    "bootstrap_roc_band",
    "choose_threshold",
    "compute_metrics",
    "confusion_counts",
    "evaluate_predictions",
    "evaluate_with_config",
    "fit_calibrator",
    "format_results_table",
    "metric_keys",
    "patient_bootstrap_indices",
    "patient_level",
    "percentile_interval",
    "plot_calibration",
    "plot_confusion",
    "plot_pr",
    "plot_roc",
    "save_figure",
    "wilson_interval",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
