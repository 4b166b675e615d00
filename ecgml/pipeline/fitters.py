"""One ``Fitter`` interface for every model kind: ``fit(table)`` then ``predict(split)``.

:class:`LightningFitter` trains a backbone inside :class:`~ecgml.models.BeatClassifier` (trainer
callbacks from ``cfg.callbacks``, each a ``_target_``, plus the caller's extra callbacks) and
reloads the checkpoint its callbacks kept; with ``training.ensemble=N`` it trains N members (seeds
``seed``…``seed+N-1``) and predicts their mean probability (:class:`MeanProbabilityEnsemble`).
:class:`SklearnFitter` fits ``model=features_lr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import hydra
import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, StochasticWeightAveraging
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from ecgml.data.datamodule import BeatDataModule, BeatTable
from ecgml.data.records import RecordTable
from ecgml.data.tasks import TaskSpec
from ecgml.errors import EcgmlError
from ecgml.models import BeatClassifier, build_backbone
from ecgml.models.ensemble import MeanOutputEnsemble, MeanProbabilityEnsemble
from ecgml.models.features_lr import build_classifier, feature_matrix, prediction_frame
from ecgml.models.task_modules import BeatRegressor, MultiLabelClassifier
from ecgml.pipeline.pretrained import load_pretrained_encoder
from ecgml.schemas import plain_dict
from ecgml.tasks import run_task
from ecgml.tracking import RunTerminated
from ecgml.tracking.artifacts import log_files
from ecgml.tracking.runs import run_id_of


class UnitModels(Protocol):
    """What a Lightning fit asks of the unit (:mod:`ecgml.pipeline.units`)."""

    def datamodule(self, cfg: DictConfig, table: Any, seed: int) -> Any: ...

    def network(self, cfg: DictConfig, table: Any, data: Any) -> BeatClassifier: ...

    def predict(self, model: BeatClassifier, data: Any, split: str) -> pd.DataFrame: ...


class Fitter(Protocol):
    """Fits on a table's training split and predicts val/test in ``predictions.csv`` columns."""

    fit_metrics: dict[str, float]
    checkpoints: list[Path]  # every checkpoint kept (one per ensemble member); [] for sklearn

    @property
    def checkpoint(self) -> Path | None: ...

    def fit(self, table: Any) -> None: ...

    def predict(self, split: str) -> pd.DataFrame: ...


def build_model(
    cfg: DictConfig,
    seq_len: int,
    pos_weight: float | Sequence[float] | None,
    pretrained: bool = True,
    targets: Sequence[float] | np.ndarray = (),
    in_channels: int = 1,
) -> BeatClassifier:
    """The configured backbone (reading ``in_channels`` leads) inside the task's
    LightningModule.

    ``model.init_from`` (a ``task=pretrain`` run or its encoder file) initializes every weight
    but the head; ``pretrained=False`` skips it (a checkpoint is about to overwrite them).
    ``pos_weight`` is one number (binary) or one per output (multi-label); ``targets`` are the
    training targets a regression standardizes by.
    """
    task = run_task(cfg)
    n_outputs = task.spec.n_outputs
    backbone = build_backbone(cfg.model, in_channels, n_outputs=n_outputs, seq_len=seq_len)
    if pretrained and cfg.model.get("init_from"):  # configs logged before the key existed
        load_pretrained_encoder(
            backbone,
            str(cfg.model.init_from),
            cfg.logger.tracking_uri,
            model_name=cfg.model.name,
            backbone_cfg=plain_dict(cfg.model.backbone),
        )
    optimizer = hydra.utils.instantiate(cfg.model.optimizer)
    scheduler = hydra.utils.instantiate(cfg.model.scheduler) if cfg.model.get("scheduler") else None
    return task.module(backbone, optimizer, scheduler, pos_weight, targets, cfg)


def label_smoothing(cfg: DictConfig, task: TaskSpec) -> float:
    """``training.label_smoothing`` (0 ≤ ε < 1); 0 for a regression, which has no class labels."""
    return run_task(task).label_smoothing(cfg)


def build_callbacks(cfg: DictConfig, checkpoint_dir: Path) -> list[L.Callback]:
    """``cfg.callbacks`` (ModelCheckpoint, EarlyStopping, …) instantiated from ``_target_``; the
    checkpoint callback also keeps every epoch's ``last.ckpt`` (what ``resume=`` starts from)."""
    callbacks = []
    for name, node in cfg.callbacks.items():
        extra: dict[str, Any] = (
            {"dirpath": checkpoint_dir, "save_last": True} if name == "model_checkpoint" else {}
        )
        callbacks.append(hydra.utils.instantiate(node, **extra))
    best_on_validation = any(isinstance(c, ModelCheckpoint) and c.monitor for c in callbacks)
    if averages_weights(callbacks) and best_on_validation:
        raise EcgmlError(
            "callbacks: stochastic weight averaging keeps the average of the last epochs, and "
            "model_checkpoint keeps the best epoch on validation: use callbacks=swa (final "
            "weights) or drop the swa callback"
        )
    return callbacks


