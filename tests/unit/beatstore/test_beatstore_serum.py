"""Issue 13: the optional ``potassium`` / ``sodium`` manifest columns (mmol/L, empty = unknown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import OPTIONAL_COLUMNS, PROVENANCE_COLUMNS, load_beat_store, read_manifest
from ecgml.errors import EcgmlError
from tests.fakes import write_toy_store


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """8 beats of 4 patients with serum values in the manifest."""
    root = write_toy_store(tmp_path / "store", n_positive=2, n_negative=2, beats_per_patient=2)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str)
    manifest["potassium"] = ["5.8", "5.8", "6.4", "6.4", "4.1", "4.1", "", ""]
    manifest["sodium"] = ["138", "138", "", "", "141.5", "141.5", "129", "129"]
    manifest.to_csv(root / "manifest.csv", index=False)
    return root


def set_cell(store: Path, column: str, value: object, row: int) -> None:
    manifest = pd.read_csv(store / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[row, column] = value
    manifest.to_csv(store / "manifest.csv", index=False)


def test_serum_columns_are_optional_and_kept_as_floats(store: Path) -> None:
    assert {"potassium", "sodium"} <= set(OPTIONAL_COLUMNS)
    assert "potassium" not in PROVENANCE_COLUMNS and "sodium" not in PROVENANCE_COLUMNS
    loaded = load_beat_store(store)
    potassium = loaded.meta["potassium"].to_numpy()
    sodium = loaded.meta["sodium"].to_numpy()
    assert potassium.dtype == np.float64 and sodium.dtype == np.float64
    np.testing.assert_array_equal(potassium[:6], [5.8, 5.8, 6.4, 6.4, 4.1, 4.1])
    assert np.isnan(potassium[6:]).all()  # empty = unknown
    np.testing.assert_array_equal(sodium[[0, 4, 6]], [138.0, 141.5, 129.0])
    assert np.isnan(sodium[2:4]).all()


def test_a_store_without_serum_columns_still_loads(tmp_path: Path) -> None:
    root = write_toy_store(tmp_path / "plain", n_positive=1, n_negative=1, beats_per_patient=2)
    meta = read_manifest(root)
    assert "potassium" not in meta.columns and "sodium" not in meta.columns


def test_an_all_empty_serum_column_is_unknown_everywhere(store: Path) -> None:
    manifest = pd.read_csv(store / "manifest.csv", dtype=str)
    manifest["potassium"] = ""
    manifest.to_csv(store / "manifest.csv", index=False)
    assert read_manifest(store)["potassium"].isna().all()


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("potassium", "high", "'high'"),
        ("potassium", "-4.2", "-4.2"),
        ("potassium", "0.5", "0.5"),
        ("potassium", "12", "12"),
        ("potassium", "4,5", "'4,5'"),
        ("potassium", "inf", "inf"),
        ("sodium", "99", "99"),
        ("sodium", "181", "181"),
        ("sodium", "140 mmol/L", "'140 mmol/L'"),
    ],
)
def test_bad_serum_values_are_one_line_errors(
    store: Path, column: str, value: str, shown: str
) -> None:
    set_cell(store, column, value, row=3)
    with pytest.raises(EcgmlError) as caught:
        load_beat_store(store)
    message = str(caught.value)
    assert "\n" not in message
    assert str(store / "manifest.csv") in message
    assert "line 5" in message  # row 3 + header + 1-based
    assert f"column {column}" in message
    assert f"got {shown}" in message
    assert "mmol/L" in message and "leave the cell empty" in message
    low, high = ("1", "10") if column == "potassium" else ("100", "180")
    assert f"between {low} and {high}" in message


def test_bounds_are_inclusive(store: Path) -> None:
    set_cell(store, "potassium", "1.0", row=0)
    set_cell(store, "potassium", "10", row=1)
    set_cell(store, "sodium", "100", row=0)
    set_cell(store, "sodium", "180.0", row=1)
    meta = read_manifest(store)
    assert meta["potassium"].iloc[:2].tolist() == [1.0, 10.0]
    assert meta["sodium"].iloc[:2].tolist() == [100.0, 180.0]


def test_a_bad_serum_value_is_an_exit_2_error(store: Path) -> None:
    set_cell(store, "sodium", "-1", row=0)
    with pytest.raises(EcgmlError, match=r"line 2: column sodium .* got -1:") as caught:
        read_manifest(store)
    assert caught.value.exit_code == 2


def test_digitized_stores_carry_the_serum_values_of_images_csv(tmp_path: Path) -> None:
    """``images.csv`` may give each image's K / Na; the digitizer's manifest rows keep them."""
    from ecgml.beatstore import beat_rows
    from ecgml.digitize.folder import read_labels
    from ecgml.signal.windows import BeatSet

    (tmp_path / "images.csv").write_text(
        "image_file,patient_id,group,potassium,sodium\na.png,P1,hyperkalemia,6.1,\n"
    )
    labels = read_labels(tmp_path, [tmp_path / "a.png", tmp_path / "b.png"], "strip")
    assert labels.loc["a.png", "potassium"] == "6.1" and labels.loc["a.png", "sodium"] is None
    beats = BeatSet(
        beats=np.zeros((2, 10)),
        r_indices=np.array([10, 20]),
        beat_index=np.array([0, 1]),
        fs=500.0,
        pre_r_ms=4.0,
        post_r_ms=16.0,
        median_beat=np.zeros(10),
    )
    row = labels.loc["a.png"]
    rows = beat_rows(beats, {k: row[k] for k in ("patient_id", "group", "potassium", "sodium")})
    assert rows["potassium"].tolist() == ["6.1", "6.1"] and "sodium" not in rows.columns
