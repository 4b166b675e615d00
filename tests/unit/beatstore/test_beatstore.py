from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store, read_manifest
from ecgml.errors import EcgmlError
from tests.fakes import write_toy_store


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return write_toy_store(tmp_path / "store", n_positive=3, n_negative=3, beats_per_patient=2)


def test_roundtrip_keeps_samples_and_metadata(store: Path, tmp_path: Path) -> None:
    loaded = load_beat_store(store, cache_dir=tmp_path / "cache")
    assert len(loaded) == 12
    assert loaded.info.fs == 250.0
    assert set(loaded.meta["group"]) == {"hyperkalemia", "normal"}
    assert loaded.meta["r_index"].eq(50).all()
    first = pd.read_csv(store / loaded.meta["beat_file"][0])["mv"].to_numpy()
    np.testing.assert_allclose(loaded.beats[0], first, atol=1e-5)


def test_cache_is_reused_and_keyed_by_content(store: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_beat_store(store, cache_dir=cache)
    assert len(list(cache.glob("beats-*.npz"))) == 1
    again = load_beat_store(store, cache_dir=cache)
    assert again.digest == first.digest
    np.testing.assert_array_equal(again.beats[3], first.beats[3])
    beat_file = store / first.meta["beat_file"][0]
    beat_file.write_text("mv\n" + "\n".join(["0.5"] * 150) + "\n")
    changed = load_beat_store(store, cache_dir=cache)
    assert changed.digest != first.digest
    assert np.allclose(changed.beats[0], 0.5)
    assert len(list(cache.glob("beats-*.npz"))) == 2


def edit_manifest(store: Path, **changes: object) -> None:
    manifest = pd.read_csv(store / "manifest.csv")
    for column, value in changes.items():
        if value is None:
            manifest = manifest.drop(columns=[column])
        else:
            manifest.loc[0, column] = value
    manifest.to_csv(store / "manifest.csv", index=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group": None}, "lacks column(s) group"),
        ({"group": "hyperkalaemia"}, "column group holds 'hyperkalaemia'"),
        ({"patient_id": ""}, "column patient_id is empty"),
        ({"beat_file": "beats/nope.csv"}, "listed in the manifest but missing"),
    ],
)
def test_manifest_errors_name_the_problem(store: Path, change: dict, message: str) -> None:
    edit_manifest(store, **change)
    with pytest.raises(EcgmlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_beat_store(store)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "holds no samples"), ("mv\n0.1\nabc\n", "non-numeric"), ("mv\n0.1\nnan\n", "NaN")],
)
def test_bad_beat_files_are_rejected_with_their_path(
    store: Path, content: str, message: str
) -> None:
    beat_file = store / read_manifest(store)["beat_file"][1]
    beat_file.write_text(content)
    with pytest.raises(EcgmlError, match=message) as info:
        load_beat_store(store)
    assert str(beat_file) in str(info.value)


def test_missing_folder_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(EcgmlError, match="does not exist"):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EcgmlError, match="manifest.csv is missing"):
        read_manifest(tmp_path / "empty")


def test_headerless_single_column_beats_are_accepted(store: Path) -> None:
    beat_file = store / read_manifest(store)["beat_file"][0]
    beat_file.write_text("0.1\n0.2\n0.3\n")
    edit_manifest(store, r_index=1)  # the R-peak must lie inside the (now 3-sample) beat
    assert load_beat_store(store).beats[0].tolist() == pytest.approx([0.1, 0.2, 0.3])
