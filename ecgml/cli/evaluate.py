"""``python -m ecgml.evaluate run_id=…``: re-evaluate a finished run from its predictions.csv.

Use it to apply another threshold rule or more bootstrap resamples without retraining; the new
metrics (the keys of docs/contracts.md), figures, results table and validation report are logged
to the same run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml.cli import hydra_entry
from ecgml.data.tasks import TaskSpec, task_spec
from ecgml.evaluation import TABLES
from ecgml.evaluation.tasks import PATIENT_PREDICTIONS
from ecgml.pipeline.validation_report import log_validation_report
from ecgml.tasks import run_task
from ecgml.tracking import check_store, finite_metrics
from ecgml.tracking.artifacts import fetch_run, log_files, log_folder, required_artifact


def fetch_predictions(client: MlflowClient, run_id: str, tracking_uri: str) -> pd.DataFrame:
    fetch_run(client, run_id, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="ecgml-evaluate-") as folder:
        why = "it did not finish training"
        path = required_artifact(client, run_id, "predictions.csv", Path(folder), why)
        return pd.read_csv(path, dtype={"patient_id": str, "beat_id": str})


def reevaluate(cfg: DictConfig) -> dict[str, float]:
    """Recompute and log the evaluation of ``cfg.run_id``; returns the new metrics."""
    store = check_store(cfg.tracking_uri)
    client = MlflowClient(store.tracking_uri)
    run_id = str(cfg.run_id)
    predictions = fetch_predictions(client, run_id, store.tracking_uri)
    ev = cfg.evaluation
    out = Path(tempfile.mkdtemp(prefix="ecgml-evaluate-out-"))
    task = run_task(run_task_spec(client, run_id))
    title = client.get_run(run_id).info.run_name or run_id
    evaluation = task.evaluate(predictions, ev, out, title)
    for key, value in finite_metrics(evaluation.metrics).items():
        client.log_metric(run_id, key, value)
    evaluation.predictions.to_csv(out / "predictions.csv", index=False)
    names = ("predictions.csv", PATIENT_PREDICTIONS, *TABLES)
    log_files(client, run_id, (out / name for name in names))
    for folder in ("figures", "per_disorder"):
        log_folder(client, run_id, out / folder)
    settings = f"threshold_rule={ev.threshold_rule} n_bootstrap={ev.n_bootstrap} seed={ev.seed}"
    if getattr(evaluation, "calibrator", None) is not None:  # one output: its calibration
        settings += f" calibration={ev.calibration}"
    client.set_tag(run_id, "ecgml.evaluation", settings)
    log_validation_report(client, run_id)  # rebuilt from what the run holds now
    return dict(evaluation.metrics)


def run_task_spec(client: MlflowClient, run_id: str) -> TaskSpec:
    """The task a run was trained for (its ``task`` tag; older runs: binary)."""
    run = client.get_run(run_id)
    name = run.data.tags.get("task") or run.data.params.get("task.name")
    disorder = run.data.params.get("disorder.name", "hypokalemia")
    task = {"task": {"name": name}} if name else {}  # no task recorded: binary
    return task_spec(OmegaConf.create({**task, "disorder": {"name": disorder}}))


def evaluate(cfg: DictConfig) -> None:
    metrics = reevaluate(cfg)
    if "test/macro_auroc" in metrics or "test/mae" in metrics:
        key = "test/macro_auroc" if "test/macro_auroc" in metrics else "test/mae"
        print(
            f"run {cfg.run_id}: {key} {metrics[key]:.3f} "
            f"({metrics[f'{key}_ci_low']:.3f}–{metrics[f'{key}_ci_high']:.3f})"
        )
        return
    print(
        f"run {cfg.run_id}: test AUROC {metrics['test/auroc']:.3f} "
        f"({metrics['test/auroc_ci_low']:.3f}–{metrics['test/auroc_ci_high']:.3f}), "
        f"accuracy {metrics['test/accuracy']:.1%}, threshold {metrics['test/threshold']:.3f} "
        f"({cfg.evaluation.threshold_rule})"
    )


main = hydra_entry("evaluate")(evaluate)
