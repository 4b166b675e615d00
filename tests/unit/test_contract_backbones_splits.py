"""One contract over every backbone and every split that ``conf/`` offers.

A new ``conf/model/<name>.yaml`` (torch backbone) or ``conf/split/<name>.yaml`` is picked up
here without editing this file: that is the promise docs/architecture.md makes.

- backbone: ``(B, 1, L) → (B, 1)`` finite logits for two beat lengths, the same output twice in
  eval mode, and a gradient that reaches the input (saliency needs it);
- split: on a toy table, every fold puts each patient in exactly one of train/val/test, covers
  every patient, leaves no subset empty, and a cross-validating split tests each patient once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from ecgml import CONF_DIR
from ecgml.beatstore import load_beat_store
from ecgml.data.labels import binary_labels
from ecgml.data.splits import PatientSplit, build_split
from ecgml.models import available_backbones, build_backbone

MODEL_NAMES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
SPLIT_NAMES = sorted(p.stem for p in (CONF_DIR / "split").glob("*.yaml"))
LENGTHS = (150, 301)  # the toy store's beat, and an odd 500 Hz-like one
BATCH = 3

Compose = Callable[..., DictConfig]


def test_the_conf_folders_offer_the_known_choices() -> None:
    assert {"cnn1d", "resnet1d", "inception1d", "transformer1d", "features_lr"} <= set(MODEL_NAMES)
    assert {"holdout", "group_kfold", "leave_center_out"} <= set(SPLIT_NAMES)


def test_every_torch_model_config_is_an_available_backbone() -> None:
    """A ``conf/model`` file with ``backbone._target_`` is a backbone; features_lr is not."""
    assert set(available_backbones()) == set(MODEL_NAMES) - {"features_lr"}


@pytest.mark.parametrize("name", available_backbones())
def test_backbone_contract(name: str, compose_cfg: Compose) -> None:
    model_cfg = compose_cfg(f"model={name}").model
    for length in LENGTHS:
        torch.manual_seed(0)
        model = build_backbone(model_cfg, in_channels=1, n_outputs=1, seq_len=length).eval()
        x = torch.randn(BATCH, 1, length, requires_grad=True)
        logits = model(x)
        assert logits.shape == (BATCH, 1), (name, length)
        assert torch.isfinite(logits).all(), (name, length)
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)
        logits.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), (name, length)
        assert x.grad.abs().sum() > 0, (name, length)


@pytest.fixture(scope="module")
def toy_table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Labelled beats of 50 toy patients over three centers and two devices."""
    from tests.fakes import write_toy_store

    root = write_toy_store(tmp_path_factory.mktemp("contract") / "store", 20, 30)
    meta, _ = binary_labels(load_beat_store(root).meta, "hyperkalemia", "normal")
    return meta


def _split_tables(split: PatientSplit, beats: pd.DataFrame) -> list[pd.DataFrame]:
    """The patient table (patient_id, y, split[, fold]) of every fold the split defines."""
    folds = split.folds(beats)
    if not folds:
        return [split.assign(beats)]
    return [split.with_fold(fold).assign(beats) for fold in folds]


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_split_contract(name: str, compose_cfg: Compose, toy_table: pd.DataFrame) -> None:
    split = build_split(compose_cfg(f"split={name}", "disorder=hyperkalemia").split)
    assert isinstance(split, PatientSplit) and split.name == name
    patients = set(toy_table["patient_id"])
    tables = _split_tables(split, toy_table)
    for table in tables:
        assert table["patient_id"].is_unique, f"split={name}: a patient in two subsets"
        assert set(table["patient_id"]) == patients, f"split={name}: patients missing"
        assert set(table["split"]) == {"train", "val", "test"}, f"split={name}: empty subset"
        beats = toy_table.merge(table[["patient_id", "split"]], on="patient_id")
        assert (beats.groupby("patient_id")["split"].nunique() == 1).all()
    if len(tables) > 1:
        tested = Counter(p for t in tables for p in t.loc[t["split"] == "test", "patient_id"])
        assert set(tested) == patients and set(tested.values()) == {1}, name


def test_the_toy_table_has_what_every_split_needs(toy_table: pd.DataFrame) -> None:
    assert {"patient_id", "y", "center", "device"} <= set(toy_table.columns)
    assert toy_table["center"].nunique() == 3
