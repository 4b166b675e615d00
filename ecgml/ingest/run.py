"""``python -m ecgml.ingest``: ECG files + a lab table → a record store ecgml trains on.

Steps: read the lab table (an unknown layout stops here, before any ECG is read), list the
ECG files, read them in parallel (:mod:`ecgml.ingest.reading`), decide every ECG's group or
exclusion (:mod:`ecgml.ingest.cohort`) and write the store into a temporary folder renamed
into place: ``records.csv`` (the record-store contract plus ``source_file``, ``ecg_time``,
``potassium_time``, ``sodium_time``), ``signals/<n>.csv``, ``excluded.csv``,
``excluded_labs.csv`` and ``ingest.json`` (the counts).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ecgml import TWELVE_LEADS
from ecgml.ecgfile.signalcsv import write_signal_csv
from ecgml.errors import EcgmlError
from ecgml.ingest.cohort import EXCLUDED_COLUMNS, decide, ecg_table, hashed_ids, unique_record_ids
from ecgml.ingest.groups import GroupRule
from ecgml.ingest.labs import ANALYTES, LabTable, LocalClock, read_labs
from ecgml.ingest.pairing import PairingRule
from ecgml.ingest.reading import Cutting, read_all
from ecgml.ingest.sources import find_sources
from ecgml.outputs import check_replaceable, move_into_place, new_temp, refuse_overlap
from ecgml.outputs.engine import map_jobs
from ecgml.packstore import PACKED, ROW_COLUMN, PackedWriter
from ecgml.recordstore import RECORDS, save_records_table

log = logging.getLogger("ecgml.ingest")

CREATED_BY = "ecgml.ingest"
SALT_ENV = "ECGML_INGEST_SALT"
SUMMARY = "ingest.json"
RECORD_COLUMNS = (
    "record_file",
    "patient_id",
    "group",
    "record_id",
    "potassium",
    "sodium",
    "source_file",
    "ecg_time",
    "potassium_time",
    "sodium_time",
)


@dataclass(frozen=True)
class IngestSettings:
    """Everything ``conf/ingest.yaml`` decides."""

    ecgs: Path
    labs: Path
    out: Path
    overwrite: bool = False
    cutting: Cutting = field(default_factory=Cutting)
    pairing: PairingRule = field(default_factory=PairingRule)
    groups: GroupRule = field(default_factory=GroupRule)
    itemids: dict[str, tuple[int, ...]] | None = None
    timezone: str | None = None
    hash_ids: bool = False
    hash_salt: str | None = None
    n_jobs: int = 1
    #: A Dask scheduler (``tcp://host:port``) whose workers read and write instead of local
    #: processes (None: local); its workers must see ``out``'s parent folder.
    engine_address: str | None = None
    progress: bool = True
    #: ``samples.arrow``'s sample type (``int16`` whole µV, ``float32``), or None: CSVs only.
    pack: str | None = "int16"


@dataclass
class IngestReport:
    out: Path
    n_files: int
    n_records: int
    groups: dict[str, int]
    excluded: dict[str, int]
    excluded_labs: dict[str, int]
    seconds: float


def ingest(settings: IngestSettings) -> IngestReport:
    """Build the record store ``settings.out``; one :class:`EcgmlError` line when the inputs
    are unusable (nothing written then)."""
    started = time.perf_counter()
    check_paths(settings)
    labs = read_labs(settings.labs, settings.itemids, settings.timezone)
    sources, unlisted, _base = find_sources(settings.ecgs)
    if not sources and not unlisted:
        raise EcgmlError(
            f"ecgs {settings.ecgs} holds no ECG file ecgml reads (.hea, .dcm, .xml, .edf, "
            ".bdf, signal .csv): pass the export's folder or an index CSV"
        )
    tmp = new_temp(settings.out, CREATED_BY)
    try:
        staging = tmp / ".staging"
        staging.mkdir()
        results = read_all(
            sources,
            staging,
            settings.cutting,
            settings.n_jobs,
            settings.progress,
            settings.engine_address,
        )
        clock = LocalClock(settings.timezone)
        table = ecg_table(sources, unlisted, results, settings.cutting, clock)
        clock.report(settings.ecgs)
        _require_readable(table, settings.ecgs)
        table = decide(table, labs, settings.pairing, settings.groups)
        table["record_id"] = unique_record_ids(table, settings.cutting.windows)
        report = write_store(tmp, staging, table, labs, settings)
        shutil.rmtree(staging)
        move_into_place(tmp, settings.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def check_paths(settings: IngestSettings) -> None:
    """The inputs exist, and ``out`` is none of them and holds none of them; an index CSV's
    input is its folder (the ECG files it lists lie there)."""
    for key, path in (("ecgs", settings.ecgs), ("labs", settings.labs)):
        if not path.exists():
            raise EcgmlError(f"{key} {path} does not exist: pass {key}=PATH")
    ecg_folder = settings.ecgs if settings.ecgs.is_dir() else settings.ecgs.parent
    refuse_overlap(settings.out, "out", ecg_folder, "ecgs folder")
    refuse_overlap(settings.out, "out", settings.labs, "labs")
    check_replaceable(settings.out, settings.overwrite, "out")


def _require_readable(table: pd.DataFrame, ecgs: Path) -> None:
    """Stop (exit 2, nothing written) when not one file could be read."""
    readable = table["staging_file"].notna()
    if readable.any():
        return
    first = table.iloc[0]
    raise EcgmlError(
        f"ecgs {ecgs}: none of its {len(table)} ECG file(s) is readable (first: "
        f"{first['source_file']}: {first['reason']}: {first['detail']}): see docs/ingest.md"
    )


def write_store(
    tmp: Path, staging: Path, table: pd.DataFrame, labs: LabTable, settings: IngestSettings
) -> IngestReport:
    """``records.csv``, ``signals/``, ``excluded.csv``, ``excluded_labs.csv``, ``ingest.json``
    into ``tmp``; stops with one line when no ECG is left to train on."""
    kept = table[table["reason"] == ""].reset_index(drop=True)
    excluded = table[table["reason"] != ""]
    salt = _salt(settings) if settings.hash_ids else None
    if kept.empty:
        counts = Counter(excluded["reason"])
        raise EcgmlError(
            f"no ECG of {settings.ecgs} is left to train on ({_counts_text(counts)}): see "
            "docs/ingest.md for what each reason means"
        )
    width = max(5, len(str(len(kept) - 1)))
    kept["record_file"] = [f"signals/{n:0{width}d}.csv" for n in range(len(kept))]
    (tmp / "signals").mkdir()
    _write_signals(tmp, staging, kept, settings)
    records = _records_frame(kept, salt)
    if settings.pack:
        records[ROW_COLUMN] = _pack_signals(tmp, staging, kept, settings)
    save_records_table(tmp, records)
    _write_excluded(tmp, excluded, labs, salt)
    report = IngestReport(
        settings.out,
        n_files=int(table["source_file"].nunique()),
        n_records=len(kept),
        groups=dict(Counter(kept["group"])),
        excluded=dict(Counter(excluded["reason"])),
        excluded_labs=dict(Counter(labs.excluded["reason"])),
        seconds=0.0,
    )
    _write_summary(tmp, report, settings, labs)
    return report


def _write_signals(tmp: Path, staging: Path, kept: pd.DataFrame, settings: IngestSettings) -> None:
    jobs = list(zip(kept["staging_file"], kept["record_file"], kept["leads"], strict=True))
    func = partial(write_signal, staging=staging, root=tmp, fs=settings.cutting.fs)
    bar = tqdm(total=len(jobs), desc="write", unit="ECG", disable=not settings.progress)
    try:
        for _, error in map_jobs(
            func, jobs, settings.n_jobs, _write_failed, settings.engine_address
        ):
            if error:
                raise EcgmlError(f"writing the store failed: {error}")
            bar.update(1)
    finally:
        bar.close()


def _pack_signals(
    tmp: Path, staging: Path, kept: pd.DataFrame, settings: IngestSettings
) -> list[int]:
    """Every staged window into ``tmp/samples.arrow`` (the store's packed samples), in
    ``records.csv`` order; returns each record's ``packed_row``."""
    items = zip(kept["record_id"], kept["staging_file"], kept["leads"], strict=True)
    bar = tqdm(total=len(kept), desc="pack", unit="ECG", disable=not settings.progress)
    with bar, PackedWriter(tmp / PACKED, "record", str(settings.pack)) as writer:
        rows = []
        for record_id, staging_file, leads in items:
            signal = np.load(staging / staging_file, allow_pickle=False)
            rows.append(writer.add(str(record_id), signal, settings.cutting.fs, leads))
            bar.update(1)
        writer.commit()
    return rows


def _write_failed(job: tuple[str, str, tuple[str, ...]], why: str) -> str:
    return f"{job[1]}: {why}"


def write_signal(
    job: tuple[str, str, tuple[str, ...]], staging: Path, root: Path, fs: float
) -> str:
    """One staged window as ``root/<record_file>`` (``time_s`` + its leads, mV to 0.01 µV);
    returns an error text instead of raising (it runs in a worker)."""
    staging_file, record_file, leads = job
    signal = np.load(staging / staging_file, allow_pickle=False)
    try:
        write_signal_csv(root / record_file, signal, leads, fs)
    except OSError as err:
        return f"{record_file}: {err.strerror or err}"
    return ""


def _records_frame(kept: pd.DataFrame, salt: str | None) -> pd.DataFrame:
    records = pd.DataFrame(index=kept.index)
    records["record_file"] = kept["record_file"]
    records["patient_id"] = kept["patient_id"].astype(str)
    if salt is not None:
        records["patient_id"] = hashed_ids(records["patient_id"], salt)
    records["group"] = kept["group"]
    records["record_id"] = kept["record_id"]
    for analyte in ANALYTES:
        records[analyte] = kept[analyte].round(3)
    records["source_file"] = kept["source_file"]
    records["ecg_time"] = _iso(kept["ecg_time"])
    for analyte in ANALYTES:
        records[f"{analyte}_time"] = _iso(kept[f"{analyte}_time"])
    return records[list(RECORD_COLUMNS)]


def _iso(times: pd.Series) -> pd.Series:
    """``YYYY-MM-DDTHH:MM:SS`` without an offset; empty when unknown."""
    stamps = pd.to_datetime(times)
    return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S").fillna("")


def _write_excluded(tmp: Path, excluded: pd.DataFrame, labs: LabTable, salt: str | None) -> None:
    frame = excluded[list(EXCLUDED_COLUMNS)].copy()
    frame["ecg_time"] = _iso(frame["ecg_time"])
    lab_rows = labs.excluded.copy()
    if salt is not None:
        frame["patient_id"] = hashed_ids(frame["patient_id"], salt)
        lab_rows["patient_id"] = hashed_ids(lab_rows["patient_id"], salt)
    frame.to_csv(tmp / "excluded.csv", index=False)
    lab_rows.to_csv(tmp / "excluded_labs.csv", index=False)


def _write_summary(
    tmp: Path, report: IngestReport, settings: IngestSettings, labs: LabTable
) -> None:
    summary: dict[str, Any] = {
        "files": report.n_files,
        "records": report.n_records,
        "groups": report.groups,
        "excluded": report.excluded,
        "lab_rows_read": labs.rows_read,
        "lab_results_used": len(labs.results),
        "excluded_labs": report.excluded_labs,
        "labs_layout": labs.layout,
        "fs": settings.cutting.fs,
        "max_s": settings.cutting.max_s,
        "windows": settings.cutting.windows,
        "pairing": {"rule": settings.pairing.rule, "window_h": settings.pairing.window_h},
        "hash_ids": settings.hash_ids,
        "leads": list(TWELVE_LEADS),
    }
    (tmp / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _salt(settings: IngestSettings) -> str:
    salt = settings.hash_salt or os.environ.get(SALT_ENV)
    if salt:
        return salt
    log.warning(
        "hash_ids=true without a salt (hash_salt= or %s): a random one is used, so these "
        "hashed ids will not match another ingest's",
        SALT_ENV,
    )
    return secrets.token_hex(16)


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common()) or "nothing found"


def summary_lines(report: IngestReport) -> list[str]:
    """What the console prints at the end: counts per group and per exclusion reason."""
    groups = ", ".join(f"{g} {n}" for g, n in sorted(report.groups.items()))
    lines = [
        f"ingested {report.n_records} ECG(s) of {report.n_files} file(s) in "
        f"{report.seconds:.1f} s -> {report.out / RECORDS}",
        f"  groups: {groups}",
    ]
    if report.excluded:
        lines.append(f"  excluded ECGs: {_counts_text(Counter(report.excluded))} (excluded.csv)")
    if report.excluded_labs:
        lines.append(
            f"  excluded lab rows: {_counts_text(Counter(report.excluded_labs))} "
            "(excluded_labs.csv)"
        )
    return lines
