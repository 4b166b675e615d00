"""The record store: ``records.csv`` + one signal CSV per recording (10 s strips, 1 or 12 leads).

A record store holds whole recordings where the beat store holds single beats: the synthetic
cohort writes one beside its ``signals/`` (``records.csv``), and a user's folder of signal CSVs
in the format ``ecgml.digitize`` / ``ecgml.synth`` write is one with a ``records.csv`` added.

- ``records.csv``: ``record_file, patient_id, group`` required; ``record_id, center, device,
  potassium, sodium, source_image`` optional (``record_id`` defaults to ``record_file``).
- each record file: a ``time_s`` column and either ``mv`` (lead II) or columns named after the
  12 standard leads (:data:`LEADS`; ``mv`` counts as ``II``).

Reading is strict for the table (one :class:`~ecgml.errors.EcgmlError` line naming file, line
and column and the fix) and lenient per record: a record shorter than :data:`MIN_DURATION_S`,
with non-uniform time steps, an unknown lead name, unreadable samples, a missing file or a
sampling rate that differs from the store's is skipped with its reason
(:class:`SkippedRecord`); a store whose every record fails stops with one line (exit 2).
"""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from ecgml import TWELVE_LEADS
from ecgml.beatstore import (
    MAX_FS,
    MIN_FS,
    StoreIndex,
    packed_digest,
    read_store_csv,
    validate_store_index,
)
from ecgml.ecgfile import EcgFileProblem
from ecgml.ecgfile.signalcsv import parse_signal_csv
from ecgml.errors import EcgmlError
from ecgml.packstore import PACKED, ROW_COLUMN, PackedSamples, PackedWriter, is_packed

log = logging.getLogger(__name__)

