"""Performance per subgroup (center, device, any manifest column) with CIs, a heterogeneity
test and a forest plot (TRIPOD+AI item 23; STARD-AI).

Each cell gets the study's eight metrics on its test beats (patient-level bootstrap) and its
number of patients; cells under ``min_patients`` patients are flagged ``small``: their CIs are
too wide to read. The heterogeneity test is a likelihood-ratio test of the subgroup × score
interaction in a logistic model of the outcome on the logit of the patient's mean probability,
at patient level (patients are independent, the beats of one patient are not).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from scipy.stats import chi2
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HessianInversionWarning,
    PerfectSeparationError,
    PerfectSeparationWarning,
)

from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import clipped_logit
from ecgml.evaluation.figures import _axes, _note
from ecgml.evaluation.metrics import METRICS, compute_metrics
from ecgml.evaluation.patients import patient_level
from ecgml.evaluation.report import METRIC_TITLES, format_value

log = logging.getLogger(__name__)

DEFAULT_SUBGROUPS = ("center", "device")
MIN_PATIENTS = 10
MISSING = "(missing)"
QUIET_LOGGERS = ("ecgml.evaluation.metrics", "ecgml.evaluation.intervals")
HEAD_COLUMNS = (
    "subgroup",
    "value",
    "n_patients",
    "n_positive_patients",
    "n_negative_patients",
    "n_beats",
    "small",
)
CI_SUFFIXES = ("", "_ci_low", "_ci_high")
METRIC_COLUMNS = tuple(f"{m}{s}" for m in METRICS for s in CI_SUFFIXES)
HETEROGENEITY_COLUMNS = (
    "heterogeneity_lr",
    "heterogeneity_dof",
    "heterogeneity_p",
    "heterogeneity_note",
)
TABLE_COLUMNS = (*HEAD_COLUMNS, *METRIC_COLUMNS, *HETEROGENEITY_COLUMNS)
#: The statsmodels signals of a logistic fit that has no finite maximum or no usable Hessian.
_FIT_WARNINGS = (
    PerfectSeparationWarning,
    ConvergenceWarning,
    HessianInversionWarning,
    RuntimeWarning,
)


def resolve_subgroup_columns(frame: pd.DataFrame, requested: Sequence[str] | None) -> list[str]:
    """The subgroup columns: the defaults present in ``frame`` (absent ones skipped), or exactly
    the requested ones (each must exist: a typo would otherwise silently drop the analysis)."""
    if not requested:
        return [c for c in DEFAULT_SUBGROUPS if c in frame.columns]
    for column in requested:
        if column not in frame.columns:
            have = ", ".join(map(str, frame.columns))
            raise EcgmlError(
                f"evaluation.subgroups: column {column!r} is not in the predictions "
                f"(have: {have}): name a manifest column"
            )
    return list(dict.fromkeys(requested))


def subgroup_values(series: pd.Series) -> pd.Series:
    """The column as strings, missing values as ``"(missing)"`` (integers stay ``"3"``, not
    ``"3.0"``, when missing values made the column float)."""
    if pd.api.types.is_float_dtype(series):
        finite = series.dropna()
        if len(finite) and (finite == finite.round()).all():
            series = series.astype("Int64")
    return series.astype(object).where(series.notna(), MISSING).astype(str)


def patient_groups(
    test: pd.DataFrame, column: str, aggregate: str = "mean"
) -> tuple[pd.DataFrame, str]:
    """(one row per patient — ``patient_id, y_true, y_prob`` (``aggregate`` over beats: mean,
    median or max, as ``evaluation.aggregate``), ``group`` —, a note when some patient has beats
    with several values of ``column``: its first is kept)."""

    patients = patient_level(test[["patient_id", "y_true", "y_prob"]], aggregate)
    per_patient = subgroup_values(test[column]).groupby(test["patient_id"], sort=False)
    patients["group"] = patients["patient_id"].map(per_patient.first())
    n_values = per_patient.nunique()
    note = ""
    if (n_values > 1).any():
        note = (
            f"{int((n_values > 1).sum())} patient(s) with several {column} values "
            f"(e.g. {n_values.index[n_values > 1][0]!r}): first value used"
        )
        log.warning("subgroups: %s", note)
    return patients, note


def _nan_result(reason: str, note: str) -> tuple[float, float, int, str]:
    return math.nan, math.nan, 0, "; ".join(t for t in (reason, note) if t)


def _fit(formula: str, data: pd.DataFrame) -> Any:
    """A logistic fit that raises instead of warning on separation or non-convergence."""
    with warnings.catch_warnings():
        for category in _FIT_WARNINGS:
            warnings.simplefilter("error", category)
        result = smf.logit(formula, data).fit(disp=0, maxiter=100)
    if not result.mle_retvals.get("converged", False):
        raise ConvergenceWarning("maximum likelihood did not converge")
    if not np.isfinite(result.llf) or not np.isfinite(result.bse).all():
        raise PerfectSeparationError("non-finite likelihood or standard errors")
    return result


POOLED = "(small cells pooled)"


def pool_small_cells(patients: pd.DataFrame, min_patients: int) -> tuple[pd.DataFrame, str]:
    """Merge the groups of fewer than ``min_patients`` patients into one level (:data:`POOLED`)
    so many small centers do not make the logistic fit impossible; a note says how many."""
    sizes = patients["group"].value_counts()
    small = sizes.index[sizes < min_patients]
    if min_patients <= 1 or len(small) < 2:
        return patients, ""
    pooled = patients.assign(group=patients["group"].where(~patients["group"].isin(small), POOLED))
    return pooled, f"{len(small)} cells under {min_patients} patients pooled for the test"


def heterogeneity_test(
    test: pd.DataFrame, column: str, min_patients: int = 0, aggregate: str = "mean"
) -> tuple[float, float, int, str]:
    """(LR statistic, p-value, dof, note): does the score-outcome relation differ by subgroup?

    Full ``y ~ z + C(g) + z:C(g)`` vs reduced ``y ~ z + C(g)`` (``z`` = logit of the patient's
    probability, the ``aggregate`` of its beats' as for ``test_patient/*``, clipped to
    [1e-6, 1 − 1e-6]); chi-squared with dof = the difference in parameters. With
    ``min_patients``, cells smaller than that are first pooled into one level
    (:func:`pool_small_cells`). NaN with the reason in the note where the test is not possible.
    """
    patients, note = patient_groups(test, column, aggregate)
    patients, pooled_note = pool_small_cells(patients, min_patients)
    note = "; ".join(t for t in (note, pooled_note) if t)
    if patients["group"].nunique() < 2:
        return _nan_result("one subgroup only", note)
    if patients["y_true"].nunique() < 2:
        return _nan_result("one class only", note)
    one_class = patients.groupby("group")["y_true"].nunique() < 2
    if one_class.any():
        return _nan_result(
            f"perfect separation: subgroup {one_class.index[one_class][0]!r} has one class only",
            note,
        )
    data = pd.DataFrame(
        {
            "y": patients["y_true"].astype(float),
            "z": clipped_logit(patients["y_prob"]),
            "g": patients["group"],
        }
    )
    try:
        reduced = _fit("y ~ z + C(g)", data)
        full = _fit("y ~ z + C(g) + z:C(g)", data)
    except (PerfectSeparationError, *_FIT_WARNINGS) as err:
        reason = (
            "perfect separation"
            if "separation" in str(err).lower()
            else "no convergence (separation?)"
        )
        return _nan_result(f"{reason} (fit failed: {type(err).__name__})", note)
    except np.linalg.LinAlgError:
        return _nan_result("singular design (a subgroup too small to fit its own slope)", note)
    stat = max(2.0 * float(full.llf - reduced.llf), 0.0)
    dof = len(full.params) - len(reduced.params)
    return stat, float(chi2.sf(stat, dof)), dof, note


def _cell_row(
    cell: pd.DataFrame,
    column: str,
    value: str,
    threshold: float,
    ci: tuple[int, int, float],
    min_patients: int,
) -> dict[str, object]:
    """One table row: counts of the cell's patients and :func:`compute_metrics` of its beats."""
    n_bootstrap, seed, level = ci
    labels = cell.groupby("patient_id", sort=False)["y_true"].first()
    row: dict[str, object] = {
        "subgroup": column,
        "value": value,
        "n_patients": int(labels.size),
        "n_positive_patients": int((labels == 1).sum()),
        "n_negative_patients": int((labels == 0).sum()),
        "n_beats": len(cell),
        "small": bool(labels.size < min_patients),
    }
    with quiet_metric_warnings():
        metrics = compute_metrics(
            cell["y_true"].to_numpy(),
            cell["y_prob"].to_numpy(),
            cell["patient_id"].to_numpy(),
            threshold,
            n_bootstrap=n_bootstrap,
            seed=seed,
            level=level,
            context=f"subgroup {column}={value}",
        )
    row.update({key: float(metrics[key]) for key in METRIC_COLUMNS})
    return row


