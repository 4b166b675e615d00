"""From read ECGs and lab results to the rows of a record store and of ``excluded.csv``.

One row per ECG window (or per file that gave none), decided in a fixed order, the first
reason that applies being the one recorded: the file's own problem, ``no_patient_id``,
``no_time``, ``duplicate`` (same patient, time to the second and samples as an earlier file),
then pairing (``no_lab_in_window``), the group rules and one group per patient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.ingest.groups import GroupRule, assign_groups, other_group_rows, patient_groups
from ecgml.ingest.labs import ANALYTES, LabTable, LocalClock
from ecgml.ingest.pairing import PairingRule, pair_labs
from ecgml.ingest.reading import Cutting, FileResult
from ecgml.ingest.sources import Source, Unlisted

#: Why an ECG is not in the store (closed list; docs/contracts.md explains each).
ECG_REASONS = (
    "unreadable",
    "wrong_format",
    "truncated",
    "no_patient_id",
    "no_time",
    "too_short",
    "inconsistent_leads",
    "unknown_lead",
    "no_lead_ii",
    "no_units",
    "implausible_amplitude",
    "outside_ecgs",
    "missing_file",
    "no_lab_in_window",
    "incomplete_labs",
    "two_disorders",
    "out_of_scope",
    "other_group_of_patient",
    "duplicate",
)
EXCLUDED_COLUMNS = ("source_file", "record_id", "patient_id", "ecg_time", "reason", "detail")


def ecg_table(
    sources: Sequence[Source],
    unlisted: Sequence[Unlisted],
    results: Sequence[FileResult],
    cutting: Cutting,
    clock: LocalClock,
) -> pd.DataFrame:
    """One row per staged window and per file or index row that gave none (``reason`` set);
    acquisition times made naive local times by ``clock`` (as the lab times are)."""
    rows = []
    for result in results:
        source = sources[result.index]
        if not result.pieces:
            rows.append(_failed_row(source, result, clock))
            continue
        for piece in result.pieces:
            local = clock.naive(piece.time)
            time = pd.Timestamp(local) if local is not None else pd.NaT
            if time is not pd.NaT:  # a later window starts that much later
                time = time + pd.Timedelta(seconds=piece.window * cutting.max_s)
            rows.append(
                {
                    "source_file": source.source_file,
                    "record_id": piece.record_id,
                    "patient_id": piece.patient_id,
                    "ecg_time": time,
                    "reason": "",
                    "detail": "",
                    "window": piece.window,
                    "leads": piece.leads,
                    "digest": piece.digest,
                    "staging_file": piece.staging_file,
                }
            )
    for item in unlisted:
        rows.append(
            {
                "source_file": item.source_file,
                "record_id": Path(item.source_file).stem,
                "patient_id": item.patient_id,
                "ecg_time": clock.naive(item.time),
                "reason": item.reason,
                "detail": item.detail,
            }
        )
    columns = [*EXCLUDED_COLUMNS, "window", "leads", "digest", "staging_file"]
    table = pd.DataFrame(rows, columns=columns)
    table["ecg_time"] = pd.to_datetime(table["ecg_time"])
    return table


def _failed_row(source: Source, result: FileResult, clock: LocalClock) -> dict[str, object]:
    return {
        "source_file": source.source_file,
        "record_id": result.record_id or source.path.stem,
        "patient_id": source.patient_id,
        "ecg_time": clock.naive(source.time),
        "reason": result.reason,
        "detail": result.detail,
    }


def decide(
    table: pd.DataFrame, labs: LabTable, pairing: PairingRule, groups: GroupRule
) -> pd.DataFrame:
    """``table`` with ``group``, serum values and their times, and every exclusion decided."""
    table = table.copy()
    _exclude(
        table,
        table["patient_id"].isna() | (table["patient_id"].astype(str) == ""),
        "no_patient_id",
        "neither the index nor the file names the patient",
    )
    _exclude(
        table,
        table["ecg_time"].isna(),
        "no_time",
        "neither the index nor the file gives the acquisition time",
    )
    _mark_duplicates(table)
    table["group"] = ""
    for analyte in ANALYTES:
        table[analyte] = np.nan
        table[f"{analyte}_time"] = pd.NaT
    open_rows = table["reason"] == ""
    if open_rows.any():
        ecgs = table.loc[open_rows, ["patient_id"]].assign(time=table.loc[open_rows, "ecg_time"])
        paired = pair_labs(ecgs, labs.results, pairing)
        for column in paired.columns:
            table.loc[open_rows, column] = paired[column]
        group, reason = assign_groups(table.loc[open_rows, list(ANALYTES)], groups)
        table.loc[open_rows, "group"] = group
        for name in ("no_lab_in_window", "incomplete_labs", "two_disorders", "out_of_scope"):
            rows = reason.index[reason == name]
            table.loc[rows, "reason"] = name
            table.loc[rows, "detail"] = _serum_detail(table.loc[rows], name, pairing)
    if groups.selection == "per_patient":
        patient_group = patient_groups(table["patient_id"], table["ecg_time"], table["group"])
        other = other_group_rows(table["group"], patient_group)
        table.loc[other, "detail"] = "the patient's group is " + patient_group[other]
        table.loc[other, "reason"] = "other_group_of_patient"
        table.loc[other, "group"] = ""
    table.loc[table["reason"] != "", "group"] = ""
    return table


def _exclude(table: pd.DataFrame, rows: pd.Series, reason: str, detail: str) -> None:
    rows = rows & (table["reason"] == "")
    table.loc[rows, "reason"] = reason
    table.loc[rows, "detail"] = detail


def _mark_duplicates(table: pd.DataFrame) -> None:
    """The same acquisition found twice (patient, time to the second, samples): first kept."""
    live = table[(table["reason"] == "") & table["digest"].notna()]
    key = pd.DataFrame(
        {
            "patient_id": live["patient_id"].astype(str),
            "second": live["ecg_time"].dt.floor("s"),
            "digest": live["digest"],
        }
    )
    repeated = key.duplicated(keep="first")
    first = key.drop_duplicates(keep="first").reset_index().set_index(list(key.columns))["index"]
    for row in repeated.index[repeated]:
        original = first[tuple(key.loc[row])]
        table.loc[row, "reason"] = "duplicate"
        table.loc[row, "detail"] = f"the same ECG as {table.loc[original, 'source_file']}"


def _serum_detail(rows: pd.DataFrame, reason: str, pairing: PairingRule) -> list[str]:
    if reason == "no_lab_in_window":
        where = (
            "on the ECG's day" if pairing.rule == "same_day" else f"within {pairing.window_h:g} h"
        )
        return [f"no potassium or sodium result {where}"] * len(rows)
    return [
        f"K {_value(k)}, Na {_value(na)} mmol/L"
        for k, na in zip(rows["potassium"], rows["sodium"], strict=True)
    ]


def _value(value: float) -> str:
    return "unpaired" if pd.isna(value) else f"{value:g}"


def unique_record_ids(table: pd.DataFrame, windows: str) -> pd.Series:
    """The source's own ids, prefixed with the file's folder (relative to ``ecgs``) where two
    files give the same id, and with the file's path where even that collides; with
    ``windows=all`` each window's id ends in ``_w<k>``."""
    ids = _unique_source_ids(table)
    if windows == "all":
        staged = table["window"].notna()
        ids = ids.where(~staged, ids + "_w" + table["window"].fillna(0).astype(int).astype(str))
    return ids


def _unique_source_ids(table: pd.DataFrame) -> pd.Series:
    ids = table["record_id"].astype(str)
    clash = ids.duplicated(keep=False) & (
        table.groupby(ids)["source_file"].transform("nunique") > 1
    )
    folders = table["source_file"].map(lambda s: Path(str(s)).parent.as_posix())
    ids = ids.where(~clash, folders.where(folders != ".", "") + "/" + ids)
    ids = ids.str.lstrip("/")
    clash = ids.duplicated(keep=False) & (
        table.groupby(ids)["source_file"].transform("nunique") > 1
    )
    return ids.where(~clash, table["source_file"].astype(str) + "/" + table["record_id"])


def hashed_ids(ids: pd.Series, salt: str) -> pd.Series:
    """Patient ids replaced by a salted BLAKE2b hash (16 hex digits); empty ids stay empty."""
    key = salt.encode()[:64]

    def one(value: object) -> object:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            return value
        digest = hashlib.blake2b(str(value).encode(), key=key, digest_size=8)
        return digest.hexdigest()

    return ids.map(one)