RECORDS = "records.csv"
REQUIRED_COLUMNS = ("record_file", "patient_id", "group")
OPTIONAL_COLUMNS = ("record_id", "center", "device", "potassium", "sodium", "source_image")
#: The 12 standard leads, in the usual order; ``mv`` in a one-lead file is lead II.
LEADS = TWELVE_LEADS
#: Shortest usable record (s): the R-peak detector needs at least this much signal.
MIN_DURATION_S = 2.0
#: Largest record file read (bytes): ~10 min of 12 leads at 500 Hz.
MAX_RECORD_BYTES = 64 << 20


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out, with why (``row``: its 0-based position in ``records.csv``)."""

    row: int
    record_id: str
    patient_id: str
    reason: str


@dataclass
class Record:
    """One recording: ``signal`` ``(n_leads, n_samples)`` in mV, leads named in ``leads``."""

    record_id: str
    patient_id: str
    fs: float
    leads: tuple[str, ...]
    signal: np.ndarray

    def lead(self, name: str) -> np.ndarray:
        return self.signal[self.leads.index(name)]

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs


@dataclass(frozen=True)
class PackedRecord:
    """A usable record of ``samples.arrow``, without its samples: ``packed_row`` says where."""

    record_id: str
    patient_id: str
    fs: float
    leads: tuple[str, ...]
    packed_row: int


class StoreRecords(Sequence[Record]):
    """A store's kept records in order: a packed record's samples are sliced from the mapped
    file on access, so a store larger than memory loads; CSV records are held whole."""

    def __init__(self, items: list[Record | PackedRecord], samples: PackedSamples | None) -> None:
        self._items = items
        self._samples = samples

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Record: ...

    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...

    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        item = self._items[index]
        if isinstance(item, Record):
            return item
        assert self._samples is not None
        signal = self._samples.signal(int(item.packed_row))
        return Record(item.record_id, item.patient_id, item.fs, item.leads, signal)


@dataclass
class RecordStore:
    """A loaded record store: one ``meta`` row per kept record, its :class:`Record` alike."""

    root: Path
    meta: pd.DataFrame
    records: Sequence[Record]
    fs: float
    skipped: list[SkippedRecord] = field(default_factory=list)
    #: SHA-256 (16 hex) of a packed store's index and samples ("" for a CSV store): what the
    #: cut beats are cached under.
    digest: str = ""

    def __len__(self) -> int:
        return len(self.records)


#: Why records are skipped, as short tags (``records.skipped.<kind>``): first match wins.
REASON_KINDS = (
    ("shorter than", "too_short"),
    ("non-uniform time steps", "non_uniform_time"),
    ("unknown lead name", "unknown_lead"),
    ("differs from the store", "sampling_rate"),
    ("no detectable beats", "no_beats"),
    ("lacks lead", "missing_lead"),
    ("missing", "missing_file"),
)


def reason_kind(reason: str) -> str:
    """The short tag of a skip reason (``unreadable`` for anything else)."""
    return next((kind for text, kind in REASON_KINDS if text in reason), "unreadable")


class RecordProblem(ValueError):
    """Why one record cannot be used (the record is skipped, the reason logged)."""


class StorePathError(EcgmlError):
    """A ``records.csv`` path that leaves its store: never skipped, always fatal (exit 2)."""


def check_regular(path: Path, max_bytes: int) -> None:
    """A regular file of at most ``max_bytes`` (``stat`` only: a FIFO is never opened)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise RecordProblem("file listed in records.csv but missing") from None
    except OSError as err:
        raise RecordProblem(f"file cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise RecordProblem("not a regular file (a folder, device, FIFO or socket)")
    if info.st_size > max_bytes:
        raise RecordProblem(f"{info.st_size} bytes, more than a record may take ({max_bytes})")


# --------------------------------------------------------------------------- records.csv


def read_records_table(root: Path | str) -> pd.DataFrame:
    """Read and validate ``root/records.csv``: one row per record, ``record_id`` filled."""
    table, path = read_store_csv(
        root,
        RECORDS,
        "record store",
        REQUIRED_COLUMNS,
        "docs/contracts.md, 'Record store'",
        {"patient_id": str, "record_id": str, "record_file": str},
    )
    return validate_records_table(table, path)


#: ``records.csv`` for the one store-index validator of :mod:`ecgml.beatstore`.
RECORD_INDEX = StoreIndex(RECORDS, "record", "record_file", "record_id", REQUIRED_COLUMNS)


def validate_records_table(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Columns, groups, unique record ids and serum values checked; a cleaned copy."""
    return validate_store_index(table, path, RECORD_INDEX)


def record_path(root: Path, record_file: str) -> Path:
    """``root/record_file``, refused (fatal) when it resolves outside ``root``."""
    path = root / record_file
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (RuntimeError, OSError, ValueError) as err:
        raise EcgmlError(f"record file {path} cannot be resolved ({err}): fix the link") from None
    if not inside:
        raise StorePathError(
            f"record file {path} (record_file {record_file!r} in {root / RECORDS}) lies outside "
            f"the record store {root}: list files inside the store folder, relative to it"
        )
    return path


# --------------------------------------------------------------------------- one record


def read_record_csv(path: Path) -> tuple[float, tuple[str, ...], np.ndarray]:
    """``(fs, leads, signal (n_leads, n))`` of one record file (the strict signal-CSV policy,
    :func:`ecgml.ecgfile.signalcsv.parse_signal_csv`); :class:`RecordProblem` when it cannot be
    used."""
    check_regular(path, MAX_RECORD_BYTES)
    try:
        table = parse_signal_csv(path)
    except EcgFileProblem as problem:
        raise RecordProblem(str(problem)) from None
    check_duration(table.signal, table.fs)
    return table.fs, table.leads, table.signal.astype(np.float32)


def check_duration(signal: np.ndarray, fs: float) -> None:
    """A :class:`RecordProblem` for a record (``(n_leads, n)`` at ``fs``) shorter than
    :data:`MIN_DURATION_S`."""
    duration = signal.shape[1] / fs
    if duration < MIN_DURATION_S:
        raise RecordProblem(f"{duration:.2f} s long: shorter than {MIN_DURATION_S:g} s")


class RecordReader:
    """One record's ``(fs, leads, signal)``: from ``samples.arrow`` for a row with a
    ``packed_row``, else from its ``record_file`` CSV. A row without either is a
    :class:`RecordProblem`; a packed file that disagrees with the table stops the load."""

    def __init__(self, root: Path, table: pd.DataFrame) -> None:
        self.root = root
        self.rows: np.ndarray | None = None
        self.samples: PackedSamples | None = None
        if is_packed(root, table):
            self.samples = PackedSamples.open(root / PACKED, "record")
            listed = table[ROW_COLUMN].notna().to_numpy()
            rows = np.full(len(table), -1, dtype=np.int64)
            index_rows = self.samples.rows_for(table[listed], "record_id", root / RECORDS)
            rows[listed] = index_rows
            self.rows = rows

    def __call__(self, row: int, item: Any) -> tuple[float, tuple[str, ...], np.ndarray]:
        if self.samples is not None and self.rows is not None and self.rows[row] >= 0:
            return self._packed(int(self.rows[row]))
        listed = getattr(item, "record_file", None)
        if not isinstance(listed, str) or not listed.strip():
            raise RecordProblem("neither a packed row nor a record_file")
        return read_record_csv(record_path(self.root, listed))

    def kept(self, row: int, record: Record) -> Record | PackedRecord:
        """What the store keeps of a usable record: a packed one's place in the mapped file
        (its samples are read again on access), a CSV one whole."""
        if self.rows is None or self.rows[row] < 0:
            return record
        leads = record.leads
        return PackedRecord(record.record_id, record.patient_id, record.fs, leads, self.rows[row])

    def _packed(self, row: int) -> tuple[float, tuple[str, ...], np.ndarray]:
        assert self.samples is not None
        fs, names = float(self.samples.fs[row]), self.samples.lead_names(row)
        if not MIN_FS <= fs <= MAX_FS:  # NaN included
            raise RecordProblem(f"sampling rate {fs:g} Hz in {PACKED} is implausible")
        unknown = [name for name in names if name not in LEADS]
        if unknown:
            raise RecordProblem(f"unknown lead name(s) {', '.join(unknown)}")
        signal = self.samples.signal(row)
        check_duration(signal, fs)
        return fs, names, signal


def pack_records(
    root: Path, items: Iterable[tuple[str, float, Sequence[str], np.ndarray]]
) -> list[int]:
    """``(record_id, fs, leads, signal (n_leads, n) mV)`` items into ``root/samples.arrow``
    (atomic); returns each record's row, for ``records.csv``'s ``packed_row``."""
    with PackedWriter(root / PACKED, "record") as writer:
        rows = [writer.add(record_id, signal, fs, leads) for record_id, fs, leads, signal in items]
        writer.commit()
    return rows


def load_record_store(root: Path | str, leads: Sequence[str] | None = None) -> RecordStore:
    """Every usable record of the store at ``root`` (``leads``: those every record must hold).

    Records that cannot be used are skipped with a logged reason; the store's sampling rate is
    the most common one, and records at another rate are skipped. A store where no record is
    usable raises one :class:`EcgmlError` line naming the first reason.
    """
    root = Path(root)
    table = read_records_table(root)
    read = RecordReader(root, table)
    kept: list[tuple[int, Record | PackedRecord]] = []
    skipped: list[SkippedRecord] = []
    for row, item in enumerate(table.itertuples(index=False)):
        try:
            fs, names, signal = read(row, item)
            if leads is not None:
                missing = [name for name in leads if name not in names]
                if missing:
                    raise RecordProblem(f"lacks lead(s) {', '.join(missing)} (data.leads)")
        except RecordProblem as problem:
            skipped.append(SkippedRecord(row, item.record_id, item.patient_id, str(problem)))
            continue
        usable = Record(item.record_id, item.patient_id, fs, names, signal)
        kept.append((row, read.kept(row, usable)))
    fs = _store_fs([record for _, record in kept])
    consistent = []
    for row, record in kept:
        if abs(record.fs - fs) > 1e-6 * fs:
            reason = f"sampling rate {record.fs:g} Hz differs from the store's {fs:g} Hz"
            skipped.append(SkippedRecord(row, record.record_id, record.patient_id, reason))
        else:
            consistent.append((row, record))
    for item in skipped:
        log.warning("record %s skipped: %s", item.record_id, item.reason)
    if not consistent:
        first = min(skipped, key=lambda s: s.row)
        raise EcgmlError(
            f"{root / RECORDS}: none of its {len(table)} record(s) is usable (line "
            f"{first.row + 2}, {first.record_id}: {first.reason}): fix the record files"
        )
    rows = [row for row, _ in consistent]
    meta = table.iloc[rows].reset_index(drop=True)
    meta["source_row"] = rows
    digest = packed_digest(root, RECORDS) if read.samples is not None else ""
    return RecordStore(
        root,
        meta,
        StoreRecords([record for _, record in consistent], read.samples),
        fs,
        sorted(skipped, key=lambda s: s.row),
        digest,
    )


def _store_fs(records: Sequence[Record | PackedRecord]) -> float:
    if not records:
        return 0.0
    counts = Counter(round(r.fs, 6) for r in records)
    return float(counts.most_common(1)[0][0])


# --------------------------------------------------------------------------- writing


def records_table(
    patients: pd.DataFrame, folder: str = "signals", serum: bool = True
) -> pd.DataFrame:
    """``records.csv`` rows for a cohort's ``patients.csv`` (one record per patient)."""
    table = pd.DataFrame(
        {
            "record_file": [f"{folder}/{p}.csv" for p in patients["patient_id"]],
            "patient_id": patients["patient_id"].astype(str).to_numpy(),
            "group": patients["group"].to_numpy(),
            "record_id": patients["patient_id"].astype(str).to_numpy(),
        }
    )
    for column in ("center", "device"):
        if column in patients.columns:
            table[column] = patients[column].to_numpy()
    for column in ("potassium", "sodium"):
        source = f"{column}_mmol_l"
        if serum and source in patients.columns:
            table[column] = patients[source].to_numpy()
    return table


def write_records_csv(folder: Path, patients: pd.DataFrame, twelve_lead: bool = False) -> Path:
    """Write ``folder/records.csv`` for the cohort at ``folder`` (12-lead records point at
    ``signals12/`` when they exist); written to a temporary name and renamed (atomic)."""
    return save_records_table(
        folder, records_table(patients, "signals12" if twelve_lead else "signals")
    )


def save_records_table(folder: Path, table: pd.DataFrame) -> Path:
    """``table`` as ``folder/records.csv``, written to a temporary name and renamed (atomic)."""
    path = folder / RECORDS
    tmp = folder / f".{RECORDS}.{os.getpid()}.tmp"
    table.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return path
