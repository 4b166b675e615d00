"""``python -m ecgml.train task=multilabel|potassium`` end to end: the MLflow keys of the
contracts, equal to a recomputation from the logged ``predictions.csv``; a regression learns K;
cross-validation pools every task; bad input is one line, exit 2, no run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from ecgml import DISORDERS, PROJECT_ROOT
from ecgml.tasks import run_task
from tests.task_fakes import write_task_store
from tests.unit.pipeline.test_train import fast, run_cli


@pytest.fixture(scope="module")
def task_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_store(tmp_path_factory.mktemp("tasks") / "store")


def _train(store: Path, uri: str, *args: str) -> tuple[MlflowClient, str]:
    run = run_cli("data=beats", f"data.path={store}", *fast(*args), env_uri=uri)
    assert run.returncode == 0, run.stderr[-3000:]
    run_id = run.stdout.strip().splitlines()[-1].removeprefix("run_id: ").strip()
    return MlflowClient(uri), run_id


def _predictions(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, "predictions.csv", str(folder)))


@pytest.fixture(scope="module")
def multilabel_run(task_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """One multi-label training run on the task store: (store URI, client, run id)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('ml') / 'mlflow.db'}"
    client, run_id = _train(task_store, uri, "task=multilabel", "trainer.max_epochs=10")
    return uri, client, run_id


@pytest.mark.slow
def test_multilabel_run_logs_the_contract_keys_and_they_recompute(
    tmp_path: Path, multilabel_run, compose_cfg
) -> None:
    _, client, run_id = multilabel_run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "ecgml-multilabel"
    assert run.info.run_name == "multilabel-cnn1d-s42"
    metrics = run.data.metrics
    cfg = compose_cfg("task=multilabel")
    expected = run_task(cfg).metric_keys(tuple(cfg.evaluation.prevalence))
    missing = set(expected) - set(metrics)  # a NaN (e.g. an undefined slope) is not logged
    assert not {k for k in missing if "calibration_slope" not in k}
    assert {f"val/{d}/auroc" for d in DISORDERS} | {"val/macro_auroc_best"} <= set(metrics)
    predictions = _predictions(client, run_id, tmp_path)
    test = predictions[predictions["split"] == "test"]
    for d in DISORDERS:
        assert {f"y_true_{d}", f"y_prob_{d}", f"y_pred_{d}"} <= set(predictions.columns)
        auroc = roc_auc_score(test[f"y_true_{d}"], test[f"y_prob_{d}"])
        assert metrics[f"test/{d}/auroc"] == pytest.approx(auroc, abs=1e-6)
    assert metrics["test/macro_auroc"] == pytest.approx(
        np.mean([metrics[f"test/{d}/auroc"] for d in DISORDERS])
    )
    assert metrics["test/macro_auroc"] > 0.8  # each disorder changes its own part of the beat
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"figures", "per_disorder", "results.md", "explain"} <= artifacts
    results = Path(client.download_artifacts(run_id, "results.md", str(tmp_path))).read_text()
    assert all(f"| {d} |" in results for d in DISORDERS)


@pytest.mark.slow
def test_potassium_regression_learns_the_t_wave(tmp_path: Path, task_store: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 17 validation patients: an 80 % interval (at least 9) instead of the default 90 % (19)
    client, run_id = _train(
        task_store, uri, "task=potassium", "trainer.max_epochs=25", "evaluation.interval_level=0.8"
    )
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "ecgml-potassium"
    metrics = run.data.metrics
    predictions = _predictions(client, run_id, tmp_path)
    test = predictions[predictions["split"] == "test"]
    r = float(np.corrcoef(test["y_true"], test["y_pred"])[0, 1])
    assert metrics["test/pearson_r"] == pytest.approx(r, abs=1e-6)
    assert r > 0.5  # K drives the T amplitude in this store
    mae = float(np.abs(test["y_pred"] - test["y_true"]).mean())
    assert metrics["test/mae"] == pytest.approx(mae, abs=1e-6)
    assert "val/mae_best" in metrics and "test/hyperkalemia_auroc_ci_high" in metrics
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {
        f"figures/{name}.{kind}" for name in ("bland_altman", "scatter") for kind in ("png", "svg")
    }


@pytest.mark.slow
def test_cross_validation_pools_a_multilabel_task(tmp_path: Path, task_store: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, run_id = _train(
        task_store,
        uri,
        "task=multilabel",
        "split=group_kfold",
        "split.n_splits=2",
        "trainer.max_epochs=3",
        "explain.enabled=false",
    )
    parent = client.get_run(run_id)
    assert parent.data.metrics["cv/n_folds"] == 2
    assert (
        "test/macro_auroc" in parent.data.metrics and "cv/macro_auroc_mean" in parent.data.metrics
    )
    pooled = _predictions(client, run_id, tmp_path)
    test = pooled[pooled["split"] == "test"]
    assert (
        test["patient_id"].is_unique is False
        and test.groupby("patient_id")["fold"].nunique().max() == 1
    )
    assert set(test["patient_id"]) == set(pd.read_csv(task_store / "manifest.csv")["patient_id"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=potassium"], "has no 'potassium' column"),
        (["task=multilabel", "data.path={single}"], "task=multilabel needs normal patients"),
        (["task.name=calcium"], "task=calcium is unknown: use one of binary"),
    ],
)
def test_bad_task_input_is_one_line_exit_2_and_no_run(
    tmp_path: Path, args: list[str], message: str
) -> None:
    plain = write_task_store(tmp_path / "plain", serum=False)
    single = write_task_store(tmp_path / "single", sizes={"normal": 12}, serum=False)
    args = [a.format(single=single) for a in args]
    if not any(a.startswith("data.path=") for a in args):
        args.append(f"data.path={plain}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = run_cli("data=beats", *args, *fast(), env_uri=uri)
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]
    client = MlflowClient(uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.slow
def test_predict_uses_the_multilabel_champion_and_says_so(
    tmp_path: Path, multilabel_run, task_store: Path
) -> None:
    uri, _, run_id = multilabel_run
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    promote = subprocess.run(
        [sys.executable, "-m", "ecgml.promote", f"run_id={run_id}"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert promote.returncode == 0 and "ecgml-multilabel v1" in promote.stdout, promote.stderr
    out = tmp_path / "pred.json"
    predict = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.predict",
            f"input={task_store}",
            f"output={out}",
            "progress=false",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predict.returncode == 0, predict.stderr[-2000:]
    results = json.loads(out.read_text())
    sources = {r["models"]["hyperkalemia"] for r in results}
    assert sources == {"models:/ecgml-multilabel@champion (v1)"}
    groups = pd.read_csv(task_store / "manifest.csv").groupby("patient_id")["group"].first()
    scored = pd.DataFrame(
        {
            "group": [groups[r["patient_id"]] for r in results],
            "p": [r["probabilities"]["hyperkalemia"] for r in results],
        }
    )
    means = scored.groupby("group")["p"].mean()
    assert means["hyperkalemia"] > means["normal"]  # the right output answers for its disorder


@pytest.mark.slow
def test_evaluate_reevaluates_a_multilabel_run_with_its_own_keys(multilabel_run) -> None:
    uri, client, run_id = multilabel_run
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.evaluate",
            f"run_id={run_id}",
            "evaluation.n_bootstrap=100",
            "evaluation.threshold_rule=sensitivity",
            "evaluation.target_sensitivity=0.95",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test/macro_auroc" in run.stdout
    metrics = client.get_run(run_id).data.metrics
    for d in DISORDERS:  # the sensitivity rule reached each output's threshold
        assert metrics[f"val_final/{d}/sensitivity"] >= 0.95
