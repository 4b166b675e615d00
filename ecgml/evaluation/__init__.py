"""Evaluation: the study's eight metrics with 95% CIs (Wilson; patient-level stratified
bootstrap), decision thresholds, ROC / PR / confusion / calibration figures, and the study's
Table 2 layout; calibration, clinical utility and subgroups (:mod:`ecgml.evaluation.clinical`).
:func:`evaluate_predictions` is the end-of-run entry point."""

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
