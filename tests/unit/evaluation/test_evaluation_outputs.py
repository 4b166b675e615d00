"""End-of-run evaluation: the Contracts' metric keys, predictions with y_pred, figures, the
Table 2 layout."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from ecgml.errors import EcgmlError
from ecgml.evaluation import (
    METRICS,
    ClinicalSettings,
    choose_threshold,
    evaluate_predictions,
    format_results_table,
    metric_keys,
    patient_level,
    plot_calibration,
    plot_confusion,
    plot_pr,
    plot_roc,
)

CONTRACT_KEYS = {
    f"{p}/{m}{s}"
    for p in ("test", "test_patient", "val_final")
    for m in ("accuracy", "auroc", "sensitivity", "specificity", "precision", "npv", "f1", "mcc")
    for s in ("", "_ci_low", "_ci_high")
} | {"test/threshold", "test/n_beats", "test/n_patients"}
CONTRACT_KEYS |= {
    f"test/{m}{raw}{s}"
    for m in ("brier", "ece", "calibration_slope", "calibration_intercept")
    for raw in ("", "_raw")
    for s in ("", "_ci_low", "_ci_high")
} | {
    f"test/{v}_at_{p}{s}"
    for v in ("ppv", "npv")
    for p in ("0.01", "0.05", "0.2")
    for s in ("", "_ci_low", "_ci_high")
}
NO_RECALIBRATION = ClinicalSettings(calibration="none")


def make_predictions(n_patients: int = 90, seed: int = 0) -> pd.DataFrame:
    """A predictions.csv-like frame: patients split train/val/test, 2-5 beats each."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label, split = int(p % 3 == 0), ("train", "val", "test")[(p // 3) % 3]
        effect = rng.normal(0, 0.6)
        for b in range(int(rng.integers(2, 6))):
            logit = (2 * label - 1) + effect + rng.normal(0, 0.5)
            rows.append(
                {
                    "patient_id": f"P{p:03d}",
                    "beat_id": f"P{p:03d}_b{b}",
                    "split": split,
                    "y_true": label,
                    "y_prob": float(1 / (1 + np.exp(-logit))),
                    "center": f"c{p % 2}",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    return make_predictions()


@pytest.fixture(scope="module")
def evaluated(predictions: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    out_dir = tmp_path_factory.mktemp("evaluation")
    metrics, with_pred = evaluate_predictions(
        predictions,
        rule="youden",
        n_bootstrap=200,
        seed=0,
        out_dir=out_dir,
        title="Hypokalemia",
        clinical=NO_RECALIBRATION,
    )
    return metrics, with_pred, out_dir


def test_evaluate_returns_exactly_the_contract_keys(evaluated) -> None:
    metrics, _, _ = evaluated
    assert set(metrics) == CONTRACT_KEYS == set(metric_keys())
    assert all(isinstance(v, float) for v in metrics.values())
    assert not any(math.isnan(v) for v in metrics.values())


def test_evaluate_thresholds_on_val_and_scores_test(predictions, evaluated) -> None:
    metrics, with_pred, _ = evaluated
    val = predictions[predictions.split == "val"]
    test = predictions[predictions.split == "test"]
    threshold = choose_threshold(val.y_true, val.y_prob, "youden")
    assert metrics["test/threshold"] == threshold
    np.testing.assert_array_equal(with_pred.y_pred, (predictions.y_prob >= threshold).astype(int))
    assert list(with_pred.columns) == [*predictions.columns, "y_prob_raw", "y_pred"]
    np.testing.assert_array_equal(with_pred.y_prob_raw, predictions.y_prob)
    assert metrics["test/auroc"] == pytest.approx(roc_auc_score(test.y_true, test.y_prob))
    assert metrics["val_final/auroc"] == pytest.approx(roc_auc_score(val.y_true, val.y_prob))
    assert metrics["test/n_beats"] == len(test)
    assert metrics["test/n_patients"] == test.patient_id.nunique()
    patients = test.groupby("patient_id").agg(y_true=("y_true", "first"), y_prob=("y_prob", "mean"))
    assert metrics["test_patient/auroc"] == pytest.approx(
        roc_auc_score(patients.y_true, patients.y_prob)
    )
    assert metrics["test/accuracy"] == pytest.approx(
        np.mean((test.y_prob >= threshold) == test.y_true)
    )


def test_evaluate_writes_figures_and_results(evaluated) -> None:
    metrics, _, out_dir = evaluated
    figures = ("roc", "pr", "roc_patient", "pr_patient", "confusion", "calibration")
    for name in (*figures, "decision_curve", "subgroups"):
        png = out_dir / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        svg = png.with_suffix(".svg").read_text(encoding="utf-8")  # vector copy for journals
        assert "<svg" in svg and "</svg>" in svg, name
    table = pd.read_csv(out_dir / "results.csv")
    assert len(table) == 1 and table.loc[0, "Group"] == "Hypokalemia"
    assert table.loc[0, "auroc"] == pytest.approx(metrics["test/auroc"])
    assert table.loc[0, "threshold"] == pytest.approx(metrics["test/threshold"])
    accuracy = 100 * metrics["test/accuracy"]
    expected_cell = f"{accuracy:.2f}% ({100 * metrics['test/accuracy_ci_low']:.2f}–"
    assert table.loc[0, "Accuracy (95% CI)"].startswith(expected_cell)
    markdown = (out_dir / "results.md").read_text(encoding="utf-8")
    assert "| Hypokalemia | " + table.loc[0, "Accuracy (95% CI)"] in markdown
    assert "Patient level" in markdown and "rule `youden`" in markdown
    assert plt.get_fignums() == []


def test_evaluate_is_reproducible(predictions) -> None:
    first, _ = evaluate_predictions(predictions, n_bootstrap=50, seed=4)
    again, _ = evaluate_predictions(
        predictions.sample(frac=1, random_state=1), n_bootstrap=50, seed=4
    )
    assert first == pytest.approx(again, rel=1e-9, abs=1e-12)


def test_evaluate_without_validation(predictions, caplog) -> None:
    no_val = predictions[predictions.split != "val"]
    with pytest.raises(EcgmlError, match="rule='youden' needs rows with split='val'"):
        evaluate_predictions(no_val, rule="youden", n_bootstrap=10)
    metrics, _ = evaluate_predictions(no_val, rule="fixed", value=0.5, n_bootstrap=10)
    assert metrics["test/threshold"] == 0.5
    assert all(math.isnan(metrics[f"val_final/{m}"]) for m in METRICS)
    assert set(metrics) == CONTRACT_KEYS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="beat_id"), r"lack column\(s\) \['beat_id'\]"),
        (lambda df: df.assign(split="holdout"), "split='holdout' is not one of"),
        (lambda df: df.assign(y_true=df.y_true * 2), "0/1 labels"),
        (lambda df: df[df.split != "test"], "no rows with split='test'"),
    ],
)
def test_evaluate_rejects_bad_predictions(predictions, change, message) -> None:
    with pytest.raises(EcgmlError, match=message):
        evaluate_predictions(change(predictions), n_bootstrap=10)


