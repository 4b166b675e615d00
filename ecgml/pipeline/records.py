"""``run_records(cfg)``: a record-level run (``data=records``, ``data=synthetic data.unit=record``).

One example is a whole recording (every beat of it, or the strip, :mod:`ecgml.data.records`);
the model is a record model (``model=set_cnn1d``, ``model=strip_cnn1d``,
:mod:`ecgml.models.record_models`) inside the task's LightningModule (the beat path's own
:func:`~ecgml.pipeline.fitters.task_module`: binary, multi-label, regression). Predictions are one
row per record (``patient_id, record_id, split, y_true, y_prob, y_pred, n_beats``; a set model
with attention adds ``beat_weights`` and ``top_beat``) and are evaluated by the beat path's own
:func:`~ecgml.evaluation.evaluate_with_config`, each record read as one row (``beat_id`` =
``record_id``): ``test/*`` are record-level, ``test_patient/*`` patient-level. ``split.fold=null``
runs every fold and evaluates the pooled out-of-fold predictions (one MLflow run).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ecgml.data.records import (
    RecordDataModule,
    RecordTable,
    build_record_table,
    record_unit,
    resolve_leads,
    resolve_record_store,
    train_beats,
)
from ecgml.data.splits import build_split
from ecgml.data.tasks import task_spec
from ecgml.errors import EcgmlError
from ecgml.evaluation import TABLES, Evaluation, evaluate_with_config
from ecgml.evaluation.tasks import TaskEvaluation, evaluate_task
from ecgml.models.factory import build_backbone, pinned_backbone
from ecgml.models.module import BeatClassifier
from ecgml.models.record_models import SetModel, StripModel, model_input, strip_saliency
from ecgml.pipeline.beat_model import log_beat_model, model_spec, task_model_spec
from ecgml.pipeline.fitters import (
    build_callbacks,
    fit_trainer,
    kept_checkpoint,
    member_pos_weight,
    task_module,
    with_outputs,
)
from ecgml.pipeline.run import RunResult, hydra_overrides, run_dir, write_config_files
from ecgml.recordstore import RecordStore, load_record_store
from ecgml.tracking import (
    NOTE_TAG,
    finite_metrics,
    flatten_config,
    make_logger,
    preserved_tracking_uri,
    tracked_run,
)
from ecgml.tracking.runs import run_id_of
from ecgml.tracking.store import resolve_store

__all__ = ["fit_record_model", "predict_records", "record_fold", "record_unit", "run_records"]

log = logging.getLogger(__name__)


@dataclass
class FittedRecords:
    """A fitted record model, its data module and the fit's last per-epoch metrics."""

    model: BeatClassifier
    data: RecordDataModule
    fit_metrics: dict[str, float]


def build_record_model(
    cfg: DictConfig, table: RecordTable, data: RecordDataModule
) -> BeatClassifier:
    """``cfg.model``'s record backbone inside the task's LightningModule."""
    if "_target_" not in cfg.model.get("backbone", {}):
        raise EcgmlError(
            f"model={cfg.model.name} has no backbone: use model=set_cnn1d or strip_cnn1d"
        )
    strip = model_input(cfg.model) == "strip"
    seq_len = table.strip_len if strip else table.seq_len
    backbone = build_backbone(cfg.model, table.n_leads, table.task.n_outputs, seq_len)
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    targets = (
        table.meta.loc[table.meta["split"] == "train", "target"].to_numpy(dtype=float)
        if "target" in table.meta.columns
        else np.zeros(0)
    )
    pos_weight = member_pos_weight(cfg, data)  # type: ignore[arg-type]  # duck-typed data module
    return task_module(table.task, backbone, optimizer, scheduler, pos_weight, targets, cfg)


def fit_record_model(
    cfg: DictConfig,
    table: RecordTable,
    logger: Any = False,
    out: Path | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> FittedRecords:
    """Train ``cfg.model`` on ``table``'s training records (validation: its val records)."""
    data = RecordDataModule(
        table, int(cfg.data.batch_size), int(cfg.data.num_workers), cfg.seed, train_beats(cfg.data)
    )
    model = build_record_model(cfg, table, data)
    folder = (out or run_dir()) / "checkpoints"
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=logger, callbacks=[*build_callbacks(cfg, folder), *callbacks]
    )
    fit_trainer(trainer, model, data)  # type: ignore[arg-type]  # a LightningDataModule too
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    path = kept_checkpoint(trainer)
    if path:
        model = type(model).load_from_checkpoint(
            path, backbone=model.backbone, optimizer=model.optimizer_factory, weights_only=True
        )
    return FittedRecords(model.eval(), data, fit_metrics)


