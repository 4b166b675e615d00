"""One ``Fitter`` interface for every model kind: ``fit(table)`` then ``predict(split)``.

:class:`LightningFitter` trains a backbone inside :class:`~ecgml.models.BeatClassifier` (trainer
callbacks from ``cfg.callbacks``, each a ``_target_``, plus the caller's extra callbacks) and
reloads the best checkpoint; :class:`SklearnFitter` fits ``model=features_lr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import hydra
import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from ecgml.data.datamodule import BeatDataModule, BeatTable
from ecgml.errors import EcgmlError
from ecgml.models import BeatClassifier, build_backbone
from ecgml.models.features_lr import build_classifier, feature_matrix, prediction_frame


class Fitter(Protocol):
    """Fits on a table's training split and predicts val/test in ``predictions.csv`` columns."""

    fit_metrics: dict[str, float]
    checkpoint: Path | None

    def fit(self, table: BeatTable) -> None: ...

    def predict(self, split: str) -> pd.DataFrame: ...


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


def build_model(cfg: DictConfig, seq_len: int, pos_weight: float) -> BeatClassifier:
    """The configured backbone inside the shared LightningModule."""
    backbone = build_backbone(cfg.model, in_channels=1, n_outputs=1, seq_len=seq_len)
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.scheduler else None
    return BeatClassifier(backbone, optimizer, scheduler, pos_weight=pos_weight)


def build_callbacks(cfg: DictConfig, checkpoint_dir: Path) -> list[L.Callback]:
    """``cfg.callbacks`` (ModelCheckpoint, EarlyStopping, …) instantiated from ``_target_``."""
    callbacks = []
    for name, node in cfg.callbacks.items():
        extra = {"dirpath": checkpoint_dir} if name == "model_checkpoint" else {}
        callbacks.append(hydra.utils.instantiate(node, **extra))
    return callbacks


class LightningFitter:
    """A backbone trained by Lightning; the best checkpoint (on ``training.monitor``) is kept."""

    def __init__(
        self, cfg: DictConfig, logger: MLFlowLogger, out: Path, extra: Sequence[L.Callback] = ()
    ) -> None:
        self.cfg, self.logger, self.out, self.extra = cfg, logger, out, list(extra)
        self.fit_metrics: dict[str, float] = {}
        self.checkpoint: Path | None = None

    def fit(self, table: BeatTable) -> None:
        cfg = self.cfg
        data = BeatDataModule(table, cfg.data.batch_size, cfg.data.num_workers, cfg.seed)
        pos_weight = loss_pos_weight(cfg.training.pos_weight, data.pos_weight)
        model = build_model(cfg, table.seq_len, pos_weight or 0.0)
        callbacks = build_callbacks(cfg, self.out / "checkpoints") + self.extra
        trainer = hydra.utils.instantiate(cfg.trainer, logger=self.logger, callbacks=callbacks)
        trainer.fit(model, datamodule=data)
        self.fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        path = getattr(trainer.checkpoint_callback, "best_model_path", "")
        self.checkpoint = Path(path) if path else None
        if self.checkpoint is not None:
            model = BeatClassifier.load_from_checkpoint(
                self.checkpoint,
                backbone=model.backbone,
                optimizer=model.optimizer_factory,
                weights_only=False,
            )
        self.model, self.trainer, self.datamodule = model, trainer, data

    def predict(self, split: str) -> pd.DataFrame:
        frame = self.datamodule.prediction_frame(split)
        if frame.empty:
            return frame.assign(y_prob=np.zeros(0))
        loader = self.datamodule._loader(split, shuffle=False)
        batches = self.trainer.predict(self.model, dataloaders=loader)
        frame["y_prob"] = torch.cat(batches).float().numpy()
        return frame


class SklearnFitter:
    """``model=features_lr``: delineation features + a scikit-learn classifier."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.fit_metrics: dict[str, float] = {}
        self.checkpoint: Path | None = None
        self.model: Pipeline | None = None

    def fit(self, table: BeatTable) -> None:
        cache = Path(str(self.cfg.data.cache_dir)) if self.cfg.data.cache_dir else None
        features = feature_matrix(table, cache)
        split = table.meta["split"].to_numpy()
        y = table.meta["y"].to_numpy(dtype=int)
        train = split == "train"
        self.model = build_classifier(self.cfg.model.backbone).fit(features[train], y[train])
        frame = prediction_frame(table, self.model.predict_proba(features)[:, 1])
        self.frame = frame
        val = frame[frame["split"] == "val"]
        auroc = (
            float(roc_auc_score(val["y_true"], val["y_prob"]))
            if val["y_true"].nunique() == 2
            else np.nan
        )
        self.fit_metrics = {"val/auroc": auroc, "val/auroc_best": auroc}

    def predict(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split].reset_index(drop=True)


def make_fitter(
    cfg: DictConfig, logger: MLFlowLogger, out: Path, extra: Sequence[L.Callback] = ()
) -> Fitter:
    """The fitter of ``cfg.model.kind`` (``sklearn``), else Lightning."""
    if cfg.model.get("kind") == "sklearn":  # only sklearn models carry the key
        return SklearnFitter(cfg)
    return LightningFitter(cfg, logger, out, extra)
