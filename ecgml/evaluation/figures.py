"""Evaluation figures: ROC with a bootstrap CI band, precision–recall, confusion matrix with
counts and row percentages (as the study's Figure 4), calibration.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot): nothing is
registered globally, so nothing leaks and nothing needs closing; saving uses Agg. Each function
draws on ``ax`` when given (e.g. several ROC curves on one axes, as the study's Figure 3) and
returns the figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ecgml.evaluation._checks import as_ids, as_labels, as_probabilities, check_same_length
from ecgml.evaluation.bootstrap import (
    BootstrapPlan,
    bootstrap_auroc,
    bootstrap_pr_band,
    bootstrap_roc_band,
    patient_bootstrap_indices,
)
from ecgml.evaluation.intervals import percentile_interval

DEFAULT_CLASS_NAMES = ("Normal", "Disorder")
_FIGSIZE = (5.0, 4.5)


def _figure_of(ax: Axes) -> Figure:
    figure = ax.get_figure(root=True)
    if not isinstance(figure, Figure):
        raise ValueError("the axes belong to no figure")
    return figure


def _axes(ax: Axes | None, figsize: tuple[float, float] = _FIGSIZE) -> tuple[Figure, Axes]:
    if ax is not None:
        return _figure_of(ax), ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _both_classes(truth: np.ndarray) -> bool:
    return 0 < int(truth.sum()) < truth.size


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.3")


#: Vector copies written beside every raster figure (journals ask for vector art).
VECTOR_FORMATS = (".svg",)


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` as an image (format from the suffix), creating the folder, and a vector copy
    (SVG) beside a PNG. The bounding box is fitted to every artist, so long titles and text
    beside the axes are never clipped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if path.suffix.lower() == ".png":
        for suffix in VECTOR_FORMATS:
            fig.savefig(path.with_suffix(suffix), bbox_inches="tight")
    return path


def _resamples(
    truth: np.ndarray,
    patient_ids: npt.ArrayLike | None,
    plan: BootstrapPlan | None,
    n_bootstrap: int,
    seed: int,
) -> tuple[np.ndarray, BootstrapPlan] | None:
    """The patient ids and the patient-level resamples a curve's band is drawn from: ``plan``,
    else ``n_bootstrap`` new ones; None without ids or resamples (no band)."""
    if patient_ids is None or (plan is None and n_bootstrap <= 0):
        return None
    ids = as_ids(patient_ids)
    check_same_length(y_true=truth, patient_ids=ids)
    if plan is None:
        plan = patient_bootstrap_indices(ids, truth, n_resamples=n_bootstrap, seed=seed)
    return ids, plan


def plot_roc(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    patient_ids: npt.ArrayLike | None = None,
    *,
    plan: BootstrapPlan | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    label: str = "",
    title: str = "",
    color: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """ROC curve with its AUROC; with ``patient_ids`` (or a ``plan``) also the AUROC's
    patient-level bootstrap CI in the legend and a pointwise percentile band of the curve."""
    truth, scores = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=truth, y_prob=scores)
    fig, ax = _axes(ax)
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 − specificity (FPR)")
    ax.set(ylabel="Sensitivity (TPR)", title=title or "ROC curve")
    if not _both_classes(truth):
        _note(ax, "ROC undefined: one class only")
        return fig
    fpr, tpr, _ = roc_curve(truth, scores)
    auroc = float(roc_auc_score(truth, scores))
    text = f"AUROC {auroc:.2f}"
    band = None
    resampled = _resamples(truth, patient_ids, plan, n_bootstrap, seed)
    if resampled is not None:
        ids, plan = resampled
        low, high = percentile_interval(bootstrap_auroc(plan, ids, truth, scores), level, "auroc")
        text += f" ({level:.0%} CI {low:.2f}–{high:.2f})"
        band = bootstrap_roc_band(plan, ids, truth, scores, level=level)
    (line,) = ax.plot(fpr, tpr, lw=2, color=color, label=f"{label}: {text}" if label else text)
    if band is not None:
        grid, low_band, high_band = band
        ax.fill_between(grid, low_band, high_band, color=line.get_color(), alpha=0.2, lw=0)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_pr(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    patient_ids: npt.ArrayLike | None = None,
    *,
    plan: BootstrapPlan | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    label: str = "",
    title: str = "",
    color: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Precision–recall curve with its average precision and the prevalence baseline; with
    ``patient_ids`` (or a ``plan``) also a pointwise patient-bootstrap band of the
    (interpolated) precision."""
    truth, scores = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=truth, y_prob=scores)
    fig, ax = _axes(ax)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    ax.set_title(title or "Precision–recall curve")
    if not _both_classes(truth):
        _note(ax, "PR curve undefined: one class only")
        return fig
    precision, recall, _ = precision_recall_curve(truth, scores)
    ap = float(average_precision_score(truth, scores))
    text = f"AP {ap:.2f}"
    (line,) = ax.step(
        recall,
        precision,
        where="post",
        lw=2,
        color=color,
        label=f"{label}: {text}" if label else text,
    )
    resampled = _resamples(truth, patient_ids, plan, n_bootstrap, seed)
    if resampled is not None:
        ids, plan = resampled
        grid, low, high = bootstrap_pr_band(plan, ids, truth, scores, level=level)
        ax.fill_between(
            grid, low, high, color=line.get_color(), alpha=0.2, lw=0, label=f"{level:.0%} band"
        )
    prevalence = float(truth.mean())
    ax.axhline(prevalence, ls=":", color="0.6", lw=1, label=f"prevalence {prevalence:.2f}")
    ax.legend(loc="lower left", fontsize="small")
    return fig


