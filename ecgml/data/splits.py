"""Patient-level splits: no patient ever contributes beats to two subsets.

Splits are computed on the patient table (one label per patient) and then mapped onto beats,
so leakage is impossible by construction. Both return a Series ``patient_id -> split`` with
values ``train``, ``val``, ``test``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from ecgml.errors import EcgmlError

MIN_PATIENTS_PER_CLASS_AND_SPLIT = 1


def patient_table(beats: pd.DataFrame) -> pd.Series:
    """One label per patient (``y`` of its beats), indexed by patient_id, sorted."""
    return beats.groupby("patient_id")["y"].first().sort_index()


def _check_enough(labels: pd.Series, n_subsets: int, what: str) -> None:
    counts = labels.value_counts()
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
    beats: pd.DataFrame, n_splits: int = 5, fold: int = 0, val_fraction: float = 0.15, seed: int = 0
) -> pd.Series:
    """Fold ``fold`` of a StratifiedGroupKFold by patient as the test set.

    Validation is a stratified patient-level slice of the remaining training folds.
    """
    if n_splits < 2:
        raise EcgmlError(f"split.n_splits={n_splits}: need at least 2 folds")
    if not 0 <= fold < n_splits:
        raise EcgmlError(f"split.fold={fold} is out of range: use 0..{n_splits - 1}")
    labels = patient_table(beats)
    _check_enough(labels, n_splits, f"{n_splits}-fold cross-validation")
    fold_of = fold_table(beats, n_splits, seed)
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
