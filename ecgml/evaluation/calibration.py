"""Post-hoc recalibration and calibration metrics (Van Calster's calibration hierarchy).

A :class:`Calibrator` is fitted on the validation beats and maps a model's probability to a
recalibrated one: temperature scaling (one parameter, monotone: AUROC unchanged), Platt scaling
(logistic regression on the logit) or isotonic regression (overfits small validation sets).
Metrics: Brier score, expected calibration error (torchmetrics' binary L1 definition), the
calibration slope (``b`` in ``y ~ a + b·logit(p)``) and the calibration intercept
(calibration-in-the-large: ``a`` in ``y ~ a + offset(logit(p))``). Probabilities are clipped to
[1e-6, 1 − 1e-6] before any logit. Bootstrap CIs are vectorized over the resamples of a
:class:`~ecgml.evaluation.bootstrap.BootstrapPlan` (a weighted Newton–Raphson for the slopes).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from statsmodels.nonparametric.smoothers_lowess import lowess

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_labels, as_probabilities, check_same_length
from ecgml.evaluation.bootstrap import BootstrapPlan, _chunks, patient_bootstrap_indices
from ecgml.evaluation.calibrator import CALIBRATION_METHODS, EPS, Calibrator, clipped_logit
from ecgml.evaluation.figures import _axes, _both_classes, _note
from ecgml.evaluation.intervals import percentile_interval

log = logging.getLogger(__name__)

ISOTONIC_MIN_BEATS = 1000
CALIBRATION_METRICS = ("brier", "ece", "calibration_slope", "calibration_intercept")


def check_calibration_method(method: str, n_val_beats: int | None = None) -> str:
    method = str(method)
    if method not in CALIBRATION_METHODS:
        raise EcgmlError(
            f"evaluation.calibration={method!r} is not one of {list(CALIBRATION_METHODS)}: "
            "use e.g. evaluation.calibration=temperature"
        )
    if method == "isotonic" and n_val_beats is not None and n_val_beats < ISOTONIC_MIN_BEATS:
        log.warning(
            "calibration=isotonic on %d validation beats (< %d) overfits: prefer temperature",
            n_val_beats,
            ISOTONIC_MIN_BEATS,
        )
    return method


def _fit_temperature(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    def nll(log_t: float) -> float:
        q = np.clip(expit(z / math.exp(log_t)), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    best = minimize_scalar(nll, bounds=(-5.0, 5.0), method="bounded")
    return {"temperature": float(math.exp(best.x))}


def _fit_platt(y: np.ndarray, z: np.ndarray) -> dict[str, float]:
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(z[:, None], y)
    return {"a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0])}


def _fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    fit = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    return {"x": fit.X_thresholds_.tolist(), "y": fit.y_thresholds_.tolist()}


def fit_calibrator(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, method: str = "temperature"
) -> Calibrator:
    """Fit ``method`` on validation beats; a one-class set gives ``none`` with a logged note."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    method = check_calibration_method(method, y.size)
    if method == "none":
        return Calibrator("none")
    if not _both_classes(y):
        note = (
            f"validation split has only one class (n positive = {int(y.sum())} of {y.size} "
            "beats): calibration cannot be fitted, probabilities left as the model's"
        )
        log.warning("calibration=%s: %s", method, note)
        return Calibrator("none", note=note)
    if method == "temperature":
        params: dict[str, Any] = _fit_temperature(y, clipped_logit(p))
    elif method == "platt":
        params = _fit_platt(y, clipped_logit(p))
    else:
        params = _fit_isotonic(y, p)
    return Calibrator(method, params, int(y.size))


# --------------------------------------------------------------------------- metrics