def plot_confusion(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    class_names: tuple[str, str] = DEFAULT_CLASS_NAMES,
    title: str = "",
    cmap: str = "Blues",
    ax: Axes | None = None,
) -> Figure:
    """2×2 confusion matrix; each cell shows the count n and its row percentage."""
    truth, pred = as_labels(y_true), as_labels(y_pred, "y_pred")
    check_same_length(y_true=truth, y_pred=pred)
    counts = np.array([[np.sum((truth == t) & (pred == p)) for p in (0, 1)] for t in (0, 1)])
    row_totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        row_pct = np.where(row_totals > 0, 100.0 * counts / row_totals, np.nan)
    fig, ax = _axes(ax, (4.5, 4.0))
    ax.imshow(np.nan_to_num(row_pct), cmap=cmap, vmin=0, vmax=100)
    for t in (0, 1):
        for p in (0, 1):
            pct = "n/a" if np.isnan(row_pct[t, p]) else f"{row_pct[t, p]:.1f}%"
            dark = not np.isnan(row_pct[t, p]) and row_pct[t, p] > 50
            ax.text(
                p,
                t,
                f"n = {counts[t, p]}\n({pct})",
                ha="center",
                va="center",
                color="white" if dark else "black",
            )
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=class_names, yticklabels=class_names)
    ax.set(xlabel="Predicted", ylabel="True", title=title or "Confusion matrix")
    return fig


def plot_calibration(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    *,
    n_bins: int = 10,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Reliability diagram (observed fraction positive per bin of predicted probability) with
    the histogram of predictions underneath."""
    truth, scores = as_labels(y_true), as_probabilities(y_prob)
    check_same_length(y_true=truth, y_prob=scores)
    if ax is None:
        fig = Figure(figsize=(5.0, 5.5), layout="constrained")
        ax, hist_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        fig, hist_ax = _figure_of(ax), None
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1, label="perfectly calibrated")
    if truth.size:
        observed, predicted = calibration_curve(truth, scores, n_bins=n_bins, pos_label=1)
        ax.plot(predicted, observed, marker="o", lw=2, label="model")
    else:
        _note(ax, "no predictions")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="Observed fraction positive")
    ax.set_title(title or "Calibration")
    ax.legend(loc="upper left", fontsize="small")
    if hist_ax is not None:
        hist_ax.hist(scores, bins=n_bins, range=(0, 1), color="0.5")
        hist_ax.set(xlabel="Predicted probability", ylabel="Beats")
    else:
        ax.set_xlabel("Predicted probability")
    return fig