@contextlib.contextmanager
def quiet_metric_warnings() -> Iterator[None]:
    """Undefined metrics are the rule in small one-class cells (a subgroup, a center): they show
    as n/a in the table (its caller logs one summary line), not as a warning per metric."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def subgroup_table(
    test: pd.DataFrame,
    columns: Sequence[str],
    threshold: float,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_patients: int = MIN_PATIENTS,
    aggregate: str = "mean",
) -> pd.DataFrame:
    """One row per (column, value) of the test beats (:data:`TABLE_COLUMNS`): patient and beat
    counts, ``small`` (< ``min_patients`` patients), the eight metrics with CIs at
    ``threshold``, and the column's heterogeneity test on patient scores (``aggregate`` of
    their beats; the same on each of the column's rows)."""
    rows = []
    for column in columns:
        values = subgroup_values(test[column])
        stat, p, dof, note = heterogeneity_test(test, column, min_patients, aggregate)
        for value in sorted(values.unique()):
            row = _cell_row(
                test[values == value],
                column,
                value,
                threshold,
                (n_bootstrap, seed, level),
                min_patients,
            )
            row.update(
                heterogeneity_lr=stat,
                heterogeneity_dof=dof,
                heterogeneity_p=p,
                heterogeneity_note=note,
            )
            rows.append(row)
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.sort_values(["subgroup", "value"], kind="stable", ignore_index=True)
    undefined = int(table["auroc"].isna().sum()) if len(table) else 0
    if undefined:
        log.info(
            "subgroups: AUROC undefined in %d of %d cells (one class only): n/a in the table",
            undefined,
            len(table),
        )
    table.attrs["min_patients"] = int(min_patients)
    return table