def predict_records(fitted: FittedRecords, split: str) -> pd.DataFrame:
    """One row per record of ``split``: the model's outputs; an attention set model adds each
    beat's weight (``beat_weights``, ``;``-joined) and the heaviest beat (``top_beat``), a strip
    model each second's share of the saliency (``segment_weights``) and the start of the
    heaviest second (``top_segment_s``)."""
    frame = fitted.data.prediction_frame(split)
    model = fitted.model.eval()
    backbone = model.backbone
    values, weights, segments = [], [], []
    for inputs, _ in fitted.data.loader(split):
        with torch.inference_mode():
            values.append(model.predict_values(inputs).float().cpu())
            if isinstance(backbone, SetModel) and backbone.pooling == "attention":
                w = backbone.attention(inputs).cpu().numpy()
                mask = inputs["mask"].numpy()
                weights += [w[k, mask[k]] for k in range(len(w))]
        if isinstance(backbone, StripModel):
            fs = fitted.data.table.strip_fs
            segments += list(strip_saliency(model, inputs["strip"], fs).numpy())
    out = with_outputs(frame, model, torch.cat(values).numpy() if values else np.zeros(0))
    if weights:
        out["beat_weights"] = [";".join(f"{v:.4f}" for v in w) for w in weights]
        out["top_beat"] = [int(np.argmax(w)) for w in weights]
    if segments:
        out["segment_weights"] = [";".join(f"{v:.4f}" for v in w) for w in segments]
        out["top_segment_s"] = [int(np.argmax(w)) for w in segments]
    return out


