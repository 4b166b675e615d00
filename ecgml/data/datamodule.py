"""From a beat store to Lightning: labelled, padded, patient-split beats."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from ecgml.beatstore import (
    DEFAULT_MAX_BEAT_S,
    PROVENANCE_COLUMNS,
    BeatStore,
    check_amplitude,
    load_beat_store,
)
from ecgml.data.augment import AugmentSettings, BeatAugmenter, SeededGenerators
from ecgml.data.labels import (
    LabelSummary,
    conflicting_patients,
)
from ecgml.data.splits import build_split
from ecgml.data.tasks import TaskSpec, binary_spec, task_spec
from ecgml.errors import EcgmlError
from ecgml.signal import align_beats, reference_beats
from ecgml.synth import ensure_cohort

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class ExampleTable:
    """What every unit's table has: one ``meta`` row per example (patient_id, split, group,
    the targets) and the task they are labelled for."""

    meta: pd.DataFrame
    task: TaskSpec

    @property
    def target_columns(self) -> tuple[str, ...]:
        """The ``meta`` columns the model learns, one per output."""
        return self.task.target_columns

    def rows(self, split: str) -> np.ndarray:
        """The positions of ``split``'s examples."""
        return np.flatnonzero((self.meta["split"] == split).to_numpy())


@dataclass
class BeatTable(ExampleTable):
    """Padded beats ``x`` (n, length) with one ``meta`` row each (patient_id, y, split, …)."""

    x: np.ndarray
    meta: pd.DataFrame
    fs: float
    r_index: int | None
    digest: str
    summary: LabelSummary
    splits: pd.DataFrame  # patient_id, y, split (+ fold)
    #: What the table's targets are (a table built by hand: the binary task's ``y``).
    task: TaskSpec = field(default_factory=lambda: binary_spec("disorder"))

    @property
    def seq_len(self) -> int:
        return int(self.x.shape[1])

    def subset(self, split: str) -> tuple[np.ndarray, pd.DataFrame]:
        rows = self.rows(split)
        return self.x[rows], self.meta.iloc[rows].reset_index(drop=True)


class BeatDataset(Dataset):
    """``(beat[1, length], target)`` pairs as float tensors (a target vector per beat for a
    multi-label task)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def synthetic_store_path(data_cfg: Any) -> Path:
    """``data=synthetic``: the cohort's beat store, built once and cached."""
    return ensure_cohort(data_cfg.cohort, Path(data_cfg.cache_dir)) / "beats"


def user_store_path(data_cfg: Any) -> Path:
    """``data=beats``: the user's beat store folder (``data.path``)."""
    if OmegaConf.is_missing(data_cfg, "path") or not data_cfg.path:
        raise EcgmlError("data=beats needs data.path=/folder/with/manifest.csv")
    return Path(str(data_cfg.path)).expanduser().resolve()


#: Where each ``data.source`` of a beat run finds its store.
BEAT_SOURCES = {"synthetic": synthetic_store_path, "beats": user_store_path}


def resolve_store_path(data_cfg: Any) -> Path:
    """The beat store folder of ``data=synthetic`` (built/cached) or ``data=beats``."""
    find = BEAT_SOURCES.get(str(data_cfg.source))
    if find is None:
        raise EcgmlError(f"data.source={data_cfg.source!r} is unknown: use 'synthetic' or 'beats'")
    return find(data_cfg)


def fold_names(beats: pd.DataFrame, split_cfg: Any) -> list[str | int]:
    """Every fold of a cross-validating split (``split.fold=null`` runs them all)."""
    return build_split(split_cfg).folds(beats)


