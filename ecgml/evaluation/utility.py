"""Clinical utility: decision curves (Vickers' net benefit), PPV/NPV at a real prevalence and
operating points at fixed sensitivities.

The study's test sets are near-balanced, clinics are not: at 1% prevalence a test with 80%
sensitivity and specificity has a PPV of 3.9% (Bayes' rule), which is what the Mayo
hyperkalemia AI-ECG met in its emergency department. Net benefit at threshold probability
``pt`` is ``TP/n − FP/n · pt/(1 − pt)`` (treating ``p ≥ pt`` as positive). CIs come from the
run's patient-level bootstrap plan.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import (
    as_labels,
    as_probabilities,
    check_same_length,
    open_fraction,
)
from ecgml.evaluation.bootstrap import BootstrapPlan, _chunks, bootstrap_confusion
from ecgml.evaluation.figures import _axes, _both_classes, _note
from ecgml.evaluation.intervals import percentile_interval, wilson_interval
from ecgml.evaluation.threshold import choose_threshold

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)
#: The threshold probabilities a decision curve is drawn over by default: a clinician acts on
#: an electrolyte disorder well below even odds, so 1–50 % (Vickers et al.: show only the
#: clinically plausible range).
DEFAULT_DECISION_RANGE = (0.01, 0.5)


def decision_grid(low: float, high: float, step: float = 0.01) -> np.ndarray:
    """Threshold probabilities from ``low`` to ``high`` (both included) every ``step``."""
    n = round((high - low) / step)
    return np.round(np.linspace(low, low + n * step, n + 1), 4)


DEFAULT_PREVALENCES = (0.01, 0.05, 0.2)
DEFAULT_SENSITIVITIES = (0.90, 0.95)


def check_prevalences(prevalences: Sequence[float] | None) -> tuple[float, ...]:
    out = []
    for p in prevalences or ():
        value = open_fraction(p)
        if value is None:
            raise EcgmlError(
                f"evaluation.prevalence={p} is not in (0, 1): give prevalences as fractions, "
                "e.g. evaluation.prevalence=[0.01,0.05,0.2]"
            )
        out.append(value)
    return tuple(out)


def prevalence_key(p: float) -> str:
    return f"{float(p):g}"


def _odds(thresholds: npt.ArrayLike) -> np.ndarray:
    t = np.asarray(thresholds, dtype=float)
    if ((t <= 0) | (t >= 1)).any():
        raise EcgmlError("decision-curve thresholds must lie strictly in (0, 1)")
    return t / (1.0 - t)


def net_benefit(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, thresholds: npt.ArrayLike
) -> np.ndarray:
    """Net benefit of treating ``y_prob >= pt`` as positive, for each threshold ``pt``."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    t = np.asarray(thresholds, dtype=float)
    positive = p[None, :] >= t[:, None]
    tp = (positive & (y == 1)).sum(axis=1)
    fp = (positive & (y == 0)).sum(axis=1)
    return tp / max(y.size, 1) - fp / max(y.size, 1) * _odds(t)


def net_benefit_treat_all(y_true: npt.ArrayLike, thresholds: npt.ArrayLike) -> np.ndarray:
    prevalence = float(np.mean(as_labels(y_true))) if np.size(y_true) else math.nan
    return prevalence - (1.0 - prevalence) * _odds(thresholds)


