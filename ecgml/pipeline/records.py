"""``run_records(cfg)``: a record-level run (``data=records``, ``data=synthetic data.unit=record``).

One example is a whole recording (every beat of it, or the strip, :mod:`ecgml.data.records`);
the model is a record model (``model=set_cnn1d``, ``model=strip_cnn1d``,
:mod:`ecgml.models.record_models`) inside the task's LightningModule (the beat path's own
:func:`~ecgml.pipeline.fitters.task_module`: binary, multi-label, regression). Predictions are one
row per record (``patient_id, record_id, split, y_true, y_prob, y_pred, n_beats``; a set model
with attention adds ``beat_weights`` and ``top_beat``) and are evaluated by the beat path's own
:func:`~ecgml.evaluation.evaluate_with_config`, each record read as one row (``beat_id`` =
``record_id``): ``test/*`` are record-level, ``test_patient/*`` patient-level. ``split.fold=null``
runs every fold as a child of one parent run, as for beats
(:func:`~ecgml.pipeline.crossval.cross_validate`).
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
from ecgml.evaluation import TABLES
from ecgml.models.factory import build_backbone, pinned_backbone
from ecgml.models.module import BeatClassifier
from ecgml.models.record_models import SetModel, StripModel, model_input, strip_saliency
from ecgml.pipeline.beat_model import log_beat_model, model_spec, n_ensemble_members
from ecgml.pipeline.context import RunResult, hydra_overrides, run_dir, write_config_files
from ecgml.pipeline.fitters import (
    build_callbacks,
    fit_trainer,
    kept_checkpoint,
    member_pos_weight,
    task_module,
    with_outputs,
)
from ecgml.recordstore import RecordStore, load_record_store
from ecgml.tasks import run_task
from ecgml.tracking import (
    NOTE_TAG,
    finite_metrics,
    flatten_config,
    lightning_run,
    preserved_tracking_uri,
)
from ecgml.tracking.artifacts import log_files, log_folder
from ecgml.tracking.runs import run_id_of
from ecgml.tracking.store import resolve_store

__all__ = [
    "fit_and_predict_records",
    "fit_record_model",
    "load_records",
    "predict_records",
    "record_unit",
    "run_records",
]

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


def fit_and_predict_records(
    cfg: DictConfig,
    store: RecordStore,
    logger: Any = False,
    out: Path | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> tuple[RecordTable, pd.DataFrame, FittedRecords]:
    """Table, val+test predictions and fitted model of ``cfg.split`` (one fold of a k-fold)."""
    table = build_record_table(
        store, cfg.disorder, build_split(cfg.split), cfg.data, task_spec(cfg)
    )
    fitted = fit_record_model(cfg, table, logger, out, callbacks)
    predictions = pd.concat(
        [predict_records(fitted, s) for s in ("val", "test")], ignore_index=True
    )
    return table, predictions, fitted


def load_records(cfg: DictConfig) -> RecordStore:
    """The configured record store, every record cut to the leads ``data.leads`` names."""
    leads = resolve_leads(cfg.data.get("leads"))
    return load_record_store(resolve_record_store(cfg.data), leads)


def run_records(
    cfg: DictConfig,
    parent_run_id: str | None = None,
    store: RecordStore | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> RunResult:
    """Fit, predict (one row per record), evaluate at record and patient level, log to MLflow.

    One fold of a k-fold split is one such run under the cross-validation parent
    (``parent_run_id``; :func:`~ecgml.pipeline.crossval.cross_validate`), as for beats."""
    with preserved_tracking_uri():
        task = task_spec(cfg)
        store = store or load_records(cfg)  # bad stores fail before a run opens
        L.seed_everything(cfg.seed, workers=True)
        out = run_dir()
        if parent_run_id is not None:  # the folds of one job share its folder
            out = out / f"fold{cfg.split.fold}"
        tags = {
            "disorder": task.subject(cfg.disorder.name),
            "task": task.name,
            "ecgml.unit": "record",
            "ecgml.leads": ",".join(resolve_leads(cfg.data.get("leads"))),
        }
        with lightning_run(cfg, tags, parent_run_id) as logger:
            logger.log_hyperparams(flatten_config(cfg))
            table, predictions, fitted = fit_and_predict_records(cfg, store, logger, out, callbacks)
            return _evaluate_and_log(cfg, logger, table, predictions, fitted, out, tags)


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
    base = model_spec(cfg, seq_len, fs, r_index, 0.5, ensemble=n_ensemble_members(fitted.model))
    spec = run_task(table.task).finish_spec(base, cfg, fitted.model, evaluation)
    spec = dataclasses.replace(
        spec,
        unit="strip" if strip else "record",
        baseline="none" if strip else spec.baseline,
        backbone=pinned_backbone(cfg.model.backbone),
        leads=list(table.leads),
    )
    log_beat_model(resolve_store(cfg.logger.tracking_uri).tracking_uri, run_id, fitted.model, spec)


def skipped_frame(table: RecordTable) -> pd.DataFrame:
    """``skipped_records.csv``: each record left out, and why."""
    return pd.DataFrame(
        [s.__dict__ for s in table.skipped], columns=["row", "record_id", "patient_id", "reason"]
    )


def skip_tags(table: RecordTable) -> dict[str, str]:
    """``records.skipped`` and one ``records.skipped.<kind>`` count per kind of reason."""
    kinds = table.skip_reasons()
    return {
        "records.skipped": str(len(table.skipped)),
        **{f"records.skipped.{kind}": str(n) for kind, n in kinds.items()},
    }


def _evaluate_and_log(
    cfg: DictConfig,
    logger: Any,
    table: RecordTable,
    predictions: pd.DataFrame,
    fitted: FittedRecords,
    out: Path,
    tags: dict[str, str],
) -> RunResult:
    task = run_task(table.task)
    evaluation = task.evaluate(predictions, cfg.evaluation, out, task.title(cfg, "records"))
    metrics: dict[str, Any] = dict(evaluation.metrics)
    metrics.update(record_counts(table, predictions))
    client, run_id = logger.experiment, run_id_of(logger)
    logger.log_metrics(finite_metrics(metrics))
    skipped = skipped_frame(table)
    for key, value in skip_tags(table).items():
        client.set_tag(run_id, key, value)
    frame = evaluation.predictions
    write_config_files(cfg, out, hydra_overrides())
    frame.to_csv(out / "predictions.csv", index=False)
    table.splits.to_csv(out / "splits.csv", index=False)
    skipped.to_csv(out / "skipped_records.csv", index=False)
    names = ("config.yaml", "overrides.yaml", "predictions.csv", "splits.csv")
    log_files(client, run_id, (out / n for n in (*names, "skipped_records.csv", *TABLES)))
    log_folder(client, run_id, out / "figures")
    if (reason := unservable_reason(cfg)) is not None:
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
    return RunResult(
        run_id,
        str(logger.experiment_id),
        metrics,
        frame,
        None,
        fitted.fit_metrics,
        tags={**tags, **skip_tags(table)},
        skipped=skipped,
    )


def record_counts(table: RecordTable, predictions: pd.DataFrame) -> dict[str, float]:
    """``test/n_records``, ``records/skipped`` and ``records/mean_beats`` of a record run."""
    return {
        "test/n_records": float((predictions["split"] == "test").sum()),
        "records/skipped": float(len(table.skipped)),
        "records/mean_beats": float(table.meta["n_beats"].mean()),
    }
