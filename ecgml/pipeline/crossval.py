"""Cross-validation in one command: every fold a child MLflow run, pooled out-of-fold results.

One shape for every unit (beats, records): the children are :func:`~ecgml.pipeline.run.run_one`
runs of one fold each; the parent holds the pooled evaluation.

``split=group_kfold`` (StratifiedGroupKFold by patient) or ``split=leave_center_out`` (each
center — or device, ``split.by=device`` — held out in turn) with ``split.fold=null`` train every
fold under one parent run. The parent carries the ``test/*`` keys of docs/contracts.md, computed
on the pooled out-of-fold test predictions (each patient tested exactly once), the mean ± SD of the
folds' metrics (``cv/<metric>_mean``, ``cv/<metric>_sd``), and per-center / per-device results.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from ecgml.beatstore import BeatStore
from ecgml.data.datamodule import fold_names
from ecgml.data.splits import build_split
from ecgml.data.tasks import task_spec
from ecgml.evaluation import METRICS, TABLES
from ecgml.evaluation.clinical import GIVEN
from ecgml.evaluation.predictions import Evaluation
from ecgml.evaluation.tasks import PATIENT_PREDICTIONS, TaskEvaluation
from ecgml.evaluation.threshold import ThresholdChoice
from ecgml.pipeline.context import RunResult
from ecgml.pipeline.run import load_unit_store, run_one
from ecgml.pipeline.units import run_unit
from ecgml.pipeline.validation_report import log_validation_report
from ecgml.recordstore import RecordStore
from ecgml.tasks import run_task
from ecgml.tracking import (
    NOTE_TAG,
    client_run,
    ensure_experiment,
    experiment_name,
    log_dataset_inputs,
    log_metrics_batch,
    log_params_batch,
)
from ecgml.tracking import resolve_store as resolve_tracking_store
from ecgml.tracking.artifacts import log_files, log_folder
from ecgml.tracking.runs import run_subject

log = logging.getLogger(__name__)
SUMMARY_KEYS = tuple(f"test/{m}" for m in METRICS)


@dataclass
class CrossValResult:
    """The parent run of a cross-validation and what it logged."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    predictions: pd.DataFrame = field(repr=False)
    fold_run_ids: list[str] = field(default_factory=list)
    fit_metrics: dict[str, float] = field(default_factory=dict)
    #: The pooled threshold with its interval (a binary task's evaluation; None otherwise).
    threshold: ThresholdChoice | None = None


def runs_all_folds(cfg: DictConfig) -> bool:
    """The split object decides (a new split type needs no change here)."""
    return build_split(cfg.split).runs_all_folds


def with_fold(cfg: DictConfig, fold: Any) -> DictConfig:
    fold_cfg = copy.deepcopy(cfg)
    with open_dict(fold_cfg):
        fold_cfg.split.fold = fold
    return fold_cfg


def parent_run_name(cfg: DictConfig) -> str:
    base = cfg.logger.run_name or f"{run_subject(cfg)}-{cfg.model.name}-s{cfg.seed}"
    return f"{base}-{cfg.split.name}"


def pool_predictions(fold_predictions: list[pd.DataFrame], folds: list[Any]) -> pd.DataFrame:
    """Test rows of every fold (each patient once) + validation rows keyed by fold.

    Validation patients recur across folds; their ids get a ``fold<k>/`` prefix so the pooled
    threshold choice sees distinct (fold, patient) units instead of a leak.
    """
    parts = []
    for fold, frame in zip(folds, fold_predictions, strict=True):
        frame = frame.assign(fold=str(fold))
        val = frame["split"] == "val"
        frame.loc[val, "patient_id"] = f"fold{fold}/" + frame.loc[val, "patient_id"].astype(str)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def fold_summary(
    fold_metrics: list[dict[str, float]], keys: Sequence[str] = SUMMARY_KEYS
) -> dict[str, float]:
    """Mean and SD over folds of each test metric (NaN folds ignored)."""
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([m.get(key, np.nan) for m in fold_metrics], dtype=float)
        finite = values[np.isfinite(values)]
        name = key.removeprefix("test/")
        summary[f"cv/{name}_mean"] = float(finite.mean()) if finite.size else float("nan")
        summary[f"cv/{name}_sd"] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    summary["cv/n_folds"] = float(len(fold_metrics))
    return summary


def unit_folds(cfg: DictConfig, store: BeatStore | RecordStore) -> list[Any]:
    """The split's folds over the task's labelled rows of ``store`` (beats or records)."""
    labelled, _ = task_spec(cfg).labels(store.meta, cfg.disorder, str(store.root))
    return fold_names(labelled, cfg.split)