def bootstrap_net_benefit(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    thresholds: npt.ArrayLike,
) -> np.ndarray:
    """Net benefit for every resample (rows) and threshold (columns)."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(patient_ids=patient_ids, y_true=y, y_prob=p)
    t = np.asarray(thresholds, dtype=float)
    cols = plan.columns(patient_ids)
    positive = (p[:, None] >= t[None, :]).astype(float)
    out = np.empty((plan.n_resamples, t.size))
    for chunk in _chunks(plan.n_resamples, y.size):
        w = plan.counts[chunk][:, cols].astype(float)
        n = w.sum(axis=1, keepdims=True)
        tp, fp = (w * (y == 1)) @ positive, (w * (y == 0)) @ positive
        out[chunk] = tp / n - fp / n * _odds(t)[None, :]
    return out


def decision_curve(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    thresholds: npt.ArrayLike = DEFAULT_THRESHOLDS,
    patient_ids: npt.ArrayLike | None = None,
    plan: BootstrapPlan | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """The decision curve: model vs treat-all vs treat-none, with a bootstrap band."""
    t = np.asarray(thresholds, dtype=float)
    model = net_benefit(y_true, y_prob, t)
    low = high = np.full(t.size, np.nan)
    if plan is not None and patient_ids is not None:
        spread = bootstrap_net_benefit(plan, patient_ids, y_true, y_prob, t)
        tail = (1 - level) / 2
        with warnings.catch_warnings():  # no beats in a resample: NaN, not an error
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanquantile(spread, [tail, 1 - tail], axis=0)
    treat_all = net_benefit_treat_all(y_true, t)
    prevalence = float(np.mean(as_labels(y_true))) if len(t) else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        standardized = model / prevalence if prevalence > 0 else np.full(t.size, np.nan)
    return pd.DataFrame(
        {
            "threshold": t,
            "net_benefit_model": model,
            "net_benefit_model_ci_low": low,
            "net_benefit_model_ci_high": high,
            "net_benefit_all": treat_all,
            "net_benefit_none": np.zeros(t.size),
            "standardized_net_benefit": standardized,
            "useful": model > np.maximum(treat_all, 0.0) + 1e-12,
        }
    )


def decision_curve_summary(curve: pd.DataFrame) -> str:
    """One sentence: the threshold probabilities where the model beats both defaults."""
    useful = curve.loc[curve["useful"].astype(bool), "threshold"]
    if useful.empty:
        return "net benefit above treat-all and treat-none at no threshold probability"
    return (
        "net benefit above treat-all and treat-none for threshold probabilities "
        f"{useful.min():.2f}–{useful.max():.2f} ({useful.size} of {len(curve)} grid points)"
    )


def plot_decision_curve(curve: pd.DataFrame, title: str = "", ax: Axes | None = None) -> Figure:
    fig, ax = _axes(ax)
    if curve.empty or not np.isfinite(curve["net_benefit_model"]).any():
        _note(ax, "no decision curve (no test beats)")
        return fig
    t = curve["threshold"]
    ax.plot(t, curve["net_benefit_model"], color="tab:blue", label="model")
    if np.isfinite(curve["net_benefit_model_ci_low"]).any():
        ax.fill_between(
            t,
            curve["net_benefit_model_ci_low"],
            curve["net_benefit_model_ci_high"],
            color="tab:blue",
            alpha=0.15,
            lw=0,
        )
    ax.plot(t, curve["net_benefit_all"], color="0.4", ls="--", label="treat all")
    ax.axhline(0.0, color="0.2", lw=1, label="treat none")
    top = max(float(np.nanmax(curve[["net_benefit_model", "net_benefit_all"]].to_numpy())), 0.05)
    ax.set(
        xlim=(0, 1),
        ylim=(-0.05, top * 1.1),
        xlabel="Threshold probability",
        ylabel="Net benefit",
        title=title or "Decision curve",
    )
    ax.legend(loc="upper right", fontsize=8)
    return fig


def ppv_npv_at_prevalence(
    sensitivity: npt.ArrayLike, specificity: npt.ArrayLike, prevalence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bayes' rule: PPV = se·π / (se·π + (1−sp)(1−π)), NPV = sp(1−π) / (sp(1−π) + (1−se)π)."""
    se, sp, pi = np.asarray(sensitivity, float), np.asarray(specificity, float), float(prevalence)
    with np.errstate(divide="ignore", invalid="ignore"):
        ppv = se * pi / (se * pi + (1 - sp) * (1 - pi))
        npv = sp * (1 - pi) / (sp * (1 - pi) + (1 - se) * pi)
    return ppv, npv


