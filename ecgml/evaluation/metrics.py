"""The study's eight metrics with 95% CIs for one set of beat predictions.

Point values come from scikit-learn. CIs: Wilson score intervals for the proportions
(accuracy, sensitivity, specificity, precision, NPV); the patient-level stratified bootstrap
(:mod:`ecgml.evaluation.bootstrap`) for AUROC, F1 and MCC. An undefined metric (one class only,
a zero denominator) is NaN with a logged reason, never a crash or a made-up number.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt
from sklearn.metrics import confusion_matrix, f1_score, matthews_corrcoef, roc_auc_score

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_ids, as_labels, as_probabilities, check_same_length
from ecgml.evaluation.bootstrap import (
    BootstrapPlan,
    bootstrap_metrics,
    patient_bootstrap_indices,
    patient_labels,
)
from ecgml.evaluation.intervals import check_level, percentile_interval, wilson_interval

log = logging.getLogger(__name__)

METRICS = ("accuracy", "auroc", "sensitivity", "specificity", "precision", "npv", "f1", "mcc")
#: Metrics that are proportions of beats (Wilson CI); the others get a bootstrap CI.
PROPORTIONS = ("accuracy", "sensitivity", "specificity", "precision", "npv")
BOOTSTRAPPED = ("auroc", "f1", "mcc")
COUNT_KEYS = ("n_beats", "n_patients", "n_positive", "n_negative", "tp", "fp", "tn", "fn")


def confusion_counts(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, int]:
    """``tp, fp, tn, fn`` for binary labels (1 = disorder)."""
    truth, pred = as_labels(y_true), as_labels(y_pred, "y_pred")
    check_same_length(y_true=truth, y_pred=pred)
    tn, fp, fn, tp = confusion_matrix(truth, pred, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def proportion_counts(c: dict[str, int]) -> dict[str, tuple[int, int, str]]:
    """For each proportion metric: (successes, total, why it is undefined when total == 0)."""
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "accuracy": (tp + tn, tp + fp + tn + fn, "no beats"),
        "sensitivity": (tp, tp + fn, "no positives (disorder) among the true labels"),
        "specificity": (tn, tn + fp, "no negatives (normal) among the true labels"),
        "precision": (tp, tp + fp, "nothing predicted positive"),
        "npv": (tn, tn + fn, "nothing predicted negative"),
    }


def _undefined(context: str, metric: str, reason: str) -> float:
    log.warning("%s%s is undefined (NaN): %s", f"{context}: " if context else "", metric, reason)
    return math.nan


def point_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray, context: str = ""
) -> dict[str, float]:
    """Point values of the eight metrics (NaN with a logged reason where undefined)."""
    c = confusion_counts(y_true, y_pred)
    out: dict[str, float] = {}
    for name, (successes, total, reason) in proportion_counts(c).items():
        out[name] = successes / total if total else _undefined(context, name, reason)
    n_pos, n_neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    if n_pos and n_neg:
        out["auroc"] = float(roc_auc_score(y_true, y_prob))
    else:
        out["auroc"] = _undefined(context, "auroc", f"one class only ({n_pos} pos, {n_neg} neg)")
    if 2 * c["tp"] + c["fp"] + c["fn"]:
        out["f1"] = float(f1_score(y_true, y_pred, labels=[0, 1], pos_label=1))
    else:
        out["f1"] = _undefined(context, "f1", "no positives and nothing predicted positive")
    predicted_pos, predicted_neg = c["tp"] + c["fp"], c["tn"] + c["fn"]
    if n_pos and n_neg and predicted_pos and predicted_neg:
        out["mcc"] = float(matthews_corrcoef(y_true, y_pred))
    else:
        out["mcc"] = _undefined(
            context, "mcc", "a class is absent from the labels or from the predictions (0/0)"
        )
    return {name: out[name] for name in METRICS}


def compute_metrics(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
    threshold: float,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    plan: BootstrapPlan | None = None,
    context: str = "",
) -> dict[str, float]:
    """The eight metrics at ``threshold`` (``y_pred = y_prob >= threshold``) with CIs.

    Returns, for each ``m`` in :data:`METRICS`, ``m``, ``m_ci_low``, ``m_ci_high``; plus
    ``n_beats, n_patients, n_positive, n_negative, tp, fp, tn, fn``. A given ``plan`` (built on
    the same patients) replaces ``n_bootstrap``/``seed``, so several models meet the same
    resamples; ``n_bootstrap=0`` skips the bootstrap (its CIs are NaN). ``context`` prefixes
    the logged reasons (e.g. ``"test"``).
    """
    truth = as_labels(y_true)
    scores = as_probabilities(y_prob)
    ids = as_ids(patient_ids)
    check_same_length(y_true=truth, y_prob=scores, patient_ids=ids)
    level = check_level(level)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise EcgmlError(f"threshold={threshold} must be a finite number")
    if truth.size == 0:
        return empty_metrics(context)
    pred = (scores >= threshold).astype(np.int8)
    patients, strata, _ = patient_labels(ids, truth)

    point = point_metrics(truth, scores, pred, context)
    c = confusion_counts(truth, pred)
    out: dict[str, float] = {}
    for name, (successes, total, _) in proportion_counts(c).items():
        out[name] = point[name]
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = wilson_interval(successes, total, level)
    for name, (low, high) in _bootstrap_cis(
        point, ids, truth, scores, pred, n_bootstrap, seed, level, plan, context
    ).items():
        out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = point[name], low, high
    metrics = {key: out[key] for m in METRICS for key in (m, f"{m}_ci_low", f"{m}_ci_high")}
    metrics.update(
        n_beats=truth.size,
        n_patients=patients.size,
        n_positive=int(truth.sum()),
        n_negative=int(truth.size - truth.sum()),
        **c,
    )
    log.debug("%s: %d patients (%d positive)", context, patients.size, int(strata.sum()))
    return metrics


def empty_metrics(context: str = "") -> dict[str, float]:
    """The :func:`compute_metrics` keys for no predictions at all: NaN metrics, zero counts."""
    log.warning("%sno predictions: every metric is NaN", f"{context}: " if context else "")
    metrics = {key: math.nan for m in METRICS for key in (m, f"{m}_ci_low", f"{m}_ci_high")}
    metrics.update(dict.fromkeys(COUNT_KEYS, 0))
    return metrics


def _bootstrap_cis(
    point: dict[str, float],
    ids: np.ndarray,
    truth: np.ndarray,
    scores: np.ndarray,
    pred: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float,
    plan: BootstrapPlan | None,
    context: str,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of AUROC, F1 and MCC; NaN where the point value is undefined."""
    nan = (math.nan, math.nan)
    if all(math.isnan(point[name]) for name in BOOTSTRAPPED):
        return dict.fromkeys(BOOTSTRAPPED, nan)
    if plan is None:
        if int(n_bootstrap) == 0:
            log.info("%s: n_bootstrap=0, bootstrap CIs are NaN", context)
            return dict.fromkeys(BOOTSTRAPPED, nan)
        plan = patient_bootstrap_indices(ids, truth, n_resamples=n_bootstrap, seed=seed)
    distributions = bootstrap_metrics(plan, ids, truth, scores, pred)
    prefix = f"{context}: " if context else ""
    return {
        name: nan
        if math.isnan(point[name])
        else percentile_interval(distributions[name], level, f"{prefix}{name}")
        for name in BOOTSTRAPPED
    }