def assign_splits(
    beats: pd.DataFrame, split_cfg: Any, universe: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Patient table (patient_id, y, split[, fold]) for the configured split; ``universe``
    (:func:`store_universe`) lets a split share its folds across tasks."""
    return build_split(split_cfg).assign(beats, universe)


def store_universe(meta: pd.DataFrame) -> pd.DataFrame:
    """Every labelled beat of the store with ``y`` = its group's code: the patients that
    ``split.shared_folds=true`` draws folds over (patients under two groups left out)."""
    labelled = meta.loc[meta["group"] != "unknown"]
    labelled = labelled.loc[~labelled["patient_id"].isin(conflicting_patients(labelled))]
    codes = {g: i for i, g in enumerate(sorted(labelled["group"].unique()))}
    return labelled[["patient_id"]].assign(y=labelled["group"].map(codes).astype("int64"))


def build_beat_table(
    store: BeatStore, disorder_cfg: Any, split_cfg: Any, data_cfg: Any, task: TaskSpec | None = None
) -> BeatTable:
    """Labels, patient-level split and padding for one task (default: binary disorder)."""
    task = task or binary_spec(str(disorder_cfg.name))
    meta, summary = task.labels(store.meta, disorder_cfg, str(store.root))
    splits = assign_splits(meta, split_cfg, store_universe(store.meta))
    meta = meta.merge(splits[["patient_id", "split"]], on="patient_id", how="left")
    beats = [store.beats[i] for i in _row_positions(store.meta, meta)]
    beats = referenced_beats(beats, meta, store.info.fs, data_cfg)
    r_indices = _r_indices(meta, data_cfg.align)
    x, r_target = align_beats(beats, r_indices, data_cfg.beat_length)
    positive, negative = task.class_names(disorder_cfg)
    log.info(
        "%d beats from %d patients (%d %s, %d %s), %d conflicting patient(s) excluded, "
        "beat length %d",
        summary.n_beats,
        summary.n_patients,
        summary.n_positive_patients,
        positive,
        summary.n_negative_patients,
        negative,
        summary.n_conflicting_patients,
        x.shape[1],
    )
    return BeatTable(x, meta, store.info.fs, r_target, store.digest, summary, splits, task)


def _row_positions(store_meta: pd.DataFrame, selected: pd.DataFrame) -> np.ndarray:
    position = pd.Series(np.arange(len(store_meta)), index=store_meta["beat_id"])
    return position.loc[selected["beat_id"]].to_numpy()


def referenced_beats(
    beats: list[np.ndarray], meta: pd.DataFrame, fs: float, data_cfg: Any
) -> list[np.ndarray]:
    """``beats`` measured against their own isoelectric level (``data.baseline``)."""
    method = str(data_cfg.get("baseline", "none"))
    if method == "none":
        return beats
    if "r_index" not in meta.columns or meta["r_index"].isna().any():
        raise EcgmlError(
            f"data.baseline={method} needs every beat's R-peak: add an r_index column to "
            "manifest.csv, or use data.baseline=none"
        )
    return reference_beats(beats, meta["r_index"].astype(int).tolist(), fs, method)


def _r_indices(meta: pd.DataFrame, align: str) -> list[int] | None:
    if align == "start":
        return None
    if align != "r_peak":
        raise EcgmlError(f"data.align={align!r} is unknown: use r_peak or start")
    if "r_index" not in meta.columns or meta["r_index"].isna().any():
        log.info("beat store has no complete r_index column: beats aligned at their start")
        return None
    return meta["r_index"].astype(int).tolist()


def share_batches_by_file(worker_id: int) -> None:
    """A loader worker hands its batches over as named shared-memory files (torch's
    ``file_system`` strategy) rather than one passed file descriptor per tensor: the receiving
    process then opens each batch without a socket round trip per tensor, ~1.5-2x the records/s
    of two workers on two cores (``experiments/bench_scale_data.py``). Set in the worker only:
    the training process keeps its own strategy."""
    torch.multiprocessing.set_sharing_strategy("file_system")


class ExamplesDataModule(L.LightningDataModule):
    """Train/val/test loaders over a table of labelled examples, beats or whole records (built
    once, outside the trainer): the targets, the loss balance and the loaders. A unit's module
    says how a split's examples become a dataset (:meth:`dataset`) and which rows
    ``predictions.csv`` starts from (:meth:`prediction_frame`)."""

    #: How a batch's examples are stacked (None: torch's default).
    collate: Callable[[list[Any]], Any] | None = None

    def __init__(self, table: ExampleTable, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        self.table = table
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    @property
    def pos_weight(self) -> float:
        """n_negative / n_positive examples of the training split (for a balanced loss)."""
        return float(self.pos_weights[0])

    @property
    def pos_weights(self) -> np.ndarray:
        """n_negative / n_positive training examples of each output (multi-label: one per
        disorder)."""
        y = self.split_meta("train")[list(self.table.target_columns)].to_numpy(dtype=float)
        return (y == 0).sum(axis=0) / np.maximum((y == 1).sum(axis=0), 1)

    def split_meta(self, split: str) -> pd.DataFrame:
        """The ``meta`` rows of ``split``, in table order."""
        return self.table.meta.iloc[self.table.rows(split)].reset_index(drop=True)

    def targets(self, meta: pd.DataFrame) -> np.ndarray:
        """``meta``'s targets: ``(n,)`` for one output, ``(n, k)`` for k outputs."""
        columns = list(self.table.target_columns)
        values = meta[columns].to_numpy(dtype=np.float32)
        return values[:, 0] if len(columns) == 1 else values

    def dataset(self, split: str) -> Dataset:
        """``split``'s examples with their targets."""
        raise NotImplementedError

    def prediction_frame(self, split: str) -> pd.DataFrame:
        """The rows ``predictions.csv`` starts from for ``split``."""
        raise NotImplementedError

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            generator=generator if shuffle else None,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=share_batches_by_file,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


class BeatDataModule(ExamplesDataModule):
    """Loaders over a :class:`BeatTable`.

    ``augment`` transforms the training batches only, after they reach the model's device
    (:meth:`on_after_batch_transfer`), so validation, test and predict see the beats as stored.
    """

    table: BeatTable

    def __init__(
        self,
        table: BeatTable,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        augment: AugmentSettings | None = None,
    ) -> None:
        super().__init__(table, batch_size, num_workers, seed)
        self.augmenter = BeatAugmenter(augment, table.fs, table.r_index) if augment else None
        self.generators = SeededGenerators(seed)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if self.augmenter is None or trainer is None or not trainer.training:
            return batch
        x, y = batch
        return self.augmenter(x, self.generators.get(x.device)), y

    def dataset(self, split: str) -> BeatDataset:
        x, meta = self.table.subset(split)
        return BeatDataset(x, self.targets(meta))

    def prediction_frame(self, split: str) -> pd.DataFrame:
        """The rows ``predictions.csv`` starts from for ``split`` (provenance included)."""
        _, meta = self.table.subset(split)
        task = self.table.task
        provenance = [c for c in PROVENANCE_COLUMNS if c in meta.columns]
        frame = meta[["patient_id", "beat_id", "split"]].reset_index(drop=True)
        truth = task.true_columns(meta)
        rest = meta[["group", *provenance]].reset_index(drop=True)
        return pd.concat([frame.assign(**truth), rest], axis=1)


def load_store(cfg: Any) -> BeatStore:
    """The configured beat store (synthetic cohort built/cached, or the user's folder).

    Beats longer than ``data.max_beat_s`` and beats not in mV are refused (one line, exit 2).
    """
    path = resolve_store_path(cfg.data)
    store = load_beat_store(
        path,
        default_fs=cfg.data.fs,
        cache_dir=cfg.data.cache_dir,
        max_beat_s=cfg.data.get("max_beat_s", DEFAULT_MAX_BEAT_S),
    )
    check_amplitude(store)
    return store


def load_table(cfg: Any, store: BeatStore | None = None) -> BeatTable:
    """Resolve the configured data source and build the labelled, split, padded table."""
    store = store or load_store(cfg)
    return build_beat_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))
