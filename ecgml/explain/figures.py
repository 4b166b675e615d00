"""Explain figures: class overlays (the study's Figure 5), example beats, saliency profiles.

Built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no backend needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ecgml.explain.regions import BOUNDARIES, REGIONS

CMAP = "magma_r"


def align_on_r(values: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, int]:
    """Shift rows so every R lands on one column (NaN fill); identity when R is common."""
    r = np.asarray(r, dtype=np.int64)
    if len(r) == 0 or (r == r[0]).all():
        return values.astype(float), int(r[0]) if len(r) else 0
    target = int(r.max())
    width = values.shape[1] + target - int(r.min())
    out = np.full((len(values), width), np.nan)
    for k, row in enumerate(values):
        shift = target - int(r[k])
        out[k, shift : shift + len(row)] = row
    return out, target


def _nanmean(values: np.ndarray) -> np.ndarray:
    counts = np.isfinite(values).sum(axis=0)
    return np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)


def saliency_band(
    ax: Axes, t_ms: np.ndarray, saliency: np.ndarray, y_range: tuple[float, float]
) -> Any:
    """The saliency as a coloured band behind the trace (0 = white, 1 = darkest)."""
    finite = np.isfinite(saliency)
    if not finite.any():
        return None
    image = np.ma.masked_invalid(saliency[None, :])
    return ax.imshow(
        image,
        aspect="auto",
        extent=(t_ms[0], t_ms[-1], *y_range),
        cmap=CMAP,
        vmin=0.0,
        vmax=1.0,
        alpha=0.55,
        origin="lower",
        interpolation="nearest",
        zorder=0,
    )


def _mark_regions(ax: Axes, bounds: Mapping[str, float], y_top: float) -> None:
    for k, region in enumerate(REGIONS):
        lo, hi = float(bounds[BOUNDARIES[k]]), float(bounds[BOUNDARIES[k + 1]])
        ax.axvline(lo, color="0.5", lw=0.6, ls=":", zorder=1)
        ax.text((lo + hi) / 2, y_top, region, ha="center", va="top", fontsize=7, color="0.3")
    ax.axvline(float(bounds[BOUNDARIES[-1]]), color="0.5", lw=0.6, ls=":", zorder=1)


def _y_range(trace: np.ndarray) -> tuple[float, float]:
    finite = trace[np.isfinite(trace)]
    if finite.size == 0:
        return -1.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.15 * max(hi - lo, 1e-3)
    return lo - pad, hi + 2 * pad


def overlay_figure(
    beats: np.ndarray,
    profiles: np.ndarray,
    r: np.ndarray,
    labels: np.ndarray,
    names: Mapping[Any, str],
    class_bounds: Mapping[Any, Mapping[str, float]],
    fs: float,
    path: Path,
    dpi: int = 120,
) -> Path:
    """Mean beat per class with its mean (mass-normalized) saliency as a coloured band."""
    classes = sorted(np.unique(labels))
    aligned_beats, r0 = align_on_r(np.where(np.isfinite(profiles), beats, np.nan), r)
    aligned_sal, _ = align_on_r(_mass_normalized(profiles), r)
    t_ms = (np.arange(aligned_beats.shape[1]) - r0) * 1000.0 / fs
    means = {c: _nanmean(aligned_sal[labels == c]) for c in classes}
    scale = max((np.nanmax(m) for m in means.values() if np.isfinite(m).any()), default=1.0)
    fig = Figure(figsize=(9, 2.6 * max(len(classes), 1)))
    axes = fig.subplots(max(len(classes), 1), 1, sharex=True, squeeze=False)
    image = None
    for ax, c in zip(axes[:, 0], classes, strict=True):
        trace = _nanmean(aligned_beats[labels == c])
        y_range = _y_range(trace)
        image = saliency_band(ax, t_ms, means[c] / scale, y_range) or image
        ax.plot(t_ms, trace, color="k", lw=1.2, zorder=2)
        if c in class_bounds:
            _mark_regions(ax, class_bounds[c], y_range[1])
        ax.set_ylim(*y_range)
        ax.set_ylabel("mV")
        ax.set_title(f"{names.get(c, c)} (n={int((labels == c).sum())}): mean beat and saliency")
    axes[-1, 0].set_xlabel("ms from R-peak")
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="mean saliency (relative)", shrink=0.8)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _mass_normalized(profiles: np.ndarray) -> np.ndarray:
    totals = np.nansum(profiles, axis=1, keepdims=True)
    return profiles / np.where(totals > 0, totals, 1.0)


def pick_examples(table: pd.DataFrame, per_class: int) -> list[int]:
    """Row positions: for each class, the most confident correct beats, then a wrong one."""
    picks: list[int] = []
    for label, part in table.groupby("y_true"):
        confidence = (
            (part["y_prob"] - 0.5).abs() if "y_prob" in part else pd.Series(0.0, part.index)
        )
        correct = part[part["y_pred"] == label] if "y_pred" in part else part
        wrong = part.drop(correct.index)
        chosen = list(confidence.loc[correct.index].sort_values(ascending=False).index[:per_class])
        if len(wrong) and len(chosen) >= per_class > 1:
            chosen[-1] = confidence.loc[wrong.index].idxmax()
        picks += [int(table.index.get_loc(i)) for i in chosen]
    return picks


def examples_figure(
    beats: np.ndarray,
    profiles: np.ndarray,
    r: np.ndarray,
    table: pd.DataFrame,
    rows: Sequence[int],
    names: Mapping[Any, str],
    fs: float,
    path: Path,
    dpi: int = 120,
) -> Path:
    """Individual beats (valid span only) with their own saliency as a coloured band."""
    n = max(len(rows), 1)
    n_cols = 2 if n > 1 else 1
    n_rows = int(np.ceil(n / n_cols))
    fig = Figure(figsize=(5 * n_cols, 2.2 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.axis("off")
    for ax, k in zip(axes.flat, rows, strict=False):
        valid = np.isfinite(profiles[k])
        t_ms = (np.flatnonzero(valid) - r[k]) * 1000.0 / fs
        trace = beats[k, valid]
        saliency = profiles[k, valid]
        saliency = saliency / saliency.max() if saliency.max() > 0 else saliency
        y_range = _y_range(trace)
        if len(t_ms):
            saliency_band(ax, t_ms, saliency, y_range)
            ax.plot(t_ms, trace, color="k", lw=1.0, zorder=2)
        row = table.iloc[k]
        verdict = "correct" if row.get("y_pred") == row["y_true"] else "wrong"
        ax.set_ylim(*y_range)
        ax.set_title(
            f"{names.get(row['y_true'], row['y_true'])} · {row.get('beat_id', k)} · "
            f"p={row.get('y_prob', np.nan):.2f} ({verdict})",
            fontsize=8,
        )
        ax.tick_params(labelsize=7)
    fig.supxlabel("ms from R-peak", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # long titles are never clipped
    return path


def profiles_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str,
    dpi: int = 120,
) -> Path:
    """Mean mass-normalized saliency profiles (``label -> (t_ms, profile)``) on one axis."""
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    for label, (t_ms, profile) in curves.items():
        ax.plot(t_ms, profile, label=label, lw=1.2, ls="--" if "random" in label else "-")
    ax.set_xlabel("ms from R-peak")
    ax.set_ylabel("mean saliency share")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # long titles are never clipped
    return path