def test_patient_level_means_beats_per_patient() -> None:
    df = pd.DataFrame(
        {
            "patient_id": ["b", "a", "b", "a", "c"],
            "split": ["test"] * 5,
            "y_true": [1, 0, 1, 0, 1],
            "y_prob": [0.9, 0.2, 0.5, 0.4, 0.6],
        }
    )
    out = patient_level(df)
    assert list(out.columns) == ["patient_id", "y_true", "y_prob", "split"]
    assert list(out.patient_id) == ["b", "a", "c"]
    np.testing.assert_allclose(out.y_prob, [0.7, 0.3, 0.6])
    assert list(out.y_true) == [1, 0, 1]
    assert list(patient_level(df.drop(columns="split")).columns) == [
        "patient_id",
        "y_true",
        "y_prob",
    ]
    with pytest.raises(EcgmlError, match="'a' has beats with different y_true"):
        patient_level(df.assign(y_true=[1, 0, 1, 1, 1]))


@pytest.mark.parametrize(
    ("aggregate", "expected"), [("max", [0.9, 0.4, 0.6]), ("median", [0.7, 0.3, 0.6])]
)
def test_patient_level_other_aggregates(aggregate: str, expected: list[float]) -> None:
    df = pd.DataFrame(
        {
            "patient_id": ["b", "a", "b", "a", "c", "b"],
            "y_true": [1, 0, 1, 0, 1, 1],
            "y_prob": [0.9, 0.2, 0.5, 0.4, 0.6, 0.7],
        }
    )
    np.testing.assert_allclose(patient_level(df, aggregate).y_prob, expected)
    with pytest.raises(EcgmlError, match="evaluation.aggregate='mode' is not known"):
        patient_level(df, "mode")


