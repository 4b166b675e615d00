"""``python -m ecgml.evaluate run_id=…``: re-evaluate a finished run from its predictions.csv.

Use it to apply another threshold rule or more bootstrap resamples without retraining; the new
metrics (the keys of docs/contracts.md), figures and results table are logged to the same run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.evaluation import TABLES, evaluate_with_config
from ecgml.tracking import check_store, finite_metrics


def fetch_predictions(client: MlflowClient, run_id: str, tracking_uri: str) -> pd.DataFrame:
    try:
        client.get_run(run_id)
    except MlflowException:
        raise EcgmlError(
            f"run_id={run_id} is not in the MLflow store {tracking_uri}: copy the id from the "
            "UI or the `run_id:` line train printed, or set MLFLOW_TRACKING_URI"
        ) from None
    folder = tempfile.mkdtemp(prefix="ecgml-evaluate-")
    try:
        path = client.download_artifacts(run_id, "predictions.csv", folder)
    except (MlflowException, OSError):
        raise EcgmlError(
            f"run {run_id} has no predictions.csv artifact: it did not finish training"
        ) from None
    return pd.read_csv(path, dtype={"patient_id": str, "beat_id": str})


def reevaluate(cfg: DictConfig) -> dict[str, float]:
    """Recompute and log the evaluation of ``cfg.run_id``; returns the new metrics."""
    store = check_store(cfg.tracking_uri)
    client = MlflowClient(store.tracking_uri)
    run_id = str(cfg.run_id)
    predictions = fetch_predictions(client, run_id, store.tracking_uri)
    ev = cfg.evaluation
    out = Path(tempfile.mkdtemp(prefix="ecgml-evaluate-out-"))
    evaluation = evaluate_with_config(
        predictions, ev, out_dir=out, title=client.get_run(run_id).info.run_name or run_id
    )
    metrics, predictions = evaluation.metrics, evaluation.predictions
    for key, value in finite_metrics(metrics).items():
        client.log_metric(run_id, key, value)
    predictions.to_csv(out / "predictions.csv", index=False)
    for name in ("predictions.csv", *TABLES):
        client.log_artifact(run_id, str(out / name))
    client.log_artifacts(run_id, str(out / "figures"), artifact_path="figures")
    client.set_tag(
        run_id,
        "ecgml.evaluation",
        f"threshold_rule={ev.threshold_rule} n_bootstrap={ev.n_bootstrap} seed={ev.seed} "
        f"calibration={ev.calibration}",
    )
    return metrics


def evaluate(cfg: DictConfig) -> None:
    metrics = reevaluate(cfg)
    print(
        f"run {cfg.run_id}: test AUROC {metrics['test/auroc']:.3f} "
        f"({metrics['test/auroc_ci_low']:.3f}–{metrics['test/auroc_ci_high']:.3f}), "
        f"accuracy {metrics['test/accuracy']:.1%}, threshold {metrics['test/threshold']:.3f} "
        f"({cfg.evaluation.threshold_rule})"
    )


main = hydra_entry("evaluate")(evaluate)
