"""The synthetic cohort as a hospital would export it: ECG files + a timestamped lab table.

:func:`export_cohort` writes a 12-lead cohort (``ecgml.synth twelve_lead=true``) in one of
:data:`FORMATS` — WFDB in MIMIC-IV-ECG's folder layout with ``record_list.csv`` and a MIMIC-IV
``labevents.csv.gz``, or DICOM / GE MUSE XML / HL7 aECG / EDF+ / signal CSV files with a lab
table in ecgml's layout — and ``truth.csv`` (what pairing must find). Every patient's lab
history holds the true values close to the ECG plus decoys pairing must pass over: a result
days away, a result as far after the ECG as the true one is before (ties go to the earlier
result), an out-of-range value closer than any other, another analyte, unparseable rows.

It is how the ingest tests and ``experiments/bench_ingest.py`` check readers and pairing against
known truth, and a way to try ``python -m ecgml.ingest`` without hospital data.
"""

from __future__ import annotations

import gzip
import importlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.ecgfile import Recording
from ecgml.recordstore import read_record_csv, read_records_table

#: Format → (writer module under ``ecgml.synth.exports``, file extension).
FORMATS = {
    "wfdb": ("wfdb", ".hea"),
    "dicom": ("dicom", ".dcm"),
    "muse": ("muse", ".xml"),
    "aecg": ("aecg", ".xml"),
    "edf": ("edf", ".edf"),
    "csv": ("csv", ".csv"),
}
#: MIMIC-IV item ids written for the WFDB export's labevents (other ids are decoys).
POTASSIUM_ITEM, SODIUM_ITEM, CHLORIDE_ITEM = 50971, 50983, 50902
FIRST_DAY = datetime(2180, 1, 1)


@dataclass(frozen=True)
class Exported:
    """Where the export went: ``ecgs`` (a folder or an index CSV) and ``labs``."""

    ecgs: Path
    labs: Path
    truth: Path
    n_files: int


def export_cohort(cohort: Path, out: Path, fmt: str, seed: int = 0) -> Exported:
    """Write the 12-lead cohort at ``cohort`` into ``out`` as ``fmt`` files + a lab table."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    table = read_records_table(cohort)
    rng = np.random.default_rng(seed)
    module, suffix = FORMATS[fmt]
    writer = importlib.import_module(f"ecgml.synth.exports.{module}")
    truth, index = [], []
    for n, row in enumerate(table.itertuples(index=False)):
        fs, leads, signal = read_record_csv(cohort / row.record_file)
        when = _acquisition_time(n, rng)
        patient = _patient_id(str(row.patient_id), fmt)
        rec = Recording(signal.astype(np.float64), leads, fs, str(row.record_id), patient, when)
        relative = _file_name(fmt, n, patient, suffix)
        writer.write(out / "ecgs" / relative, rec)
        index.append({"path": _index_path(relative, fmt), "patient_id": patient, "time": when})
        truth.append(
            {
                "patient_id": patient,
                "record_id": str(row.record_id),
                "ecg_time": when,
                "group": row.group,
                "potassium": row.potassium,
                "sodium": row.sodium,
            }
        )
    truth_frame = pd.DataFrame(truth)
    labs = _lab_history(truth_frame, rng)
    ecgs = _write_index(out, fmt, index)
    labs_path = _write_labs(out, fmt, labs)
    truth_frame.to_csv(out / "truth.csv", index=False)
    return Exported(ecgs, labs_path, out / "truth.csv", len(index))


def _acquisition_time(n: int, rng: np.random.Generator) -> datetime:
    """A day per record and a time between 02:00 and 22:00 (the true labs stay that day)."""
    return FIRST_DAY + timedelta(days=3 * n, seconds=int(rng.integers(2 * 3600, 22 * 3600)))


def _patient_id(patient: str, fmt: str) -> str:
    """MIMIC's subject ids are numbers: P0042 becomes 10000042 in the WFDB export."""
    if fmt != "wfdb":
        return patient
    digits = "".join(c for c in patient if c.isdigit()) or "0"
    return str(10_000_000 + int(digits))


