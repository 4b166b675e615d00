"""``python -m ecgml.train``: train and evaluate one binary disorder model, tracked in MLflow.

A holdout run is one :func:`~ecgml.pipeline.run_one` (beats or whole recordings, as ``data``
says); ``split.fold=null`` on a k-fold split runs every fold as a child of one parent run
(:func:`~ecgml.pipeline.crossval.cross_validate`). Inside an Optuna trial the sweep's
pruning callback is handed to the pipeline here (the pipeline never imports the sweep).
``task=pretrain`` instead pretrains the backbone contrastively on every beat
(:func:`~ecgml.pipeline.pretrain.pretrain`) and returns its final ``pretrain/val_loss``.
``resume=<run_id>`` continues a killed run from its last checkpoint
(:func:`~ecgml.pipeline.run.resume_run`).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from ecgml.bounds import check_bounds
from ecgml.cli import hydra_entry
from ecgml.data.records import data_unit
from ecgml.models.factory import check_model_reads_unit
from ecgml.pipeline.context import RunResult
from ecgml.pipeline.crossval import CrossValResult, cross_validate, runs_all_folds
from ecgml.pipeline.pretrain import format_pretrain_summary, pretrain, task_name
from ecgml.pipeline.run import resume_run, run_one
from ecgml.pipeline.summary import format_summary
from ecgml.sweep.callbacks import trial_callbacks
from ecgml.sweep.context import objective_value
from ecgml.tracking import check_store


def run_pretrain(cfg: DictConfig) -> float:
    """``task=pretrain``: one pretraining run; its last validation (else training) loss."""
    start = time.perf_counter()
    result = pretrain(cfg)
    print(format_pretrain_summary(cfg, result, time.perf_counter() - start), flush=True)
    metrics = result.metrics
    return float(metrics.get("pretrain/val_loss", metrics.get("pretrain/train_loss", float("nan"))))


def train(cfg: DictConfig) -> float:
    if not cfg.get("resume"):  # resume= checks the run's own stored config
        check_bounds(cfg)  # before a run opens or any data is read
    check_store(cfg.logger.tracking_uri)  # a bad store fails in seconds, before data is loaded
    if task_name(cfg) == "pretrain":
        return run_pretrain(cfg)
    if not cfg.get("resume"):  # a model that cannot read the unit: refused before a run opens
        check_model_reads_unit(cfg.model, data_unit(cfg))
    start = time.perf_counter()
    callbacks = trial_callbacks()
    result: RunResult | CrossValResult
    if cfg.get("resume"):  # continue a killed run: its own config, its last checkpoint
        result = resume_run(cfg, callbacks=callbacks)
    elif runs_all_folds(cfg):
        result = cross_validate(cfg, callbacks=callbacks)
    else:
        result = run_one(cfg, callbacks=callbacks)
    print(format_summary(cfg, result, time.perf_counter() - start), flush=True)
    return objective_value(cfg, result)


main = hydra_entry("train")(train)
