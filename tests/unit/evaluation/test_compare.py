"""The paired run comparison: identical runs differ by nothing, a clearly better one wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecgml.errors import EcgmlError
from ecgml.evaluation.compare import compare_predictions, comparison_markdown


def predictions(n_patients: int, seed: int, noise: float) -> pd.DataFrame:
    """Two test beats per patient; y_prob separates the classes less as ``noise`` grows."""
    rng = np.random.default_rng(seed)
    y = np.repeat((np.arange(n_patients) % 3 == 0).astype(int), 2)
    p = 1 / (1 + np.exp(-(2.0 * (y - 0.5) + noise * rng.normal(size=y.size))))
    return pd.DataFrame(
        {
            "patient_id": np.repeat([f"p{i}" for i in range(n_patients)], 2),
            "beat_id": [f"b{i}" for i in range(y.size)],
            "split": "test",
            "y_true": y,
            "y_prob": p,
        }
    )


def row(table: pd.DataFrame, metric: str, level: str = "beat") -> pd.Series:
    return table[(table["metric"] == metric) & (table["level"] == level)].iloc[0]


def test_identical_runs_differ_by_zero_with_a_ci_containing_zero() -> None:
    a = predictions(120, seed=0, noise=3.0)
    table = compare_predictions(a, a.copy(), n_bootstrap=300, seed=1)
    for r in table.itertuples():
        assert r.difference == 0.0
        assert r.ci_low <= 0.0 <= r.ci_high
    assert row(table, "auroc")["run_a"] == pytest.approx(roc_auc_score(a["y_true"], a["y_prob"]))


def test_a_clearly_better_run_has_a_ci_excluding_zero() -> None:
    a = predictions(150, seed=0, noise=4.0)
    b = a.copy()
    b["y_prob"] = predictions(150, seed=1, noise=0.5)["y_prob"].to_numpy()
    table = compare_predictions(a, b, n_bootstrap=500, seed=2)
    auroc = row(table, "auroc")
    assert auroc["run_b"] > auroc["run_a"]
    assert auroc["ci_low"] > 0 and auroc["p_value"] < 0.01
    brier = row(table, "brier")
    assert brier["ci_high"] < 0  # B's Brier score is lower (better)
    assert row(table, "auroc", "patient")["ci_low"] > 0
    md = comparison_markdown(table, "aaa", "bbb", 0.95)
    assert "B = `bbb` vs A = `aaa`" in md and "| auroc | beat |" in md


def test_only_shared_patients_are_compared_and_disjoint_runs_are_refused() -> None:
    a = predictions(60, seed=0, noise=1.0)
    b = a[a["patient_id"].isin([f"p{i}" for i in range(30)])].copy()
    table = compare_predictions(a, b, n_bootstrap=50)
    assert table.attrs["n_patients"] == 30 and table.attrs["n_beats"] == 60
    other = a.assign(patient_id="x" + a["patient_id"], beat_id="x" + a["beat_id"])
    with pytest.raises(EcgmlError, match="no test patients in common"):
        compare_predictions(a, other, n_bootstrap=50)
    flipped = a.assign(y_true=1 - a["y_true"])
    with pytest.raises(EcgmlError, match="different label"):
        compare_predictions(a, flipped, n_bootstrap=50)


def test_each_run_scores_its_patients_with_its_own_aggregate() -> None:
    a = predictions(90, seed=0, noise=2.0)
    table = compare_predictions(a, a.copy(), n_bootstrap=50, aggregates=("mean", "max"))
    patients = a.groupby("patient_id").agg(
        y=("y_true", "first"), mean=("y_prob", "mean"), max=("y_prob", "max")
    )
    auroc = row(table, "auroc", "patient")
    assert auroc["run_a"] == pytest.approx(roc_auc_score(patients["y"], patients["mean"]))
    assert auroc["run_b"] == pytest.approx(roc_auc_score(patients["y"], patients["max"]))
    assert auroc["difference"] != 0.0
    assert row(table, "auroc")["difference"] == 0.0  # beat level: the same probabilities
    assert "the mean of its beats' in A, the max in B" in comparison_markdown(table, "a", "b", 0.95)