def _rates(tp, fp, tn, fn) -> tuple[np.ndarray, np.ndarray]:
    tp, fp, tn, fn = (np.asarray(a, float) for a in (tp, fp, tn, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / (tp + fn), tn / (tn + fp)


def prevalence_metrics(
    plan: BootstrapPlan | None,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    prevalences: Sequence[float],
    level: float = 0.95,
) -> dict[str, float]:
    """``ppv_at_<p>`` / ``npv_at_<p>`` (+ CIs) for each prevalence.

    CIs: percentile intervals of Bayes' rule over the plan's resamples; without a plan, from the
    Wilson bounds of sensitivity and specificity (PPV and NPV are monotone in both).
    """
    y, pred = as_labels(y_true), as_labels(y_pred, "y_pred")
    tp, fn = int(((y == 1) & (pred == 1)).sum()), int(((y == 1) & (pred == 0)).sum())
    tn, fp = int(((y == 0) & (pred == 0)).sum()), int(((y == 0) & (pred == 1)).sum())
    se, sp = _rates(tp, fp, tn, fn)
    if plan is not None:
        c = bootstrap_confusion(plan, patient_ids, y, pred)
        se_r, sp_r = _rates(c["tp"], c["fp"], c["tn"], c["fn"])
    else:
        se_b, sp_b = wilson_interval(tp, tp + fn, level), wilson_interval(tn, tn + fp, level)
    out: dict[str, float] = {}
    for p in check_prevalences(prevalences):
        key = prevalence_key(p)
        ppv, npv = ppv_npv_at_prevalence(se, sp, p)
        if plan is not None:
            ppv_r, npv_r = ppv_npv_at_prevalence(se_r, sp_r, p)
            ppv_ci = percentile_interval(ppv_r, level, f"ppv_at_{key}")
            npv_ci = percentile_interval(npv_r, level, f"npv_at_{key}")
        else:
            lo, hi = ppv_npv_at_prevalence(
                np.array([se_b[0], se_b[1]]), np.array([sp_b[0], sp_b[1]]), p
            )
            ppv_ci, npv_ci = (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1]))
        for name, value, (low, high) in (("ppv", ppv, ppv_ci), ("npv", npv, npv_ci)):
            out[f"{name}_at_{key}"] = float(value)
            out[f"{name}_at_{key}_ci_low"], out[f"{name}_at_{key}_ci_high"] = low, high
    return out


def operating_points(
    val_true: npt.ArrayLike,
    val_prob: npt.ArrayLike,
    test_true: npt.ArrayLike,
    test_prob: npt.ArrayLike,
    test_patient_ids: npt.ArrayLike,
    plan: BootstrapPlan | None = None,
    sensitivities: Sequence[float] = DEFAULT_SENSITIVITIES,
    prevalences: Sequence[float] = DEFAULT_PREVALENCES,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per target sensitivity: the validation threshold reaching it and what it gives
    on the test beats (sensitivity, specificity with Wilson CIs; PPV/NPV at each prevalence)."""
    y_val, p_val = as_labels(val_true), as_probabilities(val_prob)
    y, p = as_labels(test_true), as_probabilities(test_prob)
    rows = []
    for target in sensitivities:
        if not _both_classes(y_val):
            rows.append({"target_sensitivity": float(target), "threshold": math.nan})
            continue
        threshold = choose_threshold(y_val, p_val, "sensitivity", 0.5, float(target))
        pred = (p >= threshold).astype(np.int8)
        tp, fn = int(((y == 1) & (pred == 1)).sum()), int(((y == 1) & (pred == 0)).sum())
        tn, fp = int(((y == 0) & (pred == 0)).sum()), int(((y == 0) & (pred == 1)).sum())
        se, sp = _rates(tp, fp, tn, fn)
        row = {
            "target_sensitivity": float(target),
            "threshold": float(threshold),
            "sensitivity": float(se),
            "specificity": float(sp),
        }
        for name, (k, n) in (("sensitivity", (tp, tp + fn)), ("specificity", (tn, tn + fp))):
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = wilson_interval(k, n, level)
        with np.errstate(divide="ignore", invalid="ignore"):
            row["ppv_observed"] = tp / (tp + fp) if tp + fp else math.nan
            row["npv_observed"] = tn / (tn + fn) if tn + fn else math.nan
        row.update(prevalence_metrics(plan, test_patient_ids, y, pred, prevalences, level))
        rows.append(row)
    return pd.DataFrame(rows)
