"""Group statistics of the localization table: per-class summaries and the study's three tests.

The study tests temporal shifts with one-way ANOVA, saliency differences with Kruskal–Wallis
and inter-group variability with Levene's test; here each test runs on both the peak location
and the peak saliency (the headline metrics follow the study's pairing). Degenerate input (one
class, fewer than ``MIN_PER_CLASS`` beats, constant values) gives NaN with a note, never an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

MIN_PER_CLASS = 2
SUMMARY_COLUMNS = ("peak_ms", "peak_saliency", "segment_start_ms", "segment_end_ms", "mass_T")


class _HasStatistic(Protocol):
    statistic: float
    pvalue: float


#: The study's three tests over the per-class samples (each returns statistic and p-value).
TESTS: dict[str, Callable[..., _HasStatistic]] = {
    "anova": stats.f_oneway,
    "kruskal": stats.kruskal,
    "levene": stats.levene,
}
#: The study's pairing of test and variable (the headline ``explain/<test>_p`` metrics).
HEADLINE = {"anova": "peak_ms", "kruskal": "peak_saliency", "levene": "peak_ms"}


@dataclass
class TestResult:
    statistic: float
    p: float
    note: str = ""


@dataclass
class GroupStats:
    """Per-class summaries, tests per (test, variable), and notes on what could not be computed."""

    summary: pd.DataFrame  # index: class label; columns: <var>_mean, <var>_sd, n
    tests: dict[tuple[str, str], TestResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def p(self, test: str, variable: str | None = None) -> float:
        result = self.tests.get((test, variable or HEADLINE[test]))
        return result.p if result else float("nan")


def summarize(table: pd.DataFrame, by: str = "y_true") -> pd.DataFrame:
    """Mean and SD (ddof=1) of each localization variable per class, with the beat count."""
    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    grouped = table.groupby(by)[columns]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_sd"))
    out["n"] = table.groupby(by).size()
    return out


def run_test(name: str, samples: Sequence[np.ndarray]) -> TestResult:
    """One SciPy test across groups; NaN with a note when the input cannot support it."""
    clean = [np.asarray(s, dtype=float)[np.isfinite(s)] for s in samples]
    if len(clean) < 2:
        return TestResult(np.nan, np.nan, "needs at least two classes")
    if min(len(s) for s in clean) < MIN_PER_CLASS:
        return TestResult(np.nan, np.nan, f"needs ≥ {MIN_PER_CLASS} beats per class")
    pooled = np.concatenate(clean)
    if np.ptp(pooled) == 0:
        return TestResult(np.nan, np.nan, "all values are equal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = TESTS[name](*clean)
    statistic, p = float(result.statistic), float(result.pvalue)
    note = "; ".join(sorted({str(w.message).split("\n")[0] for w in caught}))
    return TestResult(statistic, p, note)


def group_statistics(table: pd.DataFrame, by: str = "y_true") -> GroupStats:
    """Per-class summaries and ANOVA / Kruskal–Wallis / Levene on peak location and saliency."""
    result = GroupStats(summarize(table, by))
    classes = sorted(table[by].dropna().unique())
    if len(classes) < 2:
        result.notes.append(
            f"only {len(classes)} class(es) among the analysed beats: no between-class tests"
        )
    for variable in ("peak_ms", "peak_saliency"):
        samples = [table.loc[table[by] == c, variable].to_numpy(float) for c in classes]
        for test in TESTS:
            outcome = run_test(test, samples)
            result.tests[(test, variable)] = outcome
            if outcome.note:
                result.notes.append(f"{test} on {variable}: {outcome.note}")
    return result


def class_shift(summary: pd.DataFrame, positive: object = 1, negative: object = 0) -> float:
    """Mean peak location of the positive class minus the negative class (ms)."""
    try:
        return float(summary.loc[positive, "peak_ms_mean"] - summary.loc[negative, "peak_ms_mean"])
    except KeyError:
        return float("nan")


def primary_focus(table: pd.DataFrame, by: str = "y_true") -> pd.DataFrame:
    """Table 3: per class, the region with the most mean saliency mass and its share."""
    mass_columns = [c for c in table.columns if c.startswith("mass_") and c != "mass_other"]
    rows = []
    for label, part in table.groupby(by):
        means = part[mass_columns].mean()
        top = str(means.idxmax()).removeprefix("mass_") if len(part) else "none"
        counts = part["primary_region"].value_counts(normalize=True)
        rows.append(
            {
                by: label,
                "primary_region": top,
                "mean_mass": float(means.max()),
                "beats_with_this_primary": float(counts.get(top, 0.0)),
                "peak_region_mode": part["peak_region"].mode().iat[0] if len(part) else "none",
            }
        )
    return pd.DataFrame(rows)