def averages_weights(callbacks: Sequence[L.Callback]) -> bool:
    """Whether one of ``callbacks`` is Lightning's stochastic weight averaging."""
    return any(isinstance(c, StochasticWeightAveraging) for c in callbacks)


def kept_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint the fit's callbacks kept ("" when none).

    Stochastic weight averaging copies the averaged weights into the module when training
    ends, after the last checkpoint was written (for a model without BatchNorm, which gets no
    extra statistics epoch), so that checkpoint is rewritten from the module.
    """
    path = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if path and averages_weights(getattr(trainer, "callbacks", [])):
        trainer.save_checkpoint(path)
    return path


class LogLastCheckpoint(L.Callback):
    """Upload ``last.ckpt`` to the run as ``checkpoints/last.ckpt`` whenever ModelCheckpoint has
    rewritten it. Lightning runs checkpoint callbacks after all others, so the file of epoch k is
    picked up at the start of epoch k+1 and at the end of training (one upload per epoch)."""

    def __init__(self, logger: MLFlowLogger, path: Path) -> None:
        self.logger, self.path = logger, path
        self.uploaded: int | None = None  # mtime (ns) of the file last uploaded

    def _upload(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero or not self.path.is_file():
            return
        mtime = self.path.stat().st_mtime_ns
        if mtime != self.uploaded:
            log_files(
                self.logger.experiment, run_id_of(self.logger), [self.path], under="checkpoints"
            )
            self.uploaded = mtime

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._upload(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._upload(trainer)


def fit_trainer(
    trainer: L.Trainer, model: BeatClassifier, data: BeatDataModule, ckpt_path: Path | None = None
) -> None:
    """``trainer.fit`` (from ``ckpt_path`` when resuming), with Lightning's exits turned back into
    what they were: its SIGTERM exit (code 0) into :class:`RunTerminated` (143), its Ctrl-C exit
    (code 1) into KeyboardInterrupt, so that :func:`~ecgml.tracking.tracked_run` marks the run
    KILLED."""
    try:
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException as exit_:
        raise RunTerminated() from exit_
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):  # Lightning's sys.exit(1)
            raise KeyboardInterrupt from exit_
        raise
    if trainer.received_sigterm:  # a SIGTERM Lightning swallowed after its last check
        raise RunTerminated()


def ensemble_size(cfg: DictConfig) -> int:
    """``training.ensemble``: how many members (>= 1) a Lightning fit trains."""
    size = cfg.training.get("ensemble", 1)  # configs logged before the key existed
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise EcgmlError(f"training.ensemble={size!r} is not valid: use a whole number >= 1")
    return size


class LightningFitter:
    """A backbone trained by Lightning; the checkpoint its callbacks keep is reloaded (the final
    epoch with ``callbacks=final``, the best on ``training.monitor`` with ``early_stopping``).

    An ensemble's members differ only in their seed (initialization, batch order, augmentation);
    member 0 logs its per-epoch curves to the run, the others train silently. ``resume_from``
    (``resume=``): member 0 continues from that ``last.ckpt``; other members train afresh.
    """

    def __init__(
        self,
        cfg: DictConfig,
        logger: MLFlowLogger | Literal[False],
        out: Path,
        unit: UnitModels,
        extra: Sequence[L.Callback] = (),
        resume_from: Path | None = None,
    ) -> None:
        self.cfg, self.logger, self.out, self.extra = cfg, logger, out, list(extra)
        self.unit = unit
        self.resume_from = resume_from
        self.fit_metrics: dict[str, float] = {}
        self.checkpoints: list[Path] = []

    @property
    def checkpoint(self) -> Path | None:
        """Member 0's checkpoint (the run's ``checkpoints/best.ckpt``)."""
        return self.checkpoints[0] if self.checkpoints else None

    def fit(self, table: Any) -> None:
        size = ensemble_size(self.cfg)
        members = [self._fit_member(table, index) for index in range(size)]
        self.model = members[0] if size == 1 else self._ensemble(members)

    def _fit_member(self, table: Any, index: int) -> BeatClassifier:
        cfg = self.cfg
        seed = int(cfg.seed) + index
        if index:
            L.seed_everything(seed, workers=True, verbose=False)
        data = self.unit.datamodule(cfg, table, seed)
        model = self.unit.network(cfg, table, data)
        folder = self.out / "checkpoints" / (f"member{index}" if index else "")
        callbacks = build_callbacks(cfg, folder) + (
            self._member0_callbacks(folder) if index == 0 else []
        )
        logger = self.logger if index == 0 else False
        trainer = hydra.utils.instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
        fit_trainer(trainer, model, data, self.resume_from if index == 0 else None)
        if index == 0:  # member 0 speaks for the fit: its curves, its loaders for predict
            self.fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
            self.datamodule = data
        path = kept_checkpoint(trainer)
        if not path:
            return model
        self.checkpoints.append(Path(path))
        reloaded = type(model).load_from_checkpoint(
            path, backbone=model.backbone, optimizer=model.optimizer_factory, weights_only=True
        )
        check_outputs(reloaded, getattr(model, "outputs", ()), path)
        return reloaded

    def _member0_callbacks(self, folder: Path) -> list[L.Callback]:
        """The caller's callbacks, and the per-epoch ``checkpoints/last.ckpt`` upload."""
        if not (self.cfg.training.log_checkpoint and self.logger):  # logger=False: no run
            return self.extra
        return [*self.extra, LogLastCheckpoint(self.logger, folder / "last.ckpt")]

    def _ensemble(self, members: list[BeatClassifier]) -> BeatClassifier:
        """One module whose output is the members' mean probability (the mean value for a
        regression: the members share the training targets' standardization)."""
        first = members[0]
        if isinstance(first, BeatRegressor):
            backbone: torch.nn.Module = MeanOutputEnsemble([m.backbone for m in members])
            return BeatRegressor(
                backbone,
                first.optimizer_factory,
                None,
                first.target_mean,
                first.target_std,
                outputs=first.outputs,
            ).eval()
        backbone = MeanProbabilityEnsemble([m.backbone for m in members])
        if isinstance(first, MultiLabelClassifier):
            return MultiLabelClassifier(
                backbone, first.optimizer_factory, outputs=first.outputs
            ).eval()
        return BeatClassifier(backbone, first.optimizer_factory).eval()

    def predict(self, split: str) -> pd.DataFrame:
        return self.unit.predict(self.model, self.datamodule, split)


