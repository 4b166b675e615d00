"""The lab table, pairing and group rules against hand-made truth."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgml.errors import EcgmlError
from ecgml.ingest.groups import GroupRule, assign_groups, one_group_per_patient
from ecgml.ingest.labs import read_labs
from ecgml.ingest.pairing import PairingRule, pair_labs

GENERIC = """patient_id,time,analyte,value
p1,2180-07-23 08:44:00,K,5.6
p1,2180-07-23T09:00:00+02:00,Na,140
p2,2180-07-23,potassium,abc
,2180-07-23 08:44:00,K,4
p3,notatime,K,4
p3,2180-01-01 00:00,Cl,100
p3,2180-01-01 00:00,K,11
p4,2180-01-01 00:00,sodium,99.5
"""


def test_generic_labs_name_each_bad_row_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "labs.csv").write_text(GENERIC)
    table = read_labs(tmp_path / "labs.csv")
    assert table.layout == "generic" and table.rows_read == 8
    assert table.results[["patient_id", "analyte", "value"]].values.tolist() == [
        ["p1", "potassium", 5.6],
        ["p1", "sodium", 140.0],
    ]
    assert table.results["time"].tolist() == [
        pd.Timestamp("2180-07-23 08:44:00"),
        pd.Timestamp("2180-07-23 09:00:00"),  # the offset dropped: wall clock as written
    ]
    assert table.excluded[["row", "reason"]].values.tolist() == [
        [4, "non_numeric_value"],
        [5, "no_patient_id"],
        [6, "bad_time"],
        [7, "unknown_analyte"],
        [8, "lab_out_of_range"],
        [9, "lab_out_of_range"],
    ]


def test_an_offset_is_converted_to_the_given_zone(tmp_path: Path) -> None:
    (tmp_path / "labs.csv").write_text(GENERIC)
    table = read_labs(tmp_path / "labs.csv", timezone="UTC")
    assert table.results["time"].tolist()[1] == pd.Timestamp("2180-07-23 07:00:00")


def test_mimic_labevents_are_filtered_by_item_and_read_in_chunks(tmp_path: Path) -> None:
    lines = ["labevent_id,subject_id,hadm_id,itemid,charttime,value,valuenum,valueuom"]
    rng = np.random.default_rng(0)
    expected = []
    for n in range(200):
        item = [50971, 50983, 50912, 51221][n % 4]
        value = {50971: 4.0 + n / 1000, 50983: 140 - n / 100}.get(item, 1.0)
        when = f"2180-01-{1 + n % 28:02d} {int(rng.integers(0, 24)):02d}:00:00"
        lines.append(f"{n},{100 + n % 7},,{item},{when},{value},{value},mEq/L")
        if item in (50971, 50983):
            expected.append((str(100 + n % 7), "potassium" if item == 50971 else "sodium", value))
    path = tmp_path / "labevents.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    whole = read_labs(path)
    chunked = read_labs(path, chunk_rows=7)
    assert whole.layout == "mimic" and whole.rows_read == 200
    got = list(whole.results[["patient_id", "analyte", "value"]].itertuples(index=False))
    assert [tuple(g) for g in got] == expected
    pd.testing.assert_frame_equal(whole.results, chunked.results)
    assert whole.excluded.empty  # other item ids are skipped, not excluded


def test_an_unknown_lab_layout_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "labs.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(EcgmlError, match=r"expected patient_id, time, analyte, value"):
        read_labs(tmp_path / "labs.csv")


def _labs(*rows: tuple[str, str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [r[0] for r in rows],
            "time": pd.to_datetime([r[1] for r in rows]),
            "analyte": [r[2] for r in rows],
            "value": [r[3] for r in rows],
        }
    )


def _ecgs(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"patient_id": [r[0] for r in rows], "time": pd.to_datetime([r[1] for r in rows])}
    )


def test_pairing_takes_the_closest_result_and_the_earlier_on_a_tie() -> None:
    labs = _labs(
        ("a", "2020-01-01 11:00", "potassium", 4.0),
        ("a", "2020-01-01 13:00", "potassium", 6.0),  # as far after: loses the tie
        ("a", "2020-01-01 23:50", "potassium", 3.0),
        ("b", "2020-01-01 10:00", "sodium", 130.0),
        ("b", "2020-01-01 13:30", "sodium", 140.0),
    )
    ecgs = _ecgs(("a", "2020-01-01 12:00"), ("a", "2020-01-02 00:30"), ("b", "2020-01-01 12:00"))
    same_day = pair_labs(ecgs, labs, PairingRule("same_day"))
    assert same_day["potassium"].tolist()[:1] == [4.0] and same_day["potassium"].isna().tolist()[
        1:
    ] == [True, True]
    assert same_day["sodium"].tolist()[2] == 140.0
    window = pair_labs(ecgs, labs, PairingRule("window", 1.0))
    assert window["potassium"].tolist()[:2] == [4.0, 3.0]  # 40 min across midnight
    assert np.isnan(window["sodium"].tolist()[2])  # 1.5 h away: outside the window
    assert window["potassium_time"].tolist()[1] == pd.Timestamp("2020-01-01 23:50")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    lab_minutes=st.lists(st.integers(-3000, 3000), min_size=0, max_size=8),
    ecg_minutes=st.lists(st.integers(-3000, 3000), min_size=1, max_size=4),
    rule=st.sampled_from(["same_day", "window"]),
    window_h=st.sampled_from([0.5, 1.0, 4.0]),
)
def test_pairing_equals_a_brute_force_search(
    lab_minutes: list[int], ecg_minutes: list[int], rule: str, window_h: float
) -> None:
    origin = datetime(2180, 3, 1, 12)
    labs = _labs(
        *[
            ("p", str(origin + timedelta(minutes=m)), "potassium", float(k + 2))
            for k, m in enumerate(lab_minutes)
        ]
    )
    ecgs = _ecgs(*[("p", str(origin + timedelta(minutes=m))) for m in ecg_minutes])
    got = pair_labs(ecgs, labs, PairingRule(rule, window_h))["potassium"].tolist()
    for e, value in zip(ecg_minutes, got, strict=True):
        ecg = origin + timedelta(minutes=e)
        best = None
        for k, m in enumerate(lab_minutes):
            lab = origin + timedelta(minutes=m)
            gap = abs((lab - ecg).total_seconds())
            ok = lab.date() == ecg.date() if rule == "same_day" else gap <= window_h * 3600
            key = (gap, lab)  # the nearer, then the earlier
            if ok and (best is None or key < best[0]):
                best = (key, float(k + 2))
        if best is None:
            assert np.isnan(value)
        else:
            same_key = [
                float(k + 2)
                for k, m in enumerate(lab_minutes)
                if (abs(m - e) * 60, origin + timedelta(minutes=m)) == best[0]
            ]
            assert value in same_key


@pytest.mark.parametrize(
    ("k", "na", "group", "reason"),
    [
        (4.0, 140.0, "normal", ""),
        (5.5, 140.0, "hyperkalemia", ""),
        (3.0, 140.0, "hypokalemia", ""),
        (np.nan, 130.0, "hyponatremia", ""),
        (4.0, 130.0, "hyponatremia", ""),
        (3.0, np.nan, "hypokalemia", ""),
        (5.0, 135.0, "normal", ""),  # the edges are normal
        (4.0, np.nan, "", "incomplete_labs"),
        (np.nan, 140.0, "", "incomplete_labs"),
        (np.nan, np.nan, "", "no_lab_in_window"),
        (6.0, 130.0, "", "two_disorders"),
        (4.0, 150.0, "", "out_of_scope"),
        (6.0, 150.0, "", "out_of_scope"),
    ],
)
def test_group_rules(k: float, na: float, group: str, reason: str) -> None:
    got_group, got_reason = assign_groups(
        pd.DataFrame({"potassium": [k], "sodium": [na]}), GroupRule()
    )
    assert (got_group.iloc[0], got_reason.iloc[0]) == (group, reason)


def test_comorbid_keep_gives_the_potassium_disorder() -> None:
    group, reason = assign_groups(
        pd.DataFrame({"potassium": [6.0, 3.0], "sodium": [130.0, 130.0]}),
        GroupRule(comorbid="keep"),
    )
    assert group.tolist() == ["hyperkalemia", "hypokalemia"] and reason.tolist() == ["", ""]


def test_one_group_per_patient_is_the_first_abnormal_ecgs() -> None:
    other = one_group_per_patient(
        pd.Series(["a", "a", "a", "b", "b"]),
        pd.Series(
            pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01", "2020-01-02"])
        ),
        pd.Series(["normal", "hyperkalemia", "hypokalemia", "normal", ""]),
    )
    assert other.tolist() == [True, False, True, False, False]
