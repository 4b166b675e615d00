"""The record store: strict records.csv, lenient per record (skipped with reasons), exit 2 when
nothing is usable; and the synthetic cohort's records.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.data.records import cut_store, resolve_leads
from ecgml.errors import EcgmlError
from ecgml.recordstore import (
    LEADS,
    StorePathError,
    load_record_store,
    read_records_table,
    reason_kind,
    records_table,
    write_records_csv,
)
from tests.unit.records.toy import FS, ecg, write_record, write_store


def _good(root: Path, name: str, patient: str, rng: np.random.Generator) -> dict:
    write_record(root / name, ecg(rng))
    return {"record_file": name, "patient_id": patient, "group": "normal"}


def test_lead_ii_and_twelve_lead_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [_good(tmp_path, "a.csv", "P1", rng)]
    twelve = {lead: ecg(rng) * (0.5 if lead != "II" else 1.0) for lead in LEADS}
    write_record(tmp_path / "b.csv", twelve["II"], leads=twelve)
    rows.append({"record_file": "b.csv", "patient_id": "P2", "group": "hyperkalemia"})
    write_store(tmp_path, rows)
    store = load_record_store(tmp_path, ["II"])
    assert len(store) == 2 and store.fs == pytest.approx(FS)
    assert store.records[0].leads == ("II",) and store.records[1].leads == LEADS
    assert list(store.meta["record_id"]) == ["a.csv", "b.csv"]  # record_id defaults to the file
    every = load_record_store(tmp_path, resolve_leads("all"))
    assert [r.record_id for r in every.records] == ["b.csv"]
    assert "lacks lead(s) I" in every.skipped[0].reason


def test_bad_records_are_skipped_with_their_reasons(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [_good(tmp_path, "good.csv", "P1", rng), _good(tmp_path, "good2.csv", "P2", rng)]
    write_record(tmp_path / "short.csv", ecg(rng, seconds=1.5))
    uneven = pd.DataFrame({"time_s": np.cumsum(rng.uniform(0.001, 0.003, 5000)), "mv": ecg(rng)})
    uneven.to_csv(tmp_path / "uneven.csv", index=False)
    write_record(tmp_path / "v7.csv", ecg(rng), leads={"II": ecg(rng), "V7": ecg(rng)})
    write_record(tmp_path / "slow.csv", ecg(rng, fs=250.0), fs=250.0)
    write_record(tmp_path / "flat.csv", np.zeros(5000))
    for name in ("short", "uneven", "v7", "slow", "flat", "missing"):
        rows.append({"record_file": f"{name}.csv", "patient_id": name, "group": "normal"})
    write_store(tmp_path, rows)
    store = load_record_store(tmp_path, ["II"])
    reasons = {s.record_id: s.reason for s in store.skipped}
    assert "shorter than 2 s" in reasons["short.csv"]
    assert "non-uniform time steps" in reasons["uneven.csv"]
    assert "unknown lead name 'V7'" in reasons["v7.csv"]
    assert "sampling rate 250 Hz differs from the store's 500 Hz" in reasons["slow.csv"]
    assert "missing" in reasons["missing.csv"]
    kinds = {s.record_id: reason_kind(s.reason) for s in store.skipped}
    assert kinds == {
        "short.csv": "too_short",
        "uneven.csv": "non_uniform_time",
        "v7.csv": "unknown_lead",
        "slow.csv": "sampling_rate",
        "missing.csv": "missing_file",
    }
    meta, cut, skipped = cut_store(store, ("II",), {})
    assert "no detectable beats" in {s.record_id: s.reason for s in skipped}["flat.csv"]
    assert list(meta["record_id"]) == ["good.csv", "good2.csv"]
    assert len(skipped) == 6 and all(len(c.beats) >= 8 for c in cut)


def test_a_store_where_every_record_fails_is_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    write_record(tmp_path / "short.csv", ecg(rng, seconds=1.0))
    write_record(tmp_path / "flat.csv", np.zeros(5000))
    write_store(tmp_path, [{"record_file": "short.csv", "patient_id": "P1", "group": "normal"}])
    with pytest.raises(EcgmlError) as err:
        load_record_store(tmp_path)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert "records.csv" in str(err.value) and "line 2" in str(err.value)
    write_store(tmp_path, [{"record_file": "flat.csv", "patient_id": "P1", "group": "normal"}])
    with pytest.raises(EcgmlError, match="no detectable beats") as err:
        cut_store(load_record_store(tmp_path), ("II",), {})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"record_file": "a.csv", "patient_id": "P1"}], "lacks column\\(s\\) group"),
        (
            [{"record_file": "a.csv", "patient_id": "P1", "group": "sick"}],
            "line 2: column group holds 'sick'",
        ),
        (
            [{"record_file": "a.csv", "patient_id": "P1", "group": "normal", "potassium": 45}],
            "line 2: column potassium",
        ),
        (
            [{"record_file": "a.csv", "patient_id": "", "group": "normal"}],
            "line 2: column patient_id is empty",
        ),
        (
            [
                {"record_file": "a.csv", "patient_id": "P1", "group": "normal", "record_id": "x"},
                {"record_file": "b.csv", "patient_id": "P1", "group": "normal", "record_id": "x"},
            ],
            "line 3: column record_id 'x' appears twice",
        ),
    ],
)
def test_records_csv_is_validated_strictly(tmp_path: Path, rows: list, match: str) -> None:
    write_store(tmp_path, rows)
    with pytest.raises(EcgmlError, match=match) as err:
        read_records_table(tmp_path)
    assert str(tmp_path / "records.csv") in str(err.value) and "\n" not in str(err.value)


def test_a_record_outside_the_store_is_refused(tmp_path: Path) -> None:
    write_record(tmp_path / "outside.csv", ecg(np.random.default_rng(3)))
    root = write_store(
        tmp_path / "store",
        [{"record_file": "../outside.csv", "patient_id": "P1", "group": "normal"}],
    )
    with pytest.raises(StorePathError, match="lies outside the record store"):
        load_record_store(root)


def test_synth_records_csv_points_at_the_cohort_signals(tmp_path: Path) -> None:
    patients = pd.DataFrame(
        {
            "patient_id": ["P0001", "P0002"],
            "group": ["normal", "hypokalemia"],
            "center": ["C01", "C02"],
            "device": ["mindray", "mindray"],
            "potassium_mmol_l": [4.1, 3.1],
            "sodium_mmol_l": [140.0, 139.0],
        }
    )
    table = records_table(patients)
    assert list(table["record_file"]) == ["signals/P0001.csv", "signals/P0002.csv"]
    assert list(table["potassium"]) == [4.1, 3.1]
    path = write_records_csv(tmp_path, patients, twelve_lead=True)
    written = read_records_table(tmp_path)
    assert path.name == "records.csv"
    assert list(written["record_file"]) == ["signals12/P0001.csv", "signals12/P0002.csv"]
    assert list(written["record_id"]) == ["P0001", "P0002"]
