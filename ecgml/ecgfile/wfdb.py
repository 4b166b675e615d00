"""WFDB records (``.hea`` + signal files), read with ``wfdb`` in physical units.

The header is checked before any sample is read (:func:`check_wfdb_header`): a header that
claims more samples than ecgml reads from one record, or more than its signal files hold, is
refused before ``wfdb`` allocates it. The patient id comes from a header comment
``patient_id: X`` (or ``subject_id: X``) when there is one, the acquisition time from the
header's base date and time; an index CSV (MIMIC-IV-ECG's ``record_list.csv``) usually gives
both instead.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ecgml.ecgfile.recording import (
    MAX_SAMPLES,
    EcgFileProblem,
    Recording,
    build_recording,
    unit_factor,
)

#: Bytes per sample of the uncompressed WFDB formats (the compressed 5xx formats: unchecked).
WFDB_BYTES_PER_SAMPLE = {
    "8": 1.0,
    "16": 2.0,
    "24": 3.0,
    "32": 4.0,
    "61": 2.0,
    "80": 1.0,
    "160": 2.0,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}
_PATIENT_COMMENT = re.compile(r"^\s*(?:patient_id|subject_id|patient)\s*[:=]\s*(\S+)", re.I)


def read(path: Path) -> Recording:
    """The record whose header is ``path`` (``.hea``), every channel a lead, in mV."""
    import wfdb  # deferred: wfdb imports pandas/matplotlib helpers slowly

    header = check_wfdb_header(path)
    record = wfdb.rdrecord(str(path.with_suffix("")))
    signal = record.p_signal
    if signal is None or signal.ndim != 2 or signal.shape[1] == 0:
        raise EcgFileProblem("unreadable", f"{path.name}: the WFDB record holds no signal")
    names = [str(n) for n in (record.sig_name or [])]
    units = [str(u) for u in (record.units or [])]
    channels = [
        (
            names[k] if k < len(names) else f"channel {k}",
            signal[:, k]
            * unit_factor(units[k] if k < len(units) else None, f"{path.name} channel {k}"),
        )
        for k in range(signal.shape[1])
    ]
    return build_recording(
        channels, float(record.fs), path.stem, patient_from_comments(header), base_time(record)
    )


def check_wfdb_header(path: Path) -> Any:
    """The parsed header of ``path``, refused (:class:`EcgFileProblem`) when its claimed size is
    implausible (over :data:`~ecgml.ecgfile.recording.MAX_SAMPLES`) or larger than its signal
    files hold."""
    import wfdb  # deferred: see read()

    try:
        header = wfdb.rdheader(str(path.with_suffix("")))
    except Exception as err:  # wfdb raises ValueError, IndexError, … on a malformed header
        detail = " ".join(str(err).split())[:160]
        raise EcgFileProblem(
            "wrong_format", f"{path.name}: not a readable WFDB header ({detail})"
        ) from None
    n_sig, sig_len = int(header.n_sig or 0), int(header.sig_len or 0)
    frames = [int(s or 1) for s in (header.samps_per_frame or [1] * n_sig)]
    claimed = sig_len * sum(frames)
    if claimed > MAX_SAMPLES:
        raise EcgFileProblem(
            "unreadable",
            f"{path.name}: the header claims {sig_len:,} samples × {n_sig} channels, more than "
            f"the {MAX_SAMPLES:,} ecgml reads from one record: cut the recording",
        )
    _check_signal_files(path, header, sig_len, frames)
    return header


def _check_signal_files(path: Path, header: Any, sig_len: int, frames: list[int]) -> None:
    n_sig = int(header.n_sig or 0)
    per_file: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for k, name in enumerate(header.file_name or []):
        size = WFDB_BYTES_PER_SAMPLE.get(str(header.fmt[k]))
        if size is None:
            return  # a compressed format: its size says nothing about its length
        per_file[name] = per_file.get(name, 0.0) + size * frames[k]
        offsets[name] = int((header.byte_offset or [0] * n_sig)[k] or 0)
    for name, bytes_per_frame in per_file.items():
        signal_file = path.parent / name
        if Path(name).name != name or not signal_file.is_file():
            raise EcgFileProblem("missing_file", f"{path.name}: its signal file {name} is missing")
        needed = offsets[name] + math.ceil(sig_len * bytes_per_frame)
        if signal_file.stat().st_size < needed:
            raise EcgFileProblem(
                "truncated",
                f"{path.name}: the header claims {sig_len:,} samples, but {name} holds "
                f"{signal_file.stat().st_size:,} of the {needed:,} bytes that needs: the record "
                "is truncated or its header wrong",
            )


def patient_from_comments(header: Any) -> str | None:
    """A ``patient_id: X`` / ``subject_id: X`` header comment's value, else None."""
    for comment in header.comments or []:
        match = _PATIENT_COMMENT.match(str(comment))
        if match:
            return match.group(1)
    return None


def base_time(record: Any) -> datetime | None:
    """The record's start (header base date and time), None when the header has no date."""
    value = getattr(record, "base_datetime", None)
    if isinstance(value, datetime):
        return value
    return None


def channel_mv(values: np.ndarray, unit: str) -> np.ndarray:
    """One WFDB channel in mV (µV and V converted; gaps, NaN in WFDB, set to 0), for single
    recordings handed to ``ecgml.predict`` (ingest refuses gaps instead)."""
    factor = unit_factor(unit or "mV", "channel")
    return np.nan_to_num(np.asarray(values, dtype=np.float64) * factor).astype(np.float32)