def record_fold(
    cfg: DictConfig,
    store: RecordStore,
    fold: Any = None,
    logger: Any = False,
    out: Path | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> tuple[RecordTable, pd.DataFrame, FittedRecords]:
    """Table, val+test predictions and fitted model of one fold (``fold=None``: ``cfg.split``)."""
    split = build_split(cfg.split)
    if fold is not None:
        split = split.with_fold(fold)
    table = build_record_table(store, cfg.disorder, split, cfg.data, task_spec(cfg))
    fitted = fit_record_model(cfg, table, logger, out, callbacks)
    predictions = pd.concat(
        [predict_records(fitted, s) for s in ("val", "test")], ignore_index=True
    )
    return table, predictions, fitted


def run_records(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> RunResult:
    """Fit, predict (one row per record), evaluate at record and patient level, log to MLflow.

    ``split.fold=null`` on a k-fold split trains every fold and evaluates the pooled
    out-of-fold test predictions (the validation rows of each fold pick the threshold)."""
    with preserved_tracking_uri():
        task = task_spec(cfg)
        leads = resolve_leads(cfg.data.get("leads"))
        store = load_record_store(resolve_record_store(cfg.data), leads)  # bad stores fail first
        L.seed_everything(cfg.seed, workers=True)
        split = build_split(cfg.split)
        folds = [None]
        if split.runs_all_folds:
            folds = split.folds(store.meta.assign(y=0))
        out = run_dir()
        tags = {
            "disorder": task.subject(cfg.disorder.name),
            "task": task.name,
            "ecgml.unit": "record",
            "ecgml.leads": ",".join(leads),
        }
        logger = make_logger(cfg, tags=tags)
        logger.log_hyperparams(flatten_config(cfg))
        with tracked_run(logger.experiment, run_id_of(logger)):
            frames, fitted, table = [], None, None
            for fold in folds:
                first = fold in (None, folds[0])  # the first fold logs its curves to the run
                table, predictions, fitted = record_fold(
                    cfg,
                    store,
                    fold,
                    logger if first else False,
                    out if fold is None else out / f"fold{fold}",
                    callbacks,
                )
                if fold is not None:
                    predictions["fold"] = fold
                frames.append(predictions)
            assert table is not None and fitted is not None
            predictions = pd.concat(frames, ignore_index=True)
            servable = fitted if folds == [None] else None  # k fold models: none is the model
            return _evaluate_and_log(
                cfg, logger, table, predictions, fitted.fit_metrics, out, servable
            )


def unservable_reason(cfg: DictConfig) -> str | None:
    """Why a record run's model is not logged for ``ecgml.predict`` (None: it is)."""
    if not cfg.training.get("log_model", True):
        return "training.log_model=false"
    return None


def log_record_model(
    cfg: DictConfig, table: RecordTable, fitted: FittedRecords, evaluation: Any, run_id: str
) -> None:
    """Log a record model as the run's MLflow model, its ``data.leads`` and task in the spec:
    ``ecgml.promote`` registers it like a beat model of its task (``ecgml-<disorder>``,
    ``ecgml-multilabel``, ``ecgml-potassium``…) and ``ecgml.predict`` then reads each
    recording whole, every lead the model reads.

    A set model (``unit: record``) reads every beat of a recording together (served by
    ``mlflow models serve``, each request row is a recording of one beat). A whole-strip model
    (``unit: strip``) reads the recording itself: its layout is the strip's (``seq_len`` samples
    at ``fs`` = ``data.strip_fs``, start-aligned), prepared by
    :func:`~ecgml.signal.prepare_strip` in training and serving alike."""
    strip = model_input(cfg.model) == "strip"
    seq_len, fs, r_index = (
        (table.strip_len, table.strip_fs, None)
        if strip
        else (table.seq_len, table.fs, table.r_index)
    )
    if table.task.is_binary:
        threshold = float(evaluation.metrics["test/threshold"])
        spec = model_spec(cfg, seq_len, fs, r_index, threshold, evaluation.calibrator.to_dict())
    else:
        spec = task_model_spec(cfg, seq_len, fs, r_index, fitted.model, evaluation)
    spec = dataclasses.replace(
        spec,
        unit="strip" if strip else "record",
        baseline="none" if strip else spec.baseline,
        backbone=pinned_backbone(cfg.model.backbone),
        leads=list(table.leads),
    )
    log_beat_model(resolve_store(cfg.logger.tracking_uri).tracking_uri, run_id, fitted.model, spec)


def _evaluate_and_log(
    cfg: DictConfig,
    logger: Any,
    table: RecordTable,
    predictions: pd.DataFrame,
    fit_metrics: dict[str, float],
    out: Path,
    fitted: FittedRecords | None = None,
) -> RunResult:
    task = table.task
    title = f"{task.subject(cfg.disorder.name)} ({cfg.model.name}, records)"
    evaluation: Evaluation | TaskEvaluation
    if task.is_binary:
        evaluation = evaluate_with_config(predictions, cfg.evaluation, out_dir=out, title=title)
    else:
        evaluation = evaluate_task(task, predictions, cfg.evaluation, out_dir=out, title=title)
    metrics: dict[str, Any] = dict(evaluation.metrics)
    metrics["test/n_records"] = float((predictions["split"] == "test").sum())
    metrics["records/skipped"] = float(len(table.skipped))
    metrics["records/mean_beats"] = float(table.meta["n_beats"].mean())
    client, run_id = logger.experiment, run_id_of(logger)
    logger.log_metrics(finite_metrics(metrics))
    client.set_tag(run_id, "records.skipped", str(len(table.skipped)))
    for kind, count in table.skip_reasons().items():
        client.set_tag(run_id, f"records.skipped.{kind}", str(count))
    frame = evaluation.predictions
    write_config_files(cfg, out, hydra_overrides())
    frame.to_csv(out / "predictions.csv", index=False)
    table.splits.to_csv(out / "splits.csv", index=False)
    pd.DataFrame(
        [s.__dict__ for s in table.skipped], columns=["row", "record_id", "patient_id", "reason"]
    ).to_csv(out / "skipped_records.csv", index=False)
    for name in (
        "config.yaml",
        "overrides.yaml",
        "predictions.csv",
        "splits.csv",
        "skipped_records.csv",
        *TABLES,
    ):
        if (out / name).is_file():
            client.log_artifact(run_id, str(out / name))
    if (out / "figures").is_dir():
        client.log_artifacts(run_id, str(out / "figures"), artifact_path="figures")
    if fitted is None:
        log.info("record run %s: no model logged (split.fold=null: one model per fold)", run_id)
    elif (reason := unservable_reason(cfg)) is not None:
        log.info("record run %s: no model logged for ecgml.predict (%s)", run_id, reason)
    else:
        log_record_model(cfg, table, fitted, evaluation, run_id)
    auroc = metrics.get("test/auroc", metrics.get("test/macro_auroc", float("nan")))
    client.set_tag(
        run_id,
        NOTE_TAG,
        f"records · model {cfg.model.name} · leads "
        f"{','.join(table.leads)} · test AUROC {auroc:.3f}",
    )
    log.info("record run %s: %d records, %d skipped", run_id, len(frame), len(table.skipped))
    return RunResult(run_id, str(logger.experiment_id), metrics, frame, None, fit_metrics)
