"""Which ECG files to read: every supported file under a folder, or the rows of an index CSV.

An index is a CSV with a ``path`` column (relative to the CSV's folder; optional
``patient_id``, ``time``). MIMIC-IV-ECG's ``record_list.csv`` (``subject_id, study_id,
file_name, ecg_time, path``; paths without the ``.hea``) is one: ``subject_id`` is the patient,
``ecg_time`` the time. A CSV with a ``time_s`` column is a single ecgml signal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from ecgml.ecgfile import READERS
from ecgml.ecgfile.signalcsv import is_signal_csv
from ecgml.errors import EcgmlError

#: Index columns that mean "the patient" and "the acquisition time", in order of preference.
PATIENT_COLUMNS = ("patient_id", "subject_id")
TIME_COLUMNS = ("time", "ecg_time")


@dataclass(frozen=True)
class Source:
    """One ECG file to read: ``path`` (absolute), ``source_file`` (as the store names it:
    relative to ``ecgs``, or to the index CSV's folder) and what an index said of it."""

    path: Path
    source_file: str
    patient_id: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class Unlisted:
    """An index row that names no readable file: ``outside_ecgs`` or ``missing_file``."""

    source_file: str
    patient_id: str | None
    time: datetime | None
    reason: str
    detail: str


def find_sources(ecgs: Path) -> tuple[list[Source], list[Unlisted], Path]:
    """The files to read, the index rows that name none, and the folder paths are relative
    to; one :class:`EcgmlError` line for an ``ecgs`` that is neither a folder nor a CSV."""
    if ecgs.is_dir():
        found, links_out = walk_folder(ecgs)
        return found, links_out, ecgs
    if not ecgs.is_file():
        raise EcgmlError(f"ecgs {ecgs} does not exist: pass a folder of ECG files or an index CSV")
    if ecgs.suffix.lower() != ".csv":
        return [Source(ecgs.resolve(), ecgs.name)], [], ecgs.parent
    if is_signal_csv(ecgs):
        return [Source(ecgs.resolve(), ecgs.name)], [], ecgs.parent
    sources, unlisted = read_index(ecgs)
    return sources, unlisted, ecgs.parent


def walk_folder(root: Path) -> tuple[list[Source], list[Unlisted]]:
    """Every file under ``root`` a reader takes, sorted by path (hidden folders and CSVs that
    are not signals, e.g. a lab table or an index beside the ECGs, are passed over), and the
    links that lead out of ``root`` (never followed: ``outside_ecgs``)."""
    found, links_out = [], []
    base = root.resolve()
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if name.startswith(".") or suffix not in READERS:
                continue
            if suffix == ".csv" and not is_signal_csv(path):
                continue
            relative = path.relative_to(base).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(base):
                links_out.append(
                    Unlisted(relative, None, None, "outside_ecgs", f"{relative} links outside ecgs")
                )
                continue
            found.append(Source(path, relative))
    return found, links_out


def read_index(index: Path) -> tuple[list[Source], list[Unlisted]]:
    """The rows of an index CSV as sources; rows naming no file inside its folder are
    returned apart with their reason."""
    try:
        table = pd.read_csv(index, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise EcgmlError(f"ecgs {index} is not a readable CSV ({err})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    if "path" not in table.columns:
        raise EcgmlError(
            f"ecgs {index} is a CSV without a path column (an index) or a time_s column "
            "(a signal): see docs/ingest.md"
        )
    patient = next((c for c in PATIENT_COLUMNS if c in table.columns), None)
    when = next((c for c in TIME_COLUMNS if c in table.columns), None)
    base = index.parent.resolve()
    sources, unlisted = [], []
    for row in table.itertuples(index=False):
        listed = str(row.path).strip()
        patient_id = str(getattr(row, patient)).strip() or None if patient else None
        time = _index_time(getattr(row, when)) if when else None
        path = _resolve(base, listed)
        if path is None or not path.is_relative_to(base):
            unlisted.append(
                Unlisted(
                    listed,
                    patient_id,
                    time,
                    "outside_ecgs",
                    f"{listed!r} lies outside the index's folder {index.parent}",
                )
            )
        elif not path.is_file():
            unlisted.append(
                Unlisted(listed, patient_id, time, "missing_file", f"{listed!r} does not exist")
            )
        else:
            sources.append(Source(path, path.relative_to(base).as_posix(), patient_id, time))
    return sources, unlisted


def _resolve(base: Path, listed: str) -> Path | None:
    """``base/listed`` resolved; a WFDB record named without ``.hea`` (MIMIC) gets it."""
    if not listed:
        return None
    try:
        path = (base / listed).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if path.suffix.lower() not in READERS:
        header = path.with_name(path.name + ".hea")
        if header.is_file():
            return header
    return path


def _index_time(text: object) -> datetime | None:
    value = pd.to_datetime(str(text).strip() or None, errors="coerce", format="ISO8601")
    if pd.isna(value):
        return None
    stamp: datetime = value.to_pydatetime()
    return stamp