def with_outputs(frame: pd.DataFrame, model: BeatClassifier, values: np.ndarray) -> pd.DataFrame:
    """``predictions.csv`` columns from the model's outputs: ``y_prob`` (binary),
    ``y_prob_<disorder>`` (multi-label, by output name), ``y_pred`` in mmol/L (regression)."""
    frame = frame.copy()
    if isinstance(model, MultiLabelClassifier):
        values = values.reshape(len(frame), len(model.outputs))
        for k, name in enumerate(model.outputs):
            frame[f"y_prob_{name}"] = values[:, k]
    elif isinstance(model, BeatRegressor):
        frame["y_pred"] = values.reshape(-1)
    else:
        frame["y_prob"] = values.reshape(-1)
    return frame


def check_outputs(model: BeatClassifier, expected: Sequence[str], source: str) -> None:
    """Refuse a multi-output model whose named outputs differ from the task's (order included):
    a swapped output would silently report one disorder under another's name."""
    found = tuple(getattr(model, "outputs", ()))
    if expected and found != tuple(expected):
        raise EcgmlError(
            f"{source}: the model's outputs are {list(found)} but the task expects "
            f"{list(expected)}: load it with the task it was trained for"
        )


def member_pos_weight(cfg: DictConfig, data: Any) -> float | list[float] | None:
    """``training.pos_weight`` for this task: one weight, one per output, or none (regression)."""
    return run_task(cfg).pos_weight(cfg.training.pos_weight, data)


def training_targets(table: BeatTable | RecordTable) -> np.ndarray:
    """The training split's regression targets (empty for classification tasks)."""
    if "target" not in table.meta.columns:
        return np.zeros(0)
    return table.meta.loc[table.meta["split"] == "train", "target"].to_numpy(dtype=float)


class SklearnFitter:
    """``model=features_lr``: delineation features + a scikit-learn classifier."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.fit_metrics: dict[str, float] = {}
        self.checkpoints: list[Path] = []
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
    cfg: DictConfig,
    logger: MLFlowLogger,
    out: Path,
    unit: UnitModels,
    extra: Sequence[L.Callback] = (),
    resume_from: Path | None = None,
) -> Fitter:
    """The fitter of ``cfg.model.kind`` (``sklearn``), else Lightning (from ``resume_from``)."""
    check_model_fits_task(cfg)
    if is_sklearn(cfg):
        return SklearnFitter(cfg)
    return LightningFitter(cfg, logger, out, unit, extra, resume_from)


def is_sklearn(cfg: DictConfig) -> bool:
    return bool(cfg.model.get("kind") == "sklearn")  # only sklearn models carry the key


def check_model_fits_task(cfg: DictConfig) -> None:
    """A scikit-learn model learns the binary task only: any other is refused in one line
    (before the run opens, where the lifecycle checks its settings)."""
    if is_sklearn(cfg) and not run_task(cfg).sklearn_fits:
        raise EcgmlError(
            f"model={cfg.model.name} supports task=binary only: pick a neural backbone "
            f"(e.g. model=cnn1d) for task={cfg.task.name}"
        )
