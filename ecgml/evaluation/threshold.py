"""Decision thresholds chosen on validation predictions (``y_pred = y_prob >= threshold``)."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_curve

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_labels, as_probabilities, check_same_length

log = logging.getLogger(__name__)

THRESHOLD_RULES = ("fixed", "youden", "sensitivity")


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
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    if rule == "youden":
        index = int(np.argmax(tpr - fpr))
    else:
        index = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    return _finite(float(thresholds[index]), scores)


def _finite(threshold: float, scores: np.ndarray) -> float:
    """sklearn's first ROC threshold is +inf (predict nothing positive); keep it finite."""
    if np.isfinite(threshold):
        return threshold
    above_all = float(np.nextafter(scores.max(), np.inf))
    log.warning("chosen threshold predicts no positives; using %.6g (above every score)", above_all)
    return above_all
