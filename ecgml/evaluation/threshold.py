"""Decision thresholds chosen on validation predictions (``y_pred = y_prob >= threshold``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.metrics import roc_curve

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_labels, as_probabilities, check_same_length
from ecgml.evaluation.bootstrap import patient_bootstrap_indices

log = logging.getLogger(__name__)

THRESHOLD_RULES = ("fixed", "youden", "sensitivity", "binormal")


def _check_unit(name: str, value: float, *, open_low: bool = False) -> float:
    value = float(value)
    low_ok = value > 0.0 if open_low else value >= 0.0
    if not (np.isfinite(value) and low_ok and value <= 1.0):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise EcgmlError(f"{name}={value} is not in {interval}: pass a probability")
    return value


def choose_threshold(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    rule: str = "youden",
    value: float = 0.5,
    target_sensitivity: float = 0.9,
) -> float:
    """The threshold for ``y_pred = y_prob >= threshold`` under ``rule``.

    - ``fixed``: ``value``.
    - ``youden``: the ROC point maximizing Youden's J = sensitivity + specificity - 1.
    - ``sensitivity``: the highest threshold whose sensitivity reaches ``target_sensitivity``
      (the most specific such point).
    - ``binormal``: Youden's point of the binormal ROC fitted to the scores (each class's
      logits a normal with their mean and SD): every validation row counts, not only the few
      at the empirical ROC's corner, so the threshold holds on new patients
      (``experiments/threshold_rules.py``). Fewer than two rows of a class, or a class with one
      score only: the empirical Youden point.

    With one class only the ROC is undefined: the rule falls back to ``value`` (logged).
    """
    if rule not in THRESHOLD_RULES:
        raise EcgmlError(f"threshold rule={rule!r} is unknown: use one of {list(THRESHOLD_RULES)}")
    value = _check_unit("threshold value", value)
    target_sensitivity = _check_unit("target_sensitivity", target_sensitivity, open_low=True)
    if rule == "fixed":
        return value
    truth = as_labels(y_true)
    scores = as_probabilities(y_prob)
    check_same_length(y_true=truth, y_prob=scores)
    n_pos = int(truth.sum())
    if n_pos == 0 or n_pos == truth.size:
        log.warning(
            "threshold rule %r needs both classes in the validation predictions "
            "(%d positive of %d); falling back to the fixed threshold %.3g",
            rule,
            n_pos,
            truth.size,
            value,
        )
        return value
    if rule == "binormal":
        fitted = binormal_youden(truth, scores)
        if fitted is not None:
            return fitted
        rule = "youden"
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    if rule == "youden":
        index = int(np.argmax(tpr - fpr))
    else:
        index = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    return _finite(float(thresholds[index]), scores)


#: Probabilities are clipped to this distance from 0 and 1 before their logit is taken.
_EPS = 1e-6


def binormal_youden(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """The probability at which the binormal ROC of ``scores`` (logits normal within each
    class) has its highest J = Φ((μ₁ − t)/σ₁) − Φ((μ₀ − t)/σ₀); None when a class has fewer
    than two rows or no spread."""
    z = logit(np.clip(scores, _EPS, 1 - _EPS))
    positive, negative = z[truth == 1], z[truth == 0]
    if min(positive.size, negative.size) < 2:
        return None
    m1, s1 = float(positive.mean()), float(positive.std(ddof=1))
    m0, s0 = float(negative.mean()), float(negative.std(ddof=1))
    if min(s1, s0) <= 0:
        return None
    reach = 4 * max(s1, s0)
    grid = np.linspace(min(m0, m1) - reach, max(m0, m1) + reach, 8001)
    j = norm.cdf((m1 - grid) / s1) - norm.cdf((m0 - grid) / s0)
    return float(expit(grid[int(np.argmax(j))]))


#: Validation patient resamples behind a threshold's interval.
INTERVAL_RESAMPLES = 200


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold chosen on validation, how much it moves when the validation patients are
    resampled, and how many positive patients it rests on."""

    value: float
    rule: str
    low: float
    high: float
    level: float
    positive_patients: int

    def text(self) -> str:
        """``threshold 0.712 (binormal on validation, 95% interval 0.640–0.780)``."""
        spread = (
            f", {self.level:.0%} interval {self.low:.3f}–{self.high:.3f}"
            if np.isfinite(self.low) and np.isfinite(self.high)
            else ""
        )
        return f"threshold {self.value:.3f} ({self.rule} on validation{spread})"

    def caution(self, min_positives: int) -> str:
        """Why the threshold may not hold, when it rests on fewer than ``min_positives``
        positive validation patients (empty otherwise)."""
        if self.positive_patients >= min_positives:
            return ""
        return (
            f"chosen on {self.positive_patients} positive validation patients (fewer than "
            f"{min_positives}): it may not hold on new patients"
        )

    def describe(self, min_positives: int) -> str:
        """:meth:`text` and, where there is one, :meth:`caution`."""
        return "; ".join(part for part in (self.text(), self.caution(min_positives)) if part)


def threshold_choice(
    val: pd.DataFrame,
    threshold: float,
    rule: str,
    value: float = 0.5,
    target_sensitivity: float = 0.9,
    seed: int = 0,
    level: float = 0.95,
) -> ThresholdChoice:
    """``threshold`` (chosen by ``rule`` on the validation rows ``val``: ``patient_id``,
    ``y_true``, ``y_prob``) with the percentile interval of the rule's threshold over
    :data:`INTERVAL_RESAMPLES` patient resamples of ``val`` (resamples lacking a class are
    skipped; ``fixed`` has none)."""
    truth = as_labels(val["y_true"])
    scores = as_probabilities(val["y_prob"])
    ids = val["patient_id"].astype(str).to_numpy()
    positives = int(np.unique(ids[truth == 1]).size)
    low = high = float("nan")
    if rule != "fixed" and positives and positives < np.unique(ids).size:
        plan = patient_bootstrap_indices(ids, truth, INTERVAL_RESAMPLES, seed)
        counts = plan.counts[:, plan.columns(ids)]
        points = []
        for weights in counts:
            rows = np.repeat(np.arange(truth.size), weights)
            if 0 < truth[rows].sum() < rows.size:
                points.append(
                    choose_threshold(truth[rows], scores[rows], rule, value, target_sensitivity)
                )
        if points:
            tail = (1 - level) / 2
            low, high = (float(q) for q in np.quantile(points, [tail, 1 - tail]))
    return ThresholdChoice(float(threshold), rule, low, high, level, positives)


def _finite(threshold: float, scores: np.ndarray) -> float:
    """sklearn's first ROC threshold is +inf (predict nothing positive); keep it finite."""
    if np.isfinite(threshold):
        return threshold
    above_all = float(np.nextafter(scores.max(), np.inf))
    log.warning("chosen threshold predicts no positives; using %.6g (above every score)", above_all)
    return above_all
