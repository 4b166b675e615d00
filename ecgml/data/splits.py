"""Patient-level splits: no patient ever contributes beats to two subsets.

Splits are computed on the patient table (one label per patient) and then mapped onto beats,
so leakage is impossible by construction. The functions return a Series ``patient_id -> split``
with values ``train``, ``val``, ``test``.

``conf/split/<name>.yaml`` names one of the :class:`PatientSplit` classes below in ``_target_``
(:func:`build_split` instantiates it). A new split type is one class here plus one YAML file.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from ecgml.errors import EcgmlError
from ecgml.schemas import plain_dict
from ecgml.trust import trusted_class

MIN_PATIENTS_PER_CLASS_AND_SPLIT = 1


def patient_table(beats: pd.DataFrame) -> pd.Series:
    """One label per patient (``y`` of its beats), indexed by patient_id, sorted."""
    return beats.groupby("patient_id")["y"].first().sort_index()


def merge_rare_strata(beats: pd.DataFrame, min_patients: int) -> pd.DataFrame:
    """``beats`` with strata ``y`` of fewer than ``min_patients`` patients merged into the
    largest stratum (a multi-label combination such as hypokalemia + hyponatremia may be rare;
    stratified splitters need every stratum in every fold)."""
    per_patient = patient_table(beats)
    counts = per_patient.value_counts()
    rare = counts.index[counts < min_patients]
    if rare.empty:
        return beats
    out = beats.copy()
    out.loc[out["y"].isin(rare), "y"] = counts.idxmax()
    return out


def _check_enough(labels: pd.Series, n_subsets: int, what: str) -> None:
    counts = labels.value_counts()
    if not set(counts.index) <= {0, 1}:  # the strata of a multi-label or regression task
        if len(labels) < 2 * n_subsets:
            raise EcgmlError(
                f"too few patients ({len(labels)}) for {what}: need at least {2 * n_subsets}"
            )
        return
    for label, name in ((1, "positive"), (0, "negative")):
        if counts.get(label, 0) < n_subsets * MIN_PATIENTS_PER_CLASS_AND_SPLIT:
            raise EcgmlError(
                f"too few {name} patients ({counts.get(label, 0)}) for {what}: need at least "
                f"{n_subsets}; add patients or use a split with fewer subsets"
            )


def _stratified_take(labels: pd.Series, fraction: float, seed: int) -> tuple[pd.Index, pd.Index]:
    """Split patients into (rest, taken) with ``fraction`` taken, stratified, ≥1 per class."""
    n_take = max(round(fraction * len(labels)), 2)
    rest, taken = train_test_split(
        labels.index.to_numpy(), test_size=n_take, stratify=labels.to_numpy(), random_state=seed
    )
    return pd.Index(rest), pd.Index(taken)


def holdout_split(
    labels: pd.Series, train: float = 0.70, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> pd.Series:
    """Stratified patient-level train/val/test split (the study's 70/15/15)."""
    if min(train, val, test) <= 0 or not np.isclose(train + val + test, 1.0):
        raise EcgmlError(
            f"split fractions train={train}, val={val}, test={test} must be positive and sum to 1"
        )
    _check_enough(labels, 3, "a train/val/test split")
    rest, test_ids = _stratified_take(labels, test, seed)
    _, val_ids = _stratified_take(labels.loc[rest], val / (train + val), seed + 1)
    split = pd.Series("train", index=labels.index, name="split")
    split.loc[test_ids] = "test"
    split.loc[val_ids] = "val"
    return split


def _fold_assignments(beats: pd.DataFrame, n_splits: int, seed: int) -> pd.Series:
    """Test fold per patient from StratifiedGroupKFold over beats grouped by patient."""
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fold_of_beat = np.full(len(beats), -1)
    for k, (_, test_idx) in enumerate(
        folds.split(np.zeros(len(beats)), beats["y"].to_numpy(), beats["patient_id"].to_numpy())
    ):
        fold_of_beat[test_idx] = k
    return pd.Series(fold_of_beat, index=beats["patient_id"].to_numpy()).groupby(level=0).first()


def kfold_split(
    beats: pd.DataFrame,
    n_splits: int = 5,
    fold: int = 0,
    val_fraction: float = 0.15,
    seed: int = 0,
    universe: pd.DataFrame | None = None,
) -> pd.Series:
    """Fold ``fold`` of a StratifiedGroupKFold by patient as the test set.

    Validation is a stratified patient-level slice of the remaining training folds. With
    ``universe`` (every labelled beat of the store, ``y`` = the group), the folds are drawn over
    all of its patients, so that runs of different tasks test the same patients in each fold.
    """
    if n_splits < 2:
        raise EcgmlError(f"split.n_splits={n_splits}: need at least 2 folds")
    if not 0 <= fold < n_splits:
        raise EcgmlError(f"split.fold={fold} is out of range: use 0..{n_splits - 1}")
    labels = patient_table(beats)
    _check_enough(labels, n_splits, f"{n_splits}-fold cross-validation")
    fold_of = fold_table(beats if universe is None else universe, n_splits, seed)
    fold_of = fold_of.reindex(labels.index)
    train_labels = labels.loc[fold_of != fold]
    _check_enough(train_labels, 2, "a validation slice of the training folds")
    _, val_ids = _stratified_take(train_labels, val_fraction, seed + 1)
    split = pd.Series("train", index=labels.index, name="split")
    split.loc[fold_of.index[fold_of == fold]] = "test"
    split.loc[val_ids] = "val"
    return split


def fold_table(beats: pd.DataFrame, n_splits: int, seed: int) -> pd.Series:
    """The test fold of every patient (index patient_id, sorted)."""
    return _fold_assignments(beats, n_splits, seed).sort_index().rename("fold")


def leave_group_out_split(
    beats: pd.DataFrame, by: str, fold: str, val_fraction: float = 0.15, seed: int = 0
) -> pd.Series:
    """Test = the patients whose ``by`` (center/device) equals ``fold``; val from the rest."""
    if by not in beats.columns:
        raise EcgmlError(
            f"split by {by!r} needs a '{by}' column in the beat store manifest: add it or use "
            "split=group_kfold"
        )
    labels = patient_table(beats)
    value_of = beats.groupby("patient_id")[by].first().astype(str).loc[labels.index]
    if str(fold) not in set(value_of):
        raise EcgmlError(
            f"split.fold={fold!r} is not a {by} in the data: use one of "
            f"{', '.join(sorted(set(value_of)))}"
        )
    train_labels = labels.loc[value_of != str(fold)]
    _check_enough(train_labels, 2, f"training on the {by}s other than {fold!r}")
    _, val_ids = _stratified_take(train_labels, val_fraction, seed + 1)
    split = pd.Series("train", index=labels.index, name="split")
    split.loc[value_of.index[value_of == str(fold)]] = "test"
    split.loc[val_ids] = "val"
    return split


def group_values(beats: pd.DataFrame, by: str) -> list[str]:
    """The folds of a leave-one-``by``-out split, sorted."""
    if by not in beats.columns:
        raise EcgmlError(f"split by {by!r} needs a '{by}' column in the beat store manifest")
    return sorted(beats[by].astype(str).unique())


class PatientSplit(ABC):
    """One patient-level split scheme: the classes ``conf/split/*.yaml`` instantiate.

    ``fold`` is ``None`` for a cross-validating split that has to run every fold (the pipeline
    loops over :meth:`folds` with :meth:`with_fold`); :class:`Holdout` has a single "fold".
    """

    name: str
    fold: Any = None

    @property
    def runs_all_folds(self) -> bool:
        """True when this split is one run per fold (``split.fold=null`` of a k-fold split)."""
        return False

    def folds(self, beats: pd.DataFrame) -> list[Any]:
        """Every fold of a cross-validating split; ``[]`` for a single train/val/test split."""
        return []

    def with_fold(self, fold: Any) -> PatientSplit:
        return self

    def run_name_suffix(self) -> str:
        """What the fold adds to the run name ``<disorder>-<model>-s<seed>`` (a contract)."""
        return ""

    @abstractmethod
    def assign(self, beats: pd.DataFrame, universe: pd.DataFrame | None = None) -> pd.DataFrame:
        """Patient table ``patient_id, y, split[, fold]`` (one row per patient, sorted).
        ``universe``: every labelled beat of the store (used by splits that share folds)."""

    def _require_fold(self) -> None:
        if self.fold is None:
            raise EcgmlError(
                f"split={self.name} with split.fold=null means every fold: run it through "
                "`python -m ecgml.train` (ecgml.crossval), or pick one with split.fold=…"
            )


@dataclass(frozen=True)
class Holdout(PatientSplit):
    """Stratified patient-level train/val/test fractions (the study's 70/15/15)."""

    train: float
    val: float
    test: float
    seed: int
    name: str = "holdout"

    def assign(self, beats: pd.DataFrame, universe: pd.DataFrame | None = None) -> pd.DataFrame:
        labels = patient_table(beats)
        split = holdout_split(labels, self.train, self.val, self.test, seed=self.seed)
        return _table(pd.DataFrame({"y": labels, "split": split}))


@dataclass(frozen=True)
class _FoldedSplit(PatientSplit):
    """Shared by the cross-validating splits: ``fold`` selects the test set."""

    val_fraction: float
    seed: int
    fold: Any = None

    @property
    def runs_all_folds(self) -> bool:
        return self.fold is None

    def with_fold(self, fold: Any) -> PatientSplit:
        return replace(self, fold=fold)


@dataclass(frozen=True)
class GroupKFold(_FoldedSplit):
    """StratifiedGroupKFold by patient: fold ``fold`` is the test set."""

    n_splits: int = 5
    name: str = "group_kfold"
    #: Draw the folds over every labelled patient of the store (stratified on the group), so
    #: that each task (each binary disorder, multi-label, regression) tests the same patients
    #: in fold k; false: over the task's own patients (stratified on its label).
    shared_folds: bool = False

    def folds(self, beats: pd.DataFrame) -> list[Any]:
        return list(range(self.n_splits))

    def run_name_suffix(self) -> str:
        return f"-fold{self.fold}"

    def assign(self, beats: pd.DataFrame, universe: pd.DataFrame | None = None) -> pd.DataFrame:
        self._require_fold()
        universe = universe if self.shared_folds else None
        labels = patient_table(beats)
        split = kfold_split(beats, self.n_splits, self.fold, self.val_fraction, self.seed, universe)
        fold = fold_table(beats if universe is None else universe, self.n_splits, self.seed)
        fold = fold.reindex(labels.index)
        return _table(pd.DataFrame({"y": labels, "split": split, "fold": fold}))


@dataclass(frozen=True)
class LeaveCenterOut(_FoldedSplit):
    """Leave one value of ``by`` (center or device) out as the test set."""

    by: str = "center"
    name: str = "leave_center_out"

    def folds(self, beats: pd.DataFrame) -> list[Any]:
        return list(group_values(beats, self.by))

    def run_name_suffix(self) -> str:
        return f"-{self.by}-{self.fold}"

    def assign(self, beats: pd.DataFrame, universe: pd.DataFrame | None = None) -> pd.DataFrame:
        self._require_fold()
        labels = patient_table(beats)
        split = leave_group_out_split(beats, self.by, str(self.fold), self.val_fraction, self.seed)
        fold = beats.groupby("patient_id")[self.by].first().astype(str)
        return _table(pd.DataFrame({"y": labels, "split": split, "fold": fold}))


def _table(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename_axis("patient_id").reset_index()


def build_split(split_cfg: Any) -> PatientSplit:
    """The :class:`PatientSplit` named in ``split_cfg._target_`` (a ``conf/split`` file)."""
    if isinstance(split_cfg, PatientSplit):
        return split_cfg
    config = plain_dict(split_cfg)
    # The class is checked before anything is called: only a split class of this module.
    split_class = trusted_class(
        config.get("_target_"), "split", "split._target_", within=(__name__,)
    )
    if not issubclass(split_class, PatientSplit) or inspect.isabstract(split_class):
        raise EcgmlError(f"split._target_={config['_target_']!r} is not a PatientSplit")
    directives = [k for k in config if k.startswith("_") and k.endswith("_") and k != "_target_"]
    if directives:
        raise EcgmlError(f"split: Hydra directive {directives[0]} is not supported in a split")
    return split_class(**{k: v for k, v in config.items() if k != "_target_"})