def _row_label(row: pd.Series, min_patients: int) -> str:
    flag = f", <{min_patients}" if row["small"] else ""
    return f"{row['subgroup']}: {row['value']} (n={row['n_patients']}{flag})"


def _p_text(p: float) -> str:
    if np.isfinite(p):
        return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return "p n/a"


def _draw_overall(ax: Axes, metric: str, overall: Mapping[str, float] | None) -> None:
    """The overall value as a vertical line, its CI as a shaded band."""
    given = overall or {}
    value, low, high = (float(given.get(f"{metric}{s}", math.nan)) for s in CI_SUFFIXES)
    if not np.isfinite(value):
        return
    label = f"overall {value:.2f}"
    if np.isfinite(low) and np.isfinite(high):
        ax.axvspan(low, high, color="tab:red", alpha=0.12, lw=0)
        label += f" ({low:.2f}–{high:.2f})"
    ax.axvline(value, color="tab:red", lw=1, label=label)
    ax.legend(loc="lower left", fontsize="small")


#: Where the value and the heterogeneity p columns start, in points right of the forest's axes.
VALUE_COLUMN_PT, P_COLUMN_PT = 8.0, 100.0


def _draw_cells(ax: Axes, table: pd.DataFrame, metric: str, ys: np.ndarray) -> None:
    """Point + CI whisker per cell (small cells hollow and grey), the formatted value and the
    subgroup's heterogeneity p as text columns right of the axes."""
    text_at = blended_transform_factory(ax.transAxes, ax.transData)
    first_rows = ~table["subgroup"].duplicated()
    for y, (_, row), first in zip(ys, table.iterrows(), first_rows, strict=True):
        value, low, high = (float(row[f"{metric}{s}"]) for s in CI_SUFFIXES)
        color = "0.6" if row["small"] else "tab:blue"
        if np.isfinite(low) and np.isfinite(high):
            ax.plot([low, high], [y, y], color=color, lw=1.4, solid_capstyle="butt")
        if np.isfinite(value):
            face = "white" if row["small"] else color
            ax.plot(value, y, "o", mfc=face, mec=color, mew=1.4, ms=6)
        columns = [(VALUE_COLUMN_PT, format_value(metric, value, low, high))]
        if first:
            columns.append((P_COLUMN_PT, _p_text(float(row["heterogeneity_p"]))))
        for offset, text in columns:  # points right of the axes: the layout makes room for them
            ax.annotate(
                text,
                (1.0, y),
                xycoords=text_at,
                xytext=(offset, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
                color="0.2",
            )
    for y in ys[first_rows.to_numpy()][1:]:
        ax.axhline(y + 0.5, color="0.85", lw=0.8)


def plot_subgroups(
    table: pd.DataFrame,
    metric: str = "auroc",
    overall: Mapping[str, float] | None = None,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Forest plot of ``metric`` per subgroup cell (a :func:`subgroup_table`): point and CI, the
    overall value as a line with its CI as a band, each subgroup's heterogeneity p beside its
    first row. Cells with fewer patients than the table's ``min_patients`` are left out (their
    1–5-patient intervals say nothing) and a footnote says how many; the table keeps them."""
    name = METRIC_TITLES.get(metric, metric)
    min_patients = int(table.attrs.get("min_patients", MIN_PATIENTS))
    hidden = int(table["small"].sum()) if "small" in table and len(table) else 0
    if hidden:
        table = table.loc[~table["small"].astype(bool)]
    fig, ax = _axes(ax, figsize=(8.0, max(2.5, 0.38 * len(table) + 1.5)))
    if hidden:
        fig.supxlabel(  # a figure-level label: the layout makes room for it
            f"{hidden} cell(s) with fewer than {min_patients} test patients not shown "
            "(subgroups.csv lists them)",
            x=0.01,
            ha="left",
            fontsize="small",
            color="0.35",
        )
    ax.set_title(title or f"{name} by subgroup")
    ax.set_xlabel(name)
    if table.empty:
        ax.set(xlim=(0, 1), yticks=[])
        reason = (
            f"every cell has fewer than {min_patients} test patients"
            if hidden
            else "no subgroup cells (no center / device column in the predictions)"
        )
        _note(ax, reason)
        return fig
    missing = [f"{metric}{s}" for s in CI_SUFFIXES if f"{metric}{s}" not in table]
    if missing:
        raise EcgmlError(f"plot_subgroups: table lacks {missing}: pick metric from {list(METRICS)}")
    table = table.reset_index(drop=True)
    ys = np.arange(len(table), dtype=float)[::-1]
    _draw_cells(ax, table, metric, ys)
    _draw_overall(ax, metric, overall)
    lows = table[[metric, f"{metric}_ci_low"]].to_numpy(dtype=float)
    lowest = np.nanmin(lows) if np.isfinite(lows).any() else 0.0
    ax.set_xlim(min(0.0, lowest) - 0.02, 1.02)
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.set_yticks(ys, [_row_label(row, min_patients) for _, row in table.iterrows()])
    ax.tick_params(axis="y", labelsize="small")
    if not np.isfinite(table[metric].to_numpy(dtype=float)).any():
        _note(ax, f"{name} undefined in every cell (one class only?)")
    return fig
