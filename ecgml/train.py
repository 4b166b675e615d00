"""``python -m ecgml.train``: train and evaluate one binary disorder model, tracked in MLflow.

``train(cfg)`` is the plain function (tests call it); the Hydra main below is a thin wrapper.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from ecgml.beatstore import BeatStore
from ecgml.cli import hydra_entry
from ecgml.crossval import CrossValResult, cross_validate, runs_all_folds
from ecgml.data.datamodule import BeatDataModule, BeatTable, load_table
from ecgml.errors import EcgmlError
from ecgml.evaluation import evaluate_with_config
from ecgml.models import BeatClassifier, build_backbone
from ecgml.sweep.context import objective_value, trial_callbacks
from ecgml.tracking import flatten_config, make_logger, preserved_tracking_uri, resolve_store

log = logging.getLogger("ecgml.train")


@dataclass
class RunResult:
    """What a training run leaves behind (metrics logged to MLflow, and where)."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    predictions: pd.DataFrame = field(repr=False)
    checkpoint: Path | None = None


def build_model(cfg: DictConfig, seq_len: int, pos_weight: float) -> BeatClassifier:
    """The configured backbone inside the shared LightningModule."""
    hparams = OmegaConf.to_container(cfg.model.get("backbone") or {}, resolve=True)
    backbone = build_backbone(
        cfg.model.name, in_channels=1, n_outputs=1, seq_len=seq_len, **hparams
    )
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    return BeatClassifier(backbone, optimizer, scheduler, pos_weight=pos_weight)


def loss_pos_weight(setting: Any, balanced: float) -> float | None:
    """``training.pos_weight``: ``balanced`` (n_neg/n_pos), ``none``, or a number."""
    if setting in (None, "none", "None"):
        return None
    if setting == "balanced":
        return balanced
    try:
        return float(setting)
    except (TypeError, ValueError):
        raise EcgmlError(
            f"training.pos_weight={setting!r} is not valid: use balanced, none or a number"
        ) from None


def build_trainer(cfg: DictConfig, logger: MLFlowLogger, checkpoint_dir: Path) -> L.Trainer:
    monitor = cfg.training.monitor
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=monitor, mode="max"),
        EarlyStopping(monitor=monitor, mode="max", patience=cfg.training.early_stopping_patience),
    ]
    callbacks += trial_callbacks(cfg)
    return hydra.utils.instantiate(cfg.trainer, logger=logger, callbacks=callbacks)


def predict_split(
    trainer: L.Trainer, model: BeatClassifier, datamodule: BeatDataModule, split: str
) -> pd.DataFrame:
    frame = datamodule.prediction_frame(split)
    if frame.empty:
        return frame.assign(y_prob=np.zeros(0))
    loader = datamodule._loader(split, shuffle=False)
    batches = trainer.predict(model, dataloaders=loader)
    frame["y_prob"] = torch.cat(batches).float().numpy()
    return frame


def best_checkpoint(trainer: L.Trainer) -> Path | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback else ""
    return Path(path) if path else None