def cross_validate(
    cfg: DictConfig,
    store: BeatStore | RecordStore | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> CrossValResult:
    """Train every fold as a child run (:func:`run_one`, whatever the unit) and evaluate the
    pooled out-of-fold predictions on the parent."""
    loaded = store or load_unit_store(cfg)  # loaded once for every fold
    folds = unit_folds(cfg, loaded)
    task = task_spec(cfg)
    tracking = resolve_tracking_store(cfg.logger.tracking_uri)
    client = MlflowClient(tracking.tracking_uri)
    experiment_id = ensure_experiment(tracking, experiment_name(cfg))
    tags = {"disorder": task.subject(cfg.disorder.name), "task": task.name}
    if isinstance(loaded, BeatStore):
        tags["dataset.digest"] = loaded.digest
    with client_run(client, experiment_id, parent_run_name(cfg), tags) as run_id:
        log.info("cross-validation: %d folds (%s) under run %s", len(folds), cfg.split.name, run_id)
        results = [
            run_one(with_fold(cfg, fold), parent_run_id=run_id, store=loaded, callbacks=callbacks)
            for fold in folds
        ]
        evaluation = evaluate_pooled(client, run_id, cfg, results, folds)
        metrics, pooled = evaluation.metrics, evaluation.predictions
        describe_parent(client, run_id, cfg, metrics, pooled, len(folds))
        log_validation_report(client, run_id)
    fold_ids = [r.run_id for r in results]
    threshold = getattr(evaluation, "threshold", None)  # one output: its threshold
    fit = results[-1].fit_metrics
    return CrossValResult(run_id, experiment_id, metrics, pooled, fold_ids, fit, threshold)


def describe_parent(
    client: MlflowClient,
    run_id: str,
    cfg: DictConfig,
    metrics: dict[str, float],
    pooled: pd.DataFrame,
    n_folds: int,
) -> None:
    """The parent's line on its run page (the task's, over the pooled out-of-fold predictions)
    and its dataset: the pooled test rows, each patient once, with the fold that tested it."""
    note = run_task(cfg).description(cfg, metrics)
    client.set_tag(run_id, NOTE_TAG, f"{note} · {n_folds}-fold out-of-fold, one child run per fold")
    columns = [c for c in ("patient_id", "beat_id", "record_id", "group", "fold") if c in pooled]
    test = pooled.loc[pooled["split"] == "test", columns].reset_index(drop=True)
    source, name = run_unit(cfg).dataset(cfg)
    log_dataset_inputs(client, run_id, {"test": test}, source, name, _digest_of(pooled))


def _digest_of(frame: pd.DataFrame) -> str:
    """A short digest of the pooled rows' ids (the parent's dataset digest)."""
    ids = pd.util.hash_pandas_object(frame["patient_id"].astype(str), index=False)
    return f"{int(ids.sum()) & 0xFFFFFFFFFFFF:012x}"


def evaluate_pooled(
    client: MlflowClient, run_id: str, cfg: DictConfig, results: list[RunResult], folds: list[Any]
) -> Evaluation | TaskEvaluation:
    """Evaluate the pooled out-of-fold predictions and log them to the parent run; the task's
    evaluation back, its metrics with the folds' summary added."""
    pooled = pool_predictions([r.predictions for r in results], folds)
    out = Path(tempfile.mkdtemp(prefix="ecgml-cv-"))
    task = run_task(cfg)
    title = task.title(cfg, f"{len(folds)}-fold out-of-fold")
    # each fold's run recalibrated its own predictions
    evaluation = task.evaluate(pooled, cfg.evaluation, out, title, calibration=GIVEN)
    metrics, pooled = evaluation.metrics, evaluation.predictions
    keys = task.summary_keys()
    metrics.update(fold_summary([r.metrics for r in results], keys))
    test = pooled[pooled["split"] == "test"]
    extra_files = task.pooled_tables(test, metrics, cfg.evaluation, out)
    log_parent(client, run_id, cfg, metrics, pooled, results, folds, out, extra_files, keys)
    return evaluation


def unit_outputs(
    client: MlflowClient,
    run_id: str,
    results: list[RunResult],
    pooled: pd.DataFrame,
    out: Path,
) -> tuple[dict[str, float], list[Path]]:
    """What a unit adds to the parent, from its folds: their tags (a record run's unit, leads
    and skipped counts; the same store for every fold) and ``skipped_records.csv`` with its
    counts as metrics."""
    first = results[0]
    for key, value in first.tags.items():
        client.set_tag(run_id, key, value)
    if first.skipped is None:
        return {}, []
    path = out / "skipped_records.csv"
    first.skipped.to_csv(path, index=False)
    counts = {k: v for k, v in first.metrics.items() if k.startswith("records/")}
    counts["test/n_records"] = float((pooled["split"] == "test").sum())
    return counts, [path]


def log_parent(
    client: MlflowClient,
    run_id: str,
    cfg: DictConfig,
    metrics: dict[str, float],
    pooled: pd.DataFrame,
    results: list[RunResult],
    folds: list[Any],
    out: Path,
    extra_files: list[Path],
    keys: tuple[str, ...],
) -> None:
    unit_metrics, unit_files = unit_outputs(client, run_id, results, pooled, out)
    metrics.update(unit_metrics)
    log_params_batch(client, run_id, cfg)
    log_metrics_batch(client, run_id, metrics)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    pooled.to_csv(out / "predictions.csv", index=False)
    splits = pooled.loc[pooled["split"] == "test", ["patient_id", "fold"]].drop_duplicates()
    splits.assign(split="test").to_csv(out / "splits.csv", index=False)
    per_fold = pd.DataFrame(
        [
            {
                "fold": f,
                "run_id": r.run_id,
                **{k: r.metrics.get(k) for k in keys},
            }
            for f, r in zip(folds, results, strict=True)
        ]
    )
    per_fold.to_csv(out / "results_folds.csv", index=False)
    names = ["config.yaml", "predictions.csv", PATIENT_PREDICTIONS, "splits.csv", *TABLES]
    names.append("results_folds.csv")
    # a multi-label or regression run writes results.* only
    log_files(client, run_id, [*(out / n for n in names), *extra_files, *unit_files])
    for folder in ("figures", "per_disorder"):
        log_folder(client, run_id, out / folder)