def test_evaluation_aggregate_changes_only_the_patient_level(predictions) -> None:
    """``evaluation.aggregate=max`` scores each test patient by its most abnormal beat: the
    beat-level keys stay as they are, ``test_patient/auroc`` is the max-aggregated AUROC."""
    mean_metrics, _ = evaluate_predictions(predictions, n_bootstrap=0)
    max_metrics, _ = evaluate_predictions(
        predictions, n_bootstrap=0, clinical=ClinicalSettings(aggregate="max")
    )
    assert max_metrics["test/auroc"] == mean_metrics["test/auroc"]
    test = predictions[predictions["split"] == "test"]
    # the recalibration is monotone, so the raw probabilities rank patients the same way
    by_max = test.groupby("patient_id").agg(y_true=("y_true", "first"), y_prob=("y_prob", "max"))
    expected = roc_auc_score(by_max["y_true"], by_max["y_prob"])
    assert max_metrics["test_patient/auroc"] == pytest.approx(expected)
    assert max_metrics["test_patient/auroc"] != pytest.approx(mean_metrics["test_patient/auroc"])


def test_results_table_formats_like_the_study() -> None:
    hyperkalemia = {
        "accuracy": 0.8947,
        "accuracy_ci_low": 0.7740,
        "accuracy_ci_high": 0.9561,
        "auroc": 0.94,
        "auroc_ci_low": 0.87,
        "auroc_ci_high": 0.98,
        "mcc": math.nan,
        "mcc_ci_low": math.nan,
        "mcc_ci_high": math.nan,
        "f1": 0.88,
    }
    markdown, frame = format_results_table({"Hyperkalemia": hyperkalemia, "Other": {}})
    row = frame.iloc[0]
    assert row["Accuracy (95% CI)"] == "89.47% (77.40–95.61)"
    assert row["AUROC (95% CI)"] == "0.94 (0.87–0.98)"
    assert row["MCC (95% CI)"] == "n/a"
    assert row["F1-Score (95% CI)"] == "0.88 (n/a)"
    assert row["accuracy"] == 0.8947 and math.isnan(row["npv"])
    assert list(frame.columns[:9]) == [
        "Group",
        *(
            f"{name} (95% CI)"
            for name in (
                "Accuracy",
                "AUROC",
                "Sensitivity",
                "Specificity",
                "Precision",
                "NPV",
                "F1-Score",
                "MCC",
            )
        ),
    ]
    assert markdown.splitlines()[2].startswith("| Hyperkalemia | 89.47% (77.40–95.61) | 0.94")
    assert len(markdown.splitlines()) == 4
    prefixed, _ = format_results_table({"x": {"test/auroc": 0.5}}, prefix="test/")
    assert "0.50 (n/a)" in prefixed


def test_figures_alone_and_on_shared_axes(predictions, tmp_path: Path) -> None:
    test = predictions[predictions.split == "test"]
    y, prob, ids = test.y_true.to_numpy(), test.y_prob.to_numpy(), test.patient_id.to_numpy()
    roc = plot_roc(y, prob, ids, n_bootstrap=50, title="ROC")
    assert isinstance(roc, Figure)
    (ax,) = roc.axes
    assert "AUROC" in ax.get_legend().get_texts()[0].get_text()
    assert "95% CI" in ax.get_legend().get_texts()[0].get_text()
    assert len(ax.collections) == 1  # the CI band
    shared = plot_roc(y, prob, label="first", ax=ax)
    assert shared is roc and len(ax.get_legend().get_texts()) == 2
    confusion = plot_confusion(y, (prob >= 0.5).astype(int))
    texts = [t.get_text() for t in confusion.axes[0].texts]
    assert len(texts) == 4 and all(t.startswith("n = ") and "%)" in t for t in texts)
    for fig in (plot_pr(y, prob), plot_calibration(y, prob), confusion, roc):
        fig.savefig(tmp_path / "figure.png")
    # one class only: a note on the axes, no exception
    one_class = np.zeros(5, dtype=int)
    for fig in (
        plot_roc(one_class, np.linspace(0, 1, 5)),
        plot_pr(one_class, np.linspace(0, 1, 5)),
    ):
        assert "one class only" in fig.axes[0].texts[0].get_text()
    assert plt.get_fignums() == []


def test_evaluate_keeps_the_callers_columns(predictions) -> None:
    numeric_ids = predictions.assign(patient_id=predictions.patient_id.str[1:].astype(int))
    _, out = evaluate_predictions(numeric_ids, rule="fixed", n_bootstrap=0)
    kept = out.drop(columns=["y_pred", "y_prob", "y_prob_raw"])
    pd.testing.assert_frame_equal(kept, numeric_ids.drop(columns="y_prob"))
    np.testing.assert_array_equal(out.y_prob_raw, numeric_ids.y_prob)
    assert set(out.y_pred) == {0, 1}
