"""Is run B better than run A, or just different? A paired patient-level bootstrap.

Both runs' test predictions are restricted to what both tested: the beats both scored (joined
on ``beat_id``) for the beat-level metrics, the patients both scored for the patient-level
AUROC (a patient's probability is the mean of its beats', or each run's own
``evaluation.aggregate``: median or max, as its ``test_patient/*``). Every resample draws the same
patients for both runs, so the difference's CI accounts for their correlation — unpaired CIs
that overlap say nothing about the difference. Reported: AUROC (beat and patient level), Brier
score and net benefit at the given threshold probabilities, each as A, B, B − A with a
percentile CI and a two-sided bootstrap p-value (twice the smaller tail share beyond 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ecgml.errors import EcgmlError
from ecgml.evaluation.bootstrap import BootstrapPlan, bootstrap_auroc, patient_bootstrap_indices
from ecgml.evaluation.intervals import percentile_interval
from ecgml.evaluation.patients import patient_level
from ecgml.evaluation.utility import bootstrap_net_benefit, net_benefit

COLUMNS = ("metric", "level", "run_a", "run_b", "difference", "ci_low", "ci_high", "p_value")
DEFAULT_NET_BENEFIT_THRESHOLDS = (0.1, 0.2, 0.3)


@dataclass(frozen=True)
class PairedTest:
    """The test rows both runs scored: one frame per level with ``y_true, prob_a, prob_b``."""

    beats: pd.DataFrame
    patients: pd.DataFrame


def _test_rows(predictions: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = {"patient_id", "beat_id", "split", "y_true", "y_prob"} - set(predictions.columns)
    if missing:
        raise EcgmlError(
            f"run {name}'s predictions.csv lacks {sorted(missing)}: it was not written by "
            "ecgml.train; compare runs logged by ecgml"
        )
    test = predictions[predictions["split"] == "test"].copy()
    test["patient_id"] = test["patient_id"].astype(str)
    test["beat_id"] = test["beat_id"].astype(str)
    return test[["patient_id", "beat_id", "y_true", "y_prob"]]


def _check_same_labels(frame: pd.DataFrame, what: str) -> None:
    clash = frame["y_true_a"] != frame["y_true_b"]
    if clash.any():
        raise EcgmlError(
            f"{int(clash.sum())} {what} have a different label in the two runs (first: "
            f"{frame.loc[clash].index[0]}): they are not the same task; compare runs of one "
            "disorder on one data set"
        )


def pair_test_predictions(
    a: pd.DataFrame, b: pd.DataFrame, aggregates: tuple[str, str] = ("mean", "mean")
) -> PairedTest:
    """The test beats and patients both runs scored, with each run's probability (a patient's:
    the ``aggregates`` of run A's / run B's beats)."""
    ta, tb = _test_rows(a, "a"), _test_rows(b, "b")
    beats = ta.merge(tb, on=["patient_id", "beat_id"], suffixes=("_a", "_b"))
    _check_same_labels(beats.set_index("beat_id"), "shared test beats")
    pa, pb = (
        patient_level(t, how).set_index("patient_id")
        for t, how in zip((ta, tb), aggregates, strict=True)
    )
    patients = pa.join(pb, how="inner", lsuffix="_a", rsuffix="_b")
    if patients.empty:
        raise EcgmlError(
            f"the two runs have no test patients in common ({len(pa)} and {len(pb)} test "
            "patients): compare runs tested on the same patients (same data, split and seed)"
        )
    _check_same_labels(patients, "shared test patients")
    beats = beats.rename(
        columns={"y_true_a": "y_true", "y_prob_a": "prob_a", "y_prob_b": "prob_b"}
    ).drop(columns="y_true_b")
    patients = patients.rename(
        columns={"y_true_a": "y_true", "y_prob_a": "prob_a", "y_prob_b": "prob_b"}
    ).drop(columns="y_true_b")
    return PairedTest(beats.reset_index(drop=True), patients.reset_index())


def _p_value(diffs: np.ndarray) -> float:
    d = diffs[np.isfinite(diffs)]
    if d.size == 0:
        return math.nan
    return float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))


def _row(metric: str, level: str, a: float, b: float, spread: np.ndarray, ci: float) -> dict:
    low, high = percentile_interval(spread, ci, f"{metric} difference")
    return dict(
        zip(COLUMNS, (metric, level, a, b, b - a, low, high, _p_value(spread)), strict=True)
    )


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


def _brier_spread(plan: BootstrapPlan, ids: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    w = plan.counts[:, plan.columns(ids)].astype(float)
    return (w @ (p - y) ** 2) / w.sum(axis=1)


def _beat_rows(
    beats: pd.DataFrame, plan: BootstrapPlan, thresholds: Sequence[float], level: float
) -> list[dict]:
    ids, y = beats["patient_id"].to_numpy(), beats["y_true"].to_numpy().astype(int)
    pa, pb = beats["prob_a"].to_numpy(float), beats["prob_b"].to_numpy(float)
    rows = [
        _row(
            "auroc",
            "beat",
            _auroc(y, pa),
            _auroc(y, pb),
            bootstrap_auroc(plan, ids, y, pb) - bootstrap_auroc(plan, ids, y, pa),
            level,
        ),
        _row(
            "brier",
            "beat",
            float(np.mean((pa - y) ** 2)),
            float(np.mean((pb - y) ** 2)),
            _brier_spread(plan, ids, y, pb) - _brier_spread(plan, ids, y, pa),
            level,
        ),
    ]
    t = np.asarray(thresholds, dtype=float)
    nb_a, nb_b = net_benefit(y, pa, t), net_benefit(y, pb, t)
    spread = bootstrap_net_benefit(plan, ids, y, pb, t) - bootstrap_net_benefit(plan, ids, y, pa, t)
    for k, threshold in enumerate(t):
        rows.append(
            _row(
                f"net_benefit_at_{threshold:g}",
                "beat",
                float(nb_a[k]),
                float(nb_b[k]),
                spread[:, k],
                level,
            )
        )
    return rows


def compare_predictions(
    a: pd.DataFrame,
    b: pd.DataFrame,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    thresholds: Sequence[float] = DEFAULT_NET_BENEFIT_THRESHOLDS,
    aggregates: tuple[str, str] = ("mean", "mean"),
) -> pd.DataFrame:
    """The paired comparison table (:data:`COLUMNS`) of two runs' ``predictions.csv``
    (``aggregates``: how each run combines a patient's beats, its ``evaluation.aggregate``)."""
    paired = pair_test_predictions(a, b, aggregates)
    rows: list[dict] = []
    patients = paired.patients
    y = patients["y_true"].to_numpy().astype(int)
    if len(np.unique(y)) < 2:
        raise EcgmlError(
            f"the {len(patients)} test patients both runs scored all have label {int(y[0])}: "
            "AUROC needs both classes; compare runs with more shared test patients"
        )
    if not paired.beats.empty:
        beats = paired.beats
        plan = patient_bootstrap_indices(beats["patient_id"], beats["y_true"], n_bootstrap, seed)
        rows += _beat_rows(beats, plan, thresholds, level)
    ids = patients["patient_id"].to_numpy()
    plan = patient_bootstrap_indices(ids, y, n_bootstrap, seed)
    pa, pb = patients["prob_a"].to_numpy(float), patients["prob_b"].to_numpy(float)
    rows.append(
        _row(
            "auroc",
            "patient",
            _auroc(y, pa),
            _auroc(y, pb),
            bootstrap_auroc(plan, ids, y, pb) - bootstrap_auroc(plan, ids, y, pa),
            level,
        )
    )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.attrs.update(
        n_beats=len(paired.beats),
        n_patients=len(patients),
        n_positive_patients=int(y.sum()),
        aggregates=tuple(aggregates),
    )
    return table


def comparison_markdown(table: pd.DataFrame, run_a: str, run_b: str, level: float) -> str:
    """A short report: the table and how to read it."""
    lines = [
        f"# Run comparison: B = `{run_b}` vs A = `{run_a}`",
        "",
        f"Shared test set: {table.attrs.get('n_beats', 0)} beats, "
        f"{table.attrs.get('n_patients', 0)} patients "
        f"({table.attrs.get('n_positive_patients', 0)} positive). Paired patient-level "
        f"bootstrap (the same resamples for both runs); {level:.0%} CI of B − A. Higher is "
        "better for AUROC and net benefit, lower for Brier. A patient's probability: the "
        "{} of its beats' in A, the {} in B.".format(*table.attrs.get("aggregates", ("mean",) * 2)),
        "",
        "| metric | level | A | B | B − A (CI) | p |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.metric} | {r.level} | {r.run_a:.4f} | {r.run_b:.4f} | "
            f"{r.difference:+.4f} ({r.ci_low:+.4f} to {r.ci_high:+.4f}) | {r.p_value:.3g} |"
        )
    return "\n".join([*lines, ""])
