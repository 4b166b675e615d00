import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ecgml.data.labels import binary_labels
from ecgml.data.splits import (
    GroupKFold,
    Holdout,
    LeaveCenterOut,
    PatientSplit,
    build_split,
    fold_table,
    holdout_split,
    kfold_split,
    patient_table,
)
from ecgml.errors import EcgmlError
from ecgml.signal import align_beats


def beats_frame(labels: list[int], beats_per_patient: list[int]) -> pd.DataFrame:
    rows = [
        {"patient_id": f"p{i}", "y": y}
        for i, (y, n) in enumerate(zip(labels, beats_per_patient, strict=True))
        for _ in range(n)
    ]
    return pd.DataFrame(rows)


patients = st.integers(min_value=12, max_value=80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(
            lambda ys: 6 <= sum(ys) <= len(ys) - 6
        ),
        st.lists(st.integers(1, 5), min_size=n, max_size=n),
        st.integers(0, 10_000),
    )
)


@settings(max_examples=60, deadline=None)
@given(patients)
def test_holdout_never_shares_a_patient_and_keeps_both_classes(case: tuple) -> None:
    labels, counts, seed = case
    beats = beats_frame(labels, counts)
    split = holdout_split(patient_table(beats), seed=seed)
    assert split.index.is_unique  # one split per patient, so no patient in two subsets
    merged = beats.merge(split.rename("split"), left_on="patient_id", right_index=True)
    assert merged.groupby("patient_id")["split"].nunique().max() == 1
    for name in ("train", "val", "test"):
        assert set(merged.loc[merged["split"] == name, "y"]) == {0, 1}


@settings(max_examples=40, deadline=None)
@given(patients, st.integers(2, 5))
def test_kfold_test_folds_partition_patients(case: tuple, n_splits: int) -> None:
    labels, counts, seed = case
    beats = beats_frame(labels, counts)
    folds = fold_table(beats, n_splits, seed)
    assert sorted(folds.unique()) == list(range(n_splits))
    split = kfold_split(beats, n_splits=n_splits, fold=n_splits - 1, seed=seed)
    assert set(split[split == "test"].index) == set(folds[folds == n_splits - 1].index)
    assert set(split.unique()) == {"train", "val", "test"}
    tested = beats[beats["patient_id"].isin(split[split == "test"].index)]
    assert tested["y"].nunique() == 2


def test_holdout_fractions_are_close_to_70_15_15() -> None:
    beats = beats_frame([1] * 100 + [0] * 200, [2] * 300)
    counts = holdout_split(patient_table(beats), seed=3).value_counts()
    assert counts["train"] == pytest.approx(210, abs=3)
    assert counts["val"] == pytest.approx(45, abs=3)
    assert counts["test"] == pytest.approx(45, abs=3)


def test_too_few_patients_is_a_clear_error() -> None:
    beats = beats_frame([1, 1, 0, 0, 0, 0], [2] * 6)
    with pytest.raises(EcgmlError, match="too few positive patients"):
        holdout_split(patient_table(beats))
    with pytest.raises(EcgmlError, match="split.fold=7 is out of range"):
        kfold_split(beats, n_splits=2, fold=7)


def centered_beats() -> pd.DataFrame:
    beats = beats_frame([1] * 30 + [0] * 30, [2] * 60)
    beats["center"] = beats["patient_id"].map(lambda p: f"c{int(p[1:]) % 3}")
    return beats


def test_split_objects_share_one_interface() -> None:
    beats = centered_beats()
    splits: list[PatientSplit] = [
        Holdout(train=0.7, val=0.15, test=0.15, seed=1),
        GroupKFold(val_fraction=0.15, seed=1, n_splits=3),
        LeaveCenterOut(val_fraction=0.15, seed=1),
    ]
    expected_folds = [[], [0, 1, 2], ["c0", "c1", "c2"]]
    for split, folds in zip(splits, expected_folds, strict=True):
        assert split.folds(beats) == folds
        assert split.runs_all_folds == bool(folds)
        for one in [split.with_fold(f) for f in folds] or [split]:
            assert not one.runs_all_folds
            table = one.assign(beats)
            assert table["patient_id"].is_unique and len(table) == 60
            assert set(table["split"]) == {"train", "val", "test"}
    assert Holdout(0.7, 0.15, 0.15, 0).run_name_suffix() == ""
    assert GroupKFold(0.15, 0, fold=2).run_name_suffix() == "-fold2"
    assert LeaveCenterOut(0.15, 0, fold="c1", by="device").run_name_suffix() == "-device-c1"


def test_a_cross_validating_split_needs_a_fold_to_assign() -> None:
    with pytest.raises(EcgmlError, match="split.fold=null means every fold"):
        GroupKFold(val_fraction=0.15, seed=0).assign(centered_beats())


def test_build_split_instantiates_the_target() -> None:
    cfg = OmegaConf.create(
        {
            "_target_": "ecgml.data.splits.GroupKFold",
            "name": "group_kfold",
            "n_splits": 4,
            "fold": 1,
            "val_fraction": 0.2,
            "seed": 3,
        }
    )
    assert build_split(cfg) == GroupKFold(val_fraction=0.2, seed=3, fold=1, n_splits=4)
    with pytest.raises(EcgmlError, match="builtins.dict is not a class of ecgml.data.splits"):
        build_split(OmegaConf.create({"_target_": "builtins.dict"}))


def test_binary_labels_exclude_conflicting_patients_and_other_groups() -> None:
    meta = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "c", "d", "e"],
            "group": [
                "hypokalemia",
                "hypokalemia",
                "normal",
                "hypokalemia",
                "normal",
                "hyperkalemia",
                "normal",
            ],
        }
    )
    selected, summary = binary_labels(meta, "hypokalemia")
    assert set(selected["patient_id"]) == {"a", "b", "e"}
    assert selected.set_index("patient_id")["y"].groupby(level=0).first().to_dict() == {
        "a": 1,
        "b": 0,
        "e": 0,
    }
    assert summary.n_conflicting_patients == 1
    with pytest.raises(EcgmlError, match="no 'hyponatremia' patients"):
        binary_labels(meta, "hyponatremia")
    with pytest.raises(EcgmlError, match="group 'unknown'"):
        binary_labels(meta.assign(group="unknown"), "hypokalemia")


def test_padding_aligns_r_peaks_and_zero_fills() -> None:
    beats = [np.ones(5, np.float32), 2 * np.ones(8, np.float32)]
    x, r = align_beats(beats, r_indices=[1, 4])
    assert r == 4 and x.shape == (2, 8)
    assert x[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert x[1].tolist() == [2] * 8
    cropped, r_cropped = align_beats(beats, r_indices=[1, 4], length=4)
    assert cropped.shape == (2, 4) and r_cropped == 2
    assert cropped[1].tolist() == [2] * 4
    start, none = align_beats(beats, length=6)
    assert none is None and start[0].tolist() == [1] * 5 + [0]