def _weighted_ece(w: np.ndarray, y: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE per row of weights ``w`` (R, n): torchmetrics' binary L1 binning (confidence = p)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, n_bins - 1)
    onehot = np.zeros((p.size, n_bins))
    onehot[np.arange(p.size), bins] = 1.0
    total = w.sum(axis=1, keepdims=True)
    count, acc, conf = w @ onehot, (w * y) @ onehot, (w * p) @ onehot
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(count > 0, np.abs(acc - conf) / np.where(count > 0, count, 1), 0.0)
        return np.sum(gap * count, axis=1) / total[:, 0]


#: Newton's stopping step.
_NEWTON_TOL = 1e-9


def _newton_logistic(
    w: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    slope_free: bool,
    iterations: int = 50,
    start: tuple[float, float] | None = None,
) -> np.ndarray:
    """Weighted logistic fits for every row of ``w``: slope ``b`` of ``a + b·z`` when
    ``slope_free`` else intercept ``a`` of ``a + offset(z)``; NaN where it does not converge.
    ``start``: the ``(a, b)`` every row starts from (a bootstrap starts from the full sample's
    fit, a few steps from each resample's)."""
    a, b = _newton_fit(w, y, z, slope_free, iterations, start)
    return _converged(b if slope_free else a, w, y, z, slope_free)


def _converged(
    out: np.ndarray, w: np.ndarray, y: np.ndarray, z: np.ndarray, slope_free: bool
) -> np.ndarray:
    """``out`` (one fitted value per row of ``w``), NaN where the fit has no finite answer."""
    bad = ~np.isfinite(out) | (np.abs(out) > 50) | ~_rows_have_both(w, y)
    if slope_free:  # no finite slope exists for separated scores, however far Newton got
        bad |= _rows_separated(w, y, z)
    return np.where(bad, np.nan, out)


def _newton_fit(
    w: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    slope_free: bool,
    iterations: int = 50,
    start: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Newton's ``(a, b)`` per row of ``w`` (unchecked: :func:`_newton_logistic` masks them)."""
    r = w.shape[0]
    # by default start at b = 0 (slope free): Newton from the null model converges for the
    # logistic likelihood; from b = 1 it overshoots on over-confident logits
    a0, b0 = start if start is not None else (0.0, 0.0 if slope_free else 1.0)
    a, b = np.full(r, a0), np.full(r, b0)
    for _ in range(iterations):
        q = expit(a[:, None] + b[:, None] * z[None, :])
        resid, v = w * (y - q), w * q * (1 - q)
        if slope_free:
            g0, g1 = resid.sum(1), resid @ z
            h00, h01, h11 = v.sum(1), v @ z, v @ (z * z)
            det = h00 * h11 - h01**2
            with np.errstate(divide="ignore", invalid="ignore"):
                da, db = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                da, db = resid.sum(1) / v.sum(1), np.zeros(r)
        a, b = a + np.clip(da, -2, 2), b + np.clip(db, -2, 2)
        moving = (np.abs(da) >= _NEWTON_TOL) | (np.abs(db) >= _NEWTON_TOL)
        runaway = (np.abs(a) > 50) | (np.abs(b) > 50)  # NaN in the end, whatever comes next
        if not (moving & ~runaway).any():
            break
    return a, b


def _rows_separated(w: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per row of weights: every weighted positive scores above every weighted negative."""
    present = w > 0
    positive, negative = present & (y[None, :] > 0.5), present & (y[None, :] <= 0.5)
    low_pos = np.where(positive, z[None, :], np.inf).min(axis=1)
    high_neg = np.where(negative, z[None, :], -np.inf).max(axis=1)
    return high_neg < low_pos


def perfectly_separated(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> bool:
    """True when every positive scores above every negative (AUROC 1): the calibration slope is
    then undefined and left out. The one definition the evaluation and its tests share."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    weights = np.ones((1, y.size))
    return bool(_rows_separated(weights, y.astype(float), clipped_logit(p))[0])


def _rows_have_both(w: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = w @ y
    return (pos > 0) & (pos < w.sum(axis=1))


def _weighted_metrics(
    w: np.ndarray, y: np.ndarray, p: np.ndarray, n_bins: int, fits: _Fits | None = None
) -> dict:
    """The calibration metrics for every row of weights ``w``; ``fits``: where the bootstrap's
    logistic fits start (the full sample's)."""
    yf, z = y.astype(float), clipped_logit(p)
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        brier = (w @ (p - yf) ** 2) / total
    slope_start, intercept_start = (fits.slope, fits.intercept) if fits else (None, None)
    return {
        "brier": brier,
        "ece": _weighted_ece(w, yf, p, n_bins),
        "calibration_slope": _newton_logistic(w, yf, z, True, start=slope_start),
        "calibration_intercept": _newton_logistic(w, yf, z, False, start=intercept_start),
    }


@dataclass(frozen=True)
class _Fits:
    """The full sample's ``(a, b)`` of each logistic fit: where every resample's fit starts."""

    slope: tuple[float, float] | None
    intercept: tuple[float, float] | None

    @classmethod
    def of(cls, y: np.ndarray, z: np.ndarray) -> _Fits:
        ones = np.ones((1, y.size))
        return cls(_full_fit(ones, y, z, True), _full_fit(ones, y, z, False))


def _full_fit(
    w: np.ndarray, y: np.ndarray, z: np.ndarray, slope_free: bool
) -> tuple[float, float] | None:
    """``(a, b)`` of the one-row fit (None when it has none: a resample then starts from the
    null model)."""
    a, b = _newton_fit(w, y, z, slope_free)
    if not np.isfinite(_converged(b if slope_free else a, w, y, z, slope_free)[0]):
        return None
    return float(a[0]), float(b[0])


def calibration_metrics(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 15
) -> dict[str, float]:
    """Brier, ECE, calibration slope and intercept of one set of beats (NaN when undefined)."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=y, y_prob=p)
    if y.size == 0:
        return dict.fromkeys(CALIBRATION_METRICS, math.nan)
    values = _weighted_metrics(np.ones((1, y.size)), y, p, n_bins)
    return {k: float(v[0]) for k, v in values.items()}


def bootstrap_calibration_metrics(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    n_bins: int = 15,
) -> dict[str, np.ndarray]:
    """Each calibration metric for every resample of ``plan`` (arrays of n_resamples)."""
    y, p = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(patient_ids=patient_ids, y_true=y, y_prob=p)
    cols = plan.columns(patient_ids)
    out = {k: np.empty(plan.n_resamples) for k in CALIBRATION_METRICS}
    fits = _Fits.of(y.astype(float), clipped_logit(p))
    for chunk in _chunks(plan.n_resamples, max(y.size, 1) * max(n_bins, 8)):
        w = plan.counts[chunk][:, cols].astype(float)
        values = _weighted_metrics(w, y, p, n_bins, fits)
        for k, v in values.items():
            out[k][chunk] = v
    return out


def calibration_with_ci(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
    plan: BootstrapPlan | None,
    level: float = 0.95,
    n_bins: int = 15,
) -> dict[str, float]:
    """``m``, ``m_ci_low``, ``m_ci_high`` for each calibration metric (CIs NaN without a plan)."""
    point = calibration_metrics(y_true, y_prob, n_bins)
    out: dict[str, float] = {}
    spread = (
        bootstrap_calibration_metrics(plan, patient_ids, y_true, y_prob, n_bins) if plan else {}
    )
    for m in CALIBRATION_METRICS:
        low, high = percentile_interval(spread[m], level, m) if plan else (math.nan, math.nan)
        out.update({m: point[m], f"{m}_ci_low": low, f"{m}_ci_high": high})
    return out


# --------------------------------------------------------------------------- figure

_GRID = np.linspace(0.02, 0.98, 49)


def _smoothed(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """LOWESS of the outcome on the probability, fitted at the grid's points only (NaN outside
    the probabilities' range): its cost grows with the points times the grid, where a fit at
    every point grows with their square (minutes per band at 20,000 test records)."""
    fit = lowess(y.astype(float), p, frac=0.6, it=0, xvals=_GRID)
    grid = _GRID
    inside = (grid >= p.min()) & (grid <= p.max())
    return np.where(inside, np.clip(fit, 0, 1), np.nan)


def _band(y: np.ndarray, p: np.ndarray, ids: np.ndarray, n: int, level: float, seed: int):
    plan = patient_bootstrap_indices(ids, y, n, seed)
    cols = plan.columns(ids)
    curves = []
    for counts in plan.counts:
        idx = np.repeat(np.arange(y.size), counts[cols])
        if _both_classes(y[idx]) and np.unique(p[idx]).size > 3:
            curves.append(_smoothed(y[idx], p[idx]))
    if not curves:
        return None
    tail = (1 - level) / 2
    with warnings.catch_warnings():  # grid points outside every resample's range stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(np.array(curves), [tail, 1 - tail], axis=0)


def plot_reliability(
    y_true: npt.ArrayLike,
    y_prob_raw: npt.ArrayLike,
    y_prob_calibrated: npt.ArrayLike,
    patient_ids: npt.ArrayLike,
    n_bins: int = 10,
    n_band_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Reliability diagram, the model's own vs recalibrated probabilities: binned points, a
    LOWESS curve with a patient-bootstrap band, and each one's ECE in the legend; on its own
    figure, the histogram of both predictions underneath (where the curve has data)."""
    y = as_labels(y_true)
    ids = np.asarray(patient_ids).astype(str)
    series = (
        ("model's own", as_probabilities(y_prob_raw), "tab:red"),
        ("recalibrated", as_probabilities(y_prob_calibrated), "tab:blue"),
    )
    hist_ax: Axes | None = None
    if ax is None:
        fig = Figure(figsize=(5.0, 5.8), layout="constrained")
        ax, hist_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        fig, ax = _axes(ax)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfect")
    if not _both_classes(y):
        _note(ax, "one class only: calibration undefined")
    else:
        for name, scores, color in series:
            ece = calibration_metrics(y, scores)["ece"]
            edges = np.linspace(0, 1, n_bins + 1)
            which = np.clip(np.digitize(scores, edges) - 1, 0, n_bins - 1)
            used = np.unique(which)
            mean_p = [scores[which == b].mean() for b in used]
            frac = [y[which == b].mean() for b in used]
            ax.plot(mean_p, frac, "o", color=color, ms=4, alpha=0.7)
            if np.unique(scores).size > 3:
                ax.plot(_GRID, _smoothed(y, scores), color=color, label=f"{name} (ECE {ece:.3f})")
                band = _band(y, scores, ids, n_band_resamples, level, seed)
                if band is not None:
                    ax.fill_between(_GRID, band[0], band[1], color=color, alpha=0.15, lw=0)
        ax.legend(loc="upper left", fontsize=8)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        ylabel="Observed fraction with the disorder",
        title=title or "Calibration",
    )
    if hist_ax is None:
        ax.set_xlabel("Predicted probability")
        return fig
    for name, scores, color in series:
        hist_ax.hist(scores, bins=20, range=(0, 1), histtype="step", color=color, label=name)
    hist_ax.set(xlabel="Predicted probability", ylabel="Test beats")
    return fig