def _file_name(fmt: str, n: int, patient: str, suffix: str) -> str:
    if fmt == "wfdb":  # MIMIC-IV-ECG: files/p1000/p10000032/s40689238/40689238.hea
        study = 40_000_000 + n
        return f"files/p{patient[:4]}/p{patient}/s{study}/{study}{suffix}"
    return f"{fmt}_{n:05d}{suffix}"


def _index_path(relative: str, fmt: str) -> str:
    return relative[: -len(".hea")] if fmt == "wfdb" else relative


def _lab_history(truth: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Per ECG: the true K and Na before it, and the decoys (see the module docstring)."""
    rows = []
    for item in truth.itertuples(index=False):
        ecg = item.ecg_time
        for analyte, value, decoy in (
            ("potassium", item.potassium, 4.2),
            ("sodium", item.sodium, 139.0),
        ):
            if pd.isna(value):
                continue
            gap = timedelta(minutes=int(rng.integers(5, 50)))
            rows += [
                (item.patient_id, ecg - gap, analyte, f"{value:g}"),
                (item.patient_id, ecg + gap, analyte, f"{decoy + 0.1:g}"),  # tie: loses
                (item.patient_id, ecg + timedelta(days=1, hours=1), analyte, f"{decoy:g}"),
            ]
        rows += [
            (item.patient_id, ecg + timedelta(minutes=1), "potassium", "11.5"),  # out of range
            (item.patient_id, ecg - timedelta(minutes=2), "chloride", "101"),
        ]
    rows += [("P-unknown", FIRST_DAY, "potassium", "n/a"), ("", FIRST_DAY, "sodium", "140")]
    rows += [(truth["patient_id"].iloc[0], "not a time", "potassium", "4.0")]
    return pd.DataFrame(rows, columns=["patient_id", "time", "analyte", "value"])


def _write_index(out: Path, fmt: str, index: list[dict[str, object]]) -> Path:
    """WFDB: MIMIC's ``record_list.csv``; CSV: an index (the files hold no patient or time);
    the other formats carry both in the file, so ``ecgs`` is the folder."""
    folder = out / "ecgs"
    if fmt == "wfdb":
        frame = pd.DataFrame(index)
        record_list = pd.DataFrame(
            {
                "subject_id": frame["patient_id"],
                "study_id": [Path(str(p)).name for p in frame["path"]],
                "file_name": [Path(str(p)).name for p in frame["path"]],
                "ecg_time": [_stamp(t) for t in frame["time"]],
                "path": frame["path"],
            }
        )
        record_list.to_csv(folder / "record_list.csv", index=False)
        return folder / "record_list.csv"
    if fmt == "csv":
        frame = pd.DataFrame(index)
        frame["time"] = [_stamp(t) for t in frame["time"]]
        frame.to_csv(folder / "index.csv", index=False)
        return folder / "index.csv"
    return folder


def _write_labs(out: Path, fmt: str, labs: pd.DataFrame) -> Path:
    text = labs.assign(time=[_stamp(t) for t in labs["time"]])
    if fmt != "wfdb":
        path = out / "labs.csv"
        text.to_csv(path, index=False)
        return path
    items = {"potassium": POTASSIUM_ITEM, "sodium": SODIUM_ITEM, "chloride": CHLORIDE_ITEM}
    numeric = pd.to_numeric(text["value"], errors="coerce")
    mimic = pd.DataFrame(
        {
            "labevent_id": np.arange(1, len(text) + 1),
            "subject_id": text["patient_id"],
            "hadm_id": "",
            "specimen_id": np.arange(1, len(text) + 1),
            "itemid": text["analyte"].map(items),
            "charttime": text["time"],
            "storetime": text["time"],
            "value": text["value"],
            "valuenum": numeric,
            "valueuom": "mEq/L",
        }
    )
    path = out / "labevents.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        mimic.to_csv(handle, index=False)
    return path


def _stamp(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else str(value)
