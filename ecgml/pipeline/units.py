"""What one example is — a beat, or a whole recording — as the object the run lifecycle asks.

A unit owns its store, its table (labelled and split), its datamodule, the network built for it,
its prediction frame, the layout its logged model is served with, and what it adds to a run
(a record run's skipped records). :func:`run_unit` picks it from ``data.unit`` (``data=records``:
``record``); the lifecycle (:mod:`ecgml.pipeline.run`) does not branch on the unit.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ecgml.beatstore import BeatStore
from ecgml.data.augment import AugmentSettings
from ecgml.data.datamodule import (
    BeatDataModule,
    BeatTable,
    build_beat_table,
    load_store,
    resolve_store_path,
)
from ecgml.data.records import (
    RecordDataModule,
    RecordTable,
    build_record_table,
    data_unit,
    resolve_leads,
    resolve_record_store,
    train_beats,
)
from ecgml.data.tasks import task_spec
from ecgml.modelfile.spec import ModelSpec
from ecgml.models import BeatClassifier
from ecgml.models.factory import pinned_backbone
from ecgml.models.record_models import reads_strip
from ecgml.pipeline.fitters import build_model, member_pos_weight, training_targets, with_outputs
from ecgml.pipeline.records import load_records, predict_records
from ecgml.recordstore import RecordStore


class Unit(ABC):
    """One kind of example, as the lifecycle, the fitter and cross-validation see it."""

    name: str
    #: Whether the run explains its test examples with saliency and writes a model card (beat
    #: runs: both are written in terms of single beats).
    explains = False
    writes_model_card = False
    #: Whether ``resume=`` may continue a killed run of this unit.
    resumable = False
    #: What the figures' titles add (e.g. ``records``).
    title_detail = ""

    @abstractmethod
    def load_store(self, cfg: DictConfig) -> Any:
        """The configured store, checked (one line, exit 2, when unusable)."""

    @abstractmethod
    def source(self, cfg: DictConfig) -> Path:
        """Where the configured store lives (the MLflow dataset's source)."""

    def dataset(self, cfg: DictConfig) -> tuple[str, str]:
        """``(source, name)`` of the run's MLflow dataset inputs: the store's folder, named
        ``synthetic-cohort`` for the embedded cohort, else after its folder."""
        source = self.source(cfg)
        return str(source), "synthetic-cohort" if cfg.data.source == "synthetic" else source.name

    @abstractmethod
    def table(self, cfg: DictConfig, store: Any) -> Any:
        """The store's examples, labelled for the task and split by patient."""

    @abstractmethod
    def datamodule(self, cfg: DictConfig, table: Any, seed: int) -> Any:
        """Train/val/test loaders over ``table``."""

    @abstractmethod
    def network(self, cfg: DictConfig, table: Any, data: Any) -> BeatClassifier:
        """The configured model inside the task's LightningModule, ready to fit."""

    @abstractmethod
    def predict(self, model: BeatClassifier, data: Any, split: str) -> pd.DataFrame:
        """``predictions.csv`` rows of ``split``: one per example."""

    @abstractmethod
    def finish_spec(
        self, spec: ModelSpec, cfg: DictConfig, table: Any, model: torch.nn.Module
    ) -> ModelSpec:
        """The logged model's spec with this unit's input layout."""

    def run_tags(self, cfg: DictConfig, table: Any) -> dict[str, str]:
        """Tags the unit adds to a run."""
        return {}

    def run_metrics(self, table: Any, predictions: pd.DataFrame) -> dict[str, float]:
        """Metrics the unit adds to a run (counts of what it read)."""
        return {}

    def skipped(self, table: Any) -> pd.DataFrame | None:
        """The examples of the store left out, with why (``skipped_records.csv``); None: the
        unit keeps no such list."""
        return None

    def note(self, table: Any) -> str:
        """What the run page's line adds for this unit."""
        return ""


class BeatUnit(Unit):
    """One beat per example (the study's unit): a beat store, or the synthetic cohort's."""

    name = "beat"
    explains = True
    writes_model_card = True
    resumable = True

    def load_store(self, cfg: DictConfig) -> BeatStore:
        return load_store(cfg)

    def source(self, cfg: DictConfig) -> Path:
        return resolve_store_path(cfg.data)

    def table(self, cfg: DictConfig, store: BeatStore) -> BeatTable:
        return build_beat_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))

    def datamodule(self, cfg: DictConfig, table: BeatTable, seed: int) -> BeatDataModule:
        augment = AugmentSettings.from_config(cfg.data.get("augment"))
        return BeatDataModule(table, cfg.data.batch_size, cfg.data.num_workers, seed, augment)

    def network(self, cfg: DictConfig, table: BeatTable, data: BeatDataModule) -> BeatClassifier:
        pos_weight = member_pos_weight(cfg, data)
        return build_model(cfg, table.seq_len, pos_weight, targets=training_targets(table))

    def predict(self, model: BeatClassifier, data: BeatDataModule, split: str) -> pd.DataFrame:
        frame = data.prediction_frame(split)
        if len(frame) == 0:
            values = np.zeros((0, len(getattr(model, "outputs", ())) or 1))
        else:
            values = scored_values(model, data.loader(split))
        return with_outputs(frame, model, values)

    def finish_spec(
        self, spec: ModelSpec, cfg: DictConfig, table: BeatTable, model: torch.nn.Module
    ) -> ModelSpec:
        return spec


