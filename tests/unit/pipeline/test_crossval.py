"""One command, all folds: a parent run with one child per fold and pooled out-of-fold metrics."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ecgml.evaluate import reevaluate
from ecgml.evaluation import METRICS
from ecgml.pipeline.crossval import cross_validate, fold_summary, pool_predictions
from tests.conftest import compose_once

pytestmark = pytest.mark.slow


def cv_config(toy_store: Path, uri: str, *overrides: str):
    return compose_once(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "evaluation.n_bootstrap=100",
        f"logger.tracking_uri={uri}",
        *overrides,
    )


def test_group_kfold_trains_every_fold_under_one_parent(
    toy_store: Path, session_tracking_uri: str
) -> None:
    cfg = cv_config(toy_store, session_tracking_uri, "split=group_kfold", "split.n_splits=3")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    result = cross_validate(cfg)
    # Lightning's logger sets MLFLOW_TRACKING_URI; train() must not leak it to later runs.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    client = MlflowClient(session_tracking_uri)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "hyperkalemia-cnn1d-s42-group_kfold"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert sorted(c.info.run_name for c in children) == [
        f"hyperkalemia-cnn1d-s42-fold{k}" for k in range(3)
    ]
    test = result.predictions[result.predictions["split"] == "test"]
    assert test["patient_id"].is_unique is False  # several beats per patient …
    assert test.groupby("patient_id")["fold"].nunique().max() == 1  # … each patient tested once
    assert test["patient_id"].nunique() == 100
    for m in METRICS:
        assert f"test/{m}" in parent.data.metrics
        assert f"cv/{m}_mean" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"predictions.csv", "results.md", "results_folds.csv", "figures"} <= artifacts
    assert {"validation_report.md", "validation_report.html"} <= artifacts
    # a first-class parent: its line, its source and the pooled test rows as its dataset
    assert "3-fold out-of-fold" in parent.data.tags["mlflow.note.content"]
    assert "mlflow.source.name" in parent.data.tags
    (dataset,) = parent.inputs.dataset_inputs
    assert dataset.dataset.name.endswith("-test")
    assert {"results_by_center.csv", "results_by_device.csv"} <= artifacts


def test_leave_center_out_tests_each_center_once(
    toy_store: Path, session_tracking_uri: str
) -> None:
    cfg = cv_config(toy_store, session_tracking_uri, "split=leave_center_out")
    result = cross_validate(cfg)
    test = result.predictions[result.predictions["split"] == "test"]
    assert sorted(test["fold"].unique()) == ["C0", "C1", "C2"]
    assert (test["fold"] == test["center"]).all()


def test_pooling_and_summary_helpers() -> None:
    fold_a = pd.DataFrame(
        {"patient_id": ["a", "b"], "split": ["val", "test"], "y_true": [0, 1], "y_prob": [0.2, 0.9]}
    )
    fold_b = pd.DataFrame(
        {"patient_id": ["b", "a"], "split": ["val", "test"], "y_true": [1, 0], "y_prob": [0.7, 0.4]}
    )
    pooled = pool_predictions([fold_a, fold_b], [0, 1])
    assert pooled.loc[pooled["split"] == "val", "patient_id"].tolist() == ["fold0/a", "fold1/b"]
    assert pooled.loc[pooled["split"] == "test", "patient_id"].tolist() == ["b", "a"]
    summary = fold_summary([{"test/auroc": 0.8}, {"test/auroc": 0.9}, {"test/auroc": float("nan")}])
    assert summary["cv/auroc_mean"] == pytest.approx(0.85)
    assert summary["cv/auroc_sd"] == pytest.approx(0.0707, abs=1e-3)
    assert summary["cv/n_folds"] == 3


def test_reevaluate_logs_new_threshold_to_the_same_run(trained_run, session_tracking_uri) -> None:
    _, result = trained_run
    cfg = compose_once(
        f"run_id={result.run_id}",
        "evaluation.threshold_rule=fixed",
        "evaluation.threshold_value=0.7",
        "evaluation.n_bootstrap=50",
        f"tracking_uri={session_tracking_uri}",
        name="evaluate",
    )
    metrics = reevaluate(cfg)
    assert metrics["test/threshold"] == 0.7
    run = MlflowClient(session_tracking_uri).get_run(result.run_id)
    assert run.data.metrics["test/threshold"] == 0.7
    assert "threshold_rule=fixed" in run.data.tags["ecgml.evaluation"]
    client = MlflowClient(session_tracking_uri)
    with tempfile.TemporaryDirectory() as folder:  # the validation report, rebuilt
        report = Path(client.download_artifacts(result.run_id, "validation_report.md", folder))
        assert "threshold 0.700 (fixed, chosen on validation)" in report.read_text()