def run_dir(cfg: DictConfig) -> Path:
    """This job's Hydra output folder, or a temporary one when called without Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="ecgml-run-"))


def hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def log_run_files(
    logger: MLFlowLogger,
    cfg: DictConfig,
    out: Path,
    table: BeatTable,
    predictions: pd.DataFrame,
    checkpoint: Path | None,
) -> None:
    """The Contracts' artifacts at the run root (and the evaluation's figures/results)."""
    client, run_id = logger.experiment, logger.run_id
    files = {
        "config.yaml": OmegaConf.to_yaml(cfg, resolve=True),
        "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(hydra_overrides())),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    predictions.to_csv(out / "predictions.csv", index=False)
    table.splits.to_csv(out / "splits.csv", index=False)
    for name in (*files, "predictions.csv", "splits.csv", "results.md", "results.csv"):
        if (out / name).is_file():
            client.log_artifact(run_id, str(out / name))
    if (out / "figures").is_dir():
        client.log_artifacts(run_id, str(out / "figures"), artifact_path="figures")
    if checkpoint is not None and cfg.training.log_checkpoint:
        client.log_artifact(run_id, str(checkpoint), artifact_path="checkpoints")


def evaluate_and_log(
    cfg: DictConfig, logger: MLFlowLogger, predictions: pd.DataFrame, out: Path
) -> tuple[dict[str, float], pd.DataFrame]:
    metrics, predictions = evaluate_with_config(
        predictions,
        cfg.evaluation,
        out_dir=out,
        title=f"{cfg.disorder.name} vs {cfg.disorder.negative} ({cfg.model.name})",
    )
    finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    logger.log_metrics(finite)
    return metrics, predictions


def explain_and_log(
    cfg: DictConfig,
    logger: MLFlowLogger,
    model: BeatClassifier,
    table: BeatTable,
    predictions: pd.DataFrame,
    out: Path,
) -> dict[str, float]:
    """Saliency on the test beats (``explain.enabled``), logged under ``explain/``."""
    if not cfg.explain.get("enabled", False):
        return {}
    from ecgml.explain import explain_model

    beats, meta = table.subset("test")
    test_predictions = predictions.set_index("beat_id").loc[meta["beat_id"]].reset_index()
    metrics = explain_model(
        model, beats, test_predictions, table.fs, table.r_index, cfg.explain, out / "explain"
    )
    finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
    logger.log_metrics(finite)
    logger.experiment.log_artifacts(logger.run_id, str(out / "explain"), artifact_path="explain")
    return metrics


def train(
    cfg: DictConfig, parent_run_id: str | None = None, store: BeatStore | None = None
) -> RunResult:
    """Train, pick the best checkpoint on validation AUROC, evaluate, log everything.

    ``parent_run_id`` nests the run under a cross-validation parent; ``store`` reuses a beat
    store already loaded (folds of one cross-validation). The process's MLflow tracking URI is
    left as it was (Lightning's logger would otherwise leave this run's store behind).
    """
    with preserved_tracking_uri():
        return _train(cfg, parent_run_id, store)


def _train(cfg: DictConfig, parent_run_id: str | None, store: BeatStore | None) -> RunResult:
    if cfg.model.get("kind") == "sklearn":
        from ecgml.models.features_lr import train_features_lr

        return train_features_lr(cfg)
    if cfg.explain.get("enabled", False):
        from ecgml.explain import check_config

        check_config(cfg.explain)  # a bad explain.method fails now, not after training
    L.seed_everything(cfg.seed, workers=True)
    table = load_table(cfg, store)
    datamodule = BeatDataModule(table, cfg.data.batch_size, cfg.data.num_workers, cfg.seed)
    pos_weight = loss_pos_weight(cfg.training.pos_weight, datamodule.pos_weight)
    model = build_model(cfg, table.seq_len, pos_weight or 0.0)
    tags = {"dataset.digest": table.digest, "disorder": cfg.disorder.name}
    logger = make_logger(cfg, tags=tags, parent_run_id=parent_run_id)
    logger.log_hyperparams(flatten_config(cfg))
    out = run_dir(cfg)
    try:
        trainer = build_trainer(cfg, logger, out / "checkpoints")
        trainer.fit(model, datamodule=datamodule)
        checkpoint = best_checkpoint(trainer)
        if checkpoint is not None:
            model = BeatClassifier.load_from_checkpoint(
                checkpoint,
                backbone=model.backbone,
                optimizer=model.optimizer_factory,
                weights_only=False,
            )
        predictions = pd.concat(
            [predict_split(trainer, model, datamodule, split) for split in ("val", "test")],
            ignore_index=True,
        )
        metrics, predictions = evaluate_and_log(cfg, logger, predictions, out)
        log_run_files(logger, cfg, out, table, predictions, checkpoint)
        if cfg.training.get("log_model", True):
            from ecgml.inference.model_io import log_trained_model

            uri = resolve_store(cfg.logger.get("tracking_uri")).tracking_uri
            threshold = metrics["test/threshold"]
            log_trained_model(
                uri, logger.run_id, model, table.seq_len, table.fs, table.r_index, threshold, cfg
            )
        metrics.update(explain_and_log(cfg, logger, model, table, predictions, out))
        logger.experiment.set_terminated(logger.run_id, "FINISHED")
    except BaseException:
        logger.experiment.set_terminated(logger.run_id, "FAILED")
        raise
    return RunResult(logger.run_id, logger.experiment_id, metrics, predictions, checkpoint)


def format_summary(cfg: DictConfig, result: RunResult | CrossValResult, seconds: float) -> str:
    m = result.metrics

    def ci(key: str, pct: bool) -> str:
        scale, unit = (100.0, "%") if pct else (1.0, "")
        low, high = m.get(f"{key}_ci_low", np.nan), m.get(f"{key}_ci_high", np.nan)
        return (
            f"{m.get(key, np.nan) * scale:.{1 if pct else 3}f}{unit} "
            f"(95% CI {low * scale:.{1 if pct else 3}f}–{high * scale:.{1 if pct else 3}f})"
        )

    store = resolve_store(cfg.logger.get("tracking_uri"))
    ui = (
        "make ui"
        if store.artifact_root and store.artifact_root.parent.name == "mlruns"
        else f"mlflow ui --backend-store-uri {store.tracking_uri}"
    )
    return "\n".join(
        [
            "",
            f"ecgml train: {cfg.disorder.positive} vs {cfg.disorder.negative}, "
            f"model={cfg.model.name}, split={cfg.split.name}, seed={cfg.seed} "
            f"({seconds:.0f} s)",
            f"  test beats {int(m.get('test/n_beats', 0))} from "
            f"{int(m.get('test/n_patients', 0))} patients, "
            f"threshold {m.get('test/threshold', np.nan):.3f} "
            f"({cfg.evaluation.threshold_rule} on validation)",
            *(
                [
                    f"  {int(m['cv/n_folds'])} folds, pooled out-of-fold test predictions; "
                    f"fold AUROC {m.get('cv/auroc_mean', np.nan):.3f} "
                    f"± {m.get('cv/auroc_sd', np.nan):.3f} (mean ± SD)"
                ]
                if "cv/n_folds" in m
                else []
            ),
            f"  test AUROC     {ci('test/auroc', pct=False)}",
            f"  test accuracy  {ci('test/accuracy', pct=True)}",
            f"  experiment: ecgml-{cfg.disorder.name}"
            if not cfg.logger.get("experiment_name")
            else f"  experiment: {cfg.logger.experiment_name}",
            f"  open the UI: {ui}   (tracking URI {store.tracking_uri})",
            f"run_id: {result.run_id}",
        ]
    )


@hydra_entry("train")
def main(cfg: DictConfig) -> float:
    start = time.perf_counter()
    result = cross_validate(cfg) if runs_all_folds(cfg) else train(cfg)
    print(format_summary(cfg, result, time.perf_counter() - start), flush=True)
    return objective_value(cfg, result.metrics)


if __name__ == "__main__":
    main()
