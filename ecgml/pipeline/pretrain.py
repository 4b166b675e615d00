"""``task=pretrain``: contrastive (SimCLR) pretraining of the configured backbone, in MLflow.

Every beat of the store is used, whatever its group (labels are ignored); ``task.val_fraction``
of the *patients* is held out to log ``pretrain/val_loss``. Two augmented views per beat
(``task.augment``, stronger than training's) feed :class:`~ecgml.models.contrastive.
ContrastivePretrainer`. The run (experiment ``ecgml-pretrain`` unless ``logger.experiment_name``)
logs ``pretrain/*`` metrics, ``config.yaml`` and the encoder artifact
(:mod:`ecgml.pipeline.pretrained`) that ``model.init_from=<run_id>`` fine-tunes from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader, TensorDataset

from ecgml.beatstore import BeatStore
from ecgml.data.augment import AugmentSettings, BeatAugmenter
from ecgml.data.datamodule import load_store, referenced_beats
from ecgml.errors import EcgmlError
from ecgml.models import build_backbone
from ecgml.models.contrastive import ContrastivePretrainer
from ecgml.pipeline.context import run_dir
from ecgml.pipeline.pretrained import ARTIFACT_DIR, WEIGHTS_FILE, save_encoder
from ecgml.signal import align_beats
from ecgml.tracking import (
    finite_metrics,
    flatten_config,
    lightning_run,
    parent_run,
    preserved_tracking_uri,
)
from ecgml.tracking.artifacts import log_files
from ecgml.tracking.runs import run_id_of

DEFAULT_EXPERIMENT = "ecgml-pretrain"


def task_name(cfg: DictConfig) -> str:
    """``cfg.task.name``; a config without ``task`` is the binary classification task."""
    task = cfg.get("task")
    return str(task.get("name", "binary")) if task else "binary"


@dataclass
class PretrainData:
    """Aligned beats ``x`` (n, length), the validation mask and the layout."""

    x: np.ndarray
    is_val: np.ndarray
    r_index: int | None
    fs: float
    digest: str
    n_patients: int

    @property
    def seq_len(self) -> int:
        return int(self.x.shape[1])


@dataclass
class PretrainResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    encoder: Path


def holdout_patients(patients: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (per beat) of the ``fraction`` of patients held out for validation."""
    unique = np.unique(patients)
    n_val = round(fraction * len(unique))
    if fraction > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    held = np.random.default_rng(seed).permutation(unique)[:n_val]
    return np.isin(patients, held)


def _r_indices(store: BeatStore, align: str) -> list[int] | None:
    """Per-beat R indices (as ``build_beat_table`` uses them), or None: aligned at the start."""
    if align not in ("r_peak", "start"):
        raise EcgmlError(f"data.align={align!r} is unknown: use r_peak or start")
    meta = store.meta
    if align == "start" or "r_index" not in meta.columns or meta["r_index"].isna().any():
        return None
    return meta["r_index"].astype(int).tolist()


def build_pretrain_data(store: BeatStore, cfg: DictConfig) -> PretrainData:
    """All beats of ``store``, aligned and padded like training does, patients held out."""
    if len(store) == 0:
        raise EcgmlError(f"beat store {store.root} has no beats to pretrain on")
    beats = referenced_beats(store.beats, store.meta, store.info.fs, cfg.data)
    x, r_target = align_beats(beats, _r_indices(store, cfg.data.align), cfg.data.beat_length)
    patients = store.meta["patient_id"].astype(str).to_numpy()
    is_val = holdout_patients(patients, float(cfg.task.val_fraction), int(cfg.seed))
    n_patients = len(np.unique(patients))
    return PretrainData(x, is_val, r_target, store.info.fs, store.digest, n_patients)


def check_pretrain_config(cfg: DictConfig) -> AugmentSettings:
    """Validate ``cfg.task`` before any run opens; returns the view augmentation."""
    task = cfg.task
    problems = []
    if float(task.temperature) <= 0:
        problems.append(f"task.temperature={task.temperature} must be > 0")
    if int(task.embedding_dim) < 1:
        problems.append(f"task.embedding_dim={task.embedding_dim} must be >= 1")
    if not 0.0 <= float(task.val_fraction) < 1.0:
        problems.append(f"task.val_fraction={task.val_fraction} must be in [0, 1)")
    if int(task.batch_size) < 2:
        problems.append(f"task.batch_size={task.batch_size} must be >= 2 (negatives needed)")
    if cfg.model.get("kind") == "sklearn":
        problems.append(f"model={cfg.model.name} is not a backbone: use model=cnn1d or similar")
    if problems:
        raise EcgmlError("; ".join(problems))
    settings = AugmentSettings.from_config(task.get("augment"))
    if settings is None:
        raise EcgmlError("task.augment.enabled=false: contrastive pretraining needs two views")
    return settings