class RecordUnit(Unit):
    """A whole recording per example: every beat of it read together (a set model), or the
    strip itself (a strip model), in the leads ``data.leads`` names."""

    name = "record"
    title_detail = "records"

    def load_store(self, cfg: DictConfig) -> RecordStore:
        return load_records(cfg)

    def source(self, cfg: DictConfig) -> Path:
        return resolve_record_store(cfg.data)

    def table(self, cfg: DictConfig, store: RecordStore) -> RecordTable:
        return build_record_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))

    def datamodule(self, cfg: DictConfig, table: RecordTable, seed: int) -> RecordDataModule:
        batch, workers = int(cfg.data.batch_size), int(cfg.data.num_workers)
        return RecordDataModule(table, batch, workers, seed, train_beats(cfg.data))

    def network(
        self, cfg: DictConfig, table: RecordTable, data: RecordDataModule
    ) -> BeatClassifier:
        seq_len = table.layout(reads_strip(cfg.model)).seq_len
        pos_weight = member_pos_weight(cfg, data)
        targets = training_targets(table)
        return build_model(cfg, seq_len, pos_weight, targets=targets, in_channels=table.n_leads)

    def predict(self, model: BeatClassifier, data: RecordDataModule, split: str) -> pd.DataFrame:
        return predict_records(model, data, split)

    def finish_spec(
        self, spec: ModelSpec, cfg: DictConfig, table: RecordTable, model: torch.nn.Module
    ) -> ModelSpec:
        """A set model (``unit: record``) reads every beat of a recording together; a
        whole-strip model (``unit: strip``) reads the recording itself, laid out as the strip
        (``seq_len`` samples at ``fs`` = ``data.strip_fs``, start-aligned, no baseline
        removal) by :func:`~ecgml.signal.prepare_strip` in training and serving alike."""
        layout = table.layout(reads_strip(cfg.model))
        start_aligned = layout.r_index is None
        return dataclasses.replace(
            spec,
            seq_len=int(layout.seq_len),
            fs=float(layout.fs),
            r_index=layout.r_index,
            align="start" if start_aligned else spec.align,
            unit=layout.unit,
            baseline="none" if start_aligned else spec.baseline,
            backbone=pinned_backbone(cfg.model.backbone),
            leads=list(table.leads),
        )

    def run_tags(self, cfg: DictConfig, table: RecordTable) -> dict[str, str]:
        kinds = table.skip_reasons()
        return {
            "ecgml.unit": "record",
            "ecgml.leads": ",".join(resolve_leads(cfg.data.get("leads"))),
            "records.skipped": str(len(table.skipped)),
            **{f"records.skipped.{kind}": str(n) for kind, n in kinds.items()},
        }

    def run_metrics(self, table: RecordTable, predictions: pd.DataFrame) -> dict[str, float]:
        return {
            "test/n_records": float((predictions["split"] == "test").sum()),
            "records/skipped": float(len(table.skipped)),
            "records/mean_beats": float(table.meta["n_beats"].mean()),
        }

    def skipped(self, table: RecordTable) -> pd.DataFrame:
        return pd.DataFrame(
            [s.__dict__ for s in table.skipped],
            columns=["row", "record_id", "patient_id", "reason"],
        )

    def note(self, table: RecordTable) -> str:
        return f" · records, leads {','.join(table.leads)}"


#: The unit object of each ``data.unit``.
UNITS: dict[str, type[Unit]] = {"beat": BeatUnit, "record": RecordUnit}


def run_unit(cfg: Any) -> Unit:
    """The unit object of a composed or stored config (``data.unit``; ``data=records``:
    ``record``)."""
    return UNITS[data_unit(cfg)]()


@torch.inference_mode()
def scored_values(model: BeatClassifier, loader: Any) -> np.ndarray:
    """Every batch of ``loader`` scored in eval mode (not ``trainer.predict``, which a
    ``fast_dev_run`` trainer would stop after one batch)."""
    model = model.eval()
    device = next(model.parameters()).device
    batches = [model.predict_values(x.to(device)).float().cpu() for x, _ in loader]
    return torch.cat(batches).numpy()