def _loader(x: np.ndarray, batch_size: int, shuffle: bool, seed: int, workers: int) -> DataLoader:
    data = TensorDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1))
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(data) > batch_size,  # no lone last beat without negatives
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=workers > 0,
    )


def build_pretrainer(
    cfg: DictConfig, data: PretrainData, settings: AugmentSettings
) -> ContrastivePretrainer:
    """The backbone (``n_outputs=embedding_dim``) inside the contrastive LightningModule."""
    backbone = build_backbone(
        cfg.model, in_channels=1, n_outputs=int(cfg.task.embedding_dim), seq_len=data.seq_len
    )
    overrides = {"lr": float(cfg.task.lr)} if cfg.task.get("lr") is not None else {}
    optimizer = hydra.utils.instantiate(cfg.model.optimizer, **overrides)
    augmenter = BeatAugmenter(settings, data.fs, data.r_index)
    return ContrastivePretrainer(
        backbone, augmenter, optimizer, float(cfg.task.temperature), int(cfg.seed)
    )


def _tracking_cfg(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the pretrain experiment and run name filled in where the user set none."""
    out = copy.deepcopy(cfg)
    with open_dict(out):
        if not out.logger.experiment_name and not parent_run()[1]:
            out.logger.experiment_name = cfg.task.get("experiment_name") or DEFAULT_EXPERIMENT
        if not out.logger.run_name:
            out.logger.run_name = f"pretrain-{cfg.model.name}-s{cfg.seed}"
    return out


def encoder_meta(cfg: DictConfig, data: PretrainData) -> dict[str, Any]:
    """What ``encoder.json`` records beside the format (see :mod:`ecgml.pipeline.pretrained`)."""
    return {
        "model": str(cfg.model.name),
        "backbone": OmegaConf.to_container(cfg.model.backbone, resolve=True),
        "seq_len": data.seq_len,
        "fs": float(data.fs),
        "r_index": data.r_index,
        "embedding_dim": int(cfg.task.embedding_dim),
        "temperature": float(cfg.task.temperature),
        "dataset_digest": data.digest,
    }


def pretrain(cfg: DictConfig, store: BeatStore | None = None) -> PretrainResult:
    """Pretrain the configured backbone on every beat of the store; one tracked MLflow run."""
    with preserved_tracking_uri():
        L.seed_everything(cfg.seed, workers=True)
        settings = check_pretrain_config(cfg)
        data = build_pretrain_data(store or load_store(cfg), cfg)
        model = build_pretrainer(cfg, data, settings)
        tracking = _tracking_cfg(cfg)
        tags = {"dataset.digest": data.digest, "task": "pretrain"}
        with lightning_run(tracking, tags=tags) as logger:
            logger.log_hyperparams(flatten_config(tracking))
            return _fit_and_log(tracking, logger, model, data, run_dir())


def _fit_and_log(
    cfg: DictConfig, logger: Any, model: ContrastivePretrainer, data: PretrainData, out: Path
) -> PretrainResult:
    task, workers, seed = cfg.task, int(cfg.data.num_workers), int(cfg.seed)
    train = _loader(data.x[~data.is_val], int(task.batch_size), True, seed, workers)
    val = _loader(data.x[data.is_val], int(task.batch_size), False, seed, workers)
    trainer = hydra.utils.instantiate(
        cfg.trainer, max_epochs=int(task.max_epochs), logger=logger, enable_checkpointing=False
    )
    trainer.fit(model, train_dataloaders=train, val_dataloaders=val if data.is_val.any() else None)
    counts = {"pretrain/n_beats": len(data.x), "pretrain/n_val_beats": int(data.is_val.sum())}
    logger.log_metrics(counts)  # the per-epoch losses are logged by the module already
    metrics = finite_metrics({k: float(v) for k, v in trainer.callback_metrics.items()}) | counts
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    paths = save_encoder(out / ARTIFACT_DIR, model.backbone, encoder_meta(cfg, data))
    client, run_id = logger.experiment, run_id_of(logger)
    log_files(client, run_id, [out / "config.yaml"])
    log_files(client, run_id, paths, under=ARTIFACT_DIR)
    return PretrainResult(run_id, logger.experiment_id, metrics, out / ARTIFACT_DIR / WEIGHTS_FILE)


def format_pretrain_summary(cfg: DictConfig, result: PretrainResult, seconds: float) -> str:
    """One line: what was pretrained, its final losses and the run id to fine-tune from."""
    m = result.metrics
    losses = ", ".join(
        f"{k}={m[k]:.4f}" for k in ("pretrain/train_loss", "pretrain/val_loss") if k in m
    )
    return (
        f"pretrain {cfg.model.name}: {int(m.get('pretrain/n_beats', 0))} beats, "
        f"{cfg.task.max_epochs} epochs, {losses or 'no loss logged'} in {seconds:.0f}s; "
        f"fine-tune with model.init_from={result.run_id} | run_id: {result.run_id}"
    )
