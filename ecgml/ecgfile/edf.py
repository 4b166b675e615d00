"""EDF, EDF+ and BDF(+) files, read with ``pyedflib`` in physical units.

The fixed header is checked here before ``pyedflib`` opens the file (:func:`check_edf_header`):
the version field (EDF ``0``, BDF ``\\xffBIOSEMI``, else ``wrong_format``), the numeric fields,
the claimed size (:func:`~ecgml.ecgfile.recording.check_size`) and that the file holds every
data record the header claims (else ``truncated``). Then every signal must be a lead (the EDF+
``EDF Annotations`` signal is skipped; any other label is ``unknown_lead``), all at one rate
(else ``inconsistent_leads``), with a voltage as physical dimension (empty: ``no_units``).

Identity: the record id is the file stem; the patient id is EDF+'s patient code, or for plain
EDF the first word of the patient field when it holds a digit (a code: a bare word there is
usually a name, which ecgml never takes); ``X`` (unknown) is None. The time is the start date
and time (naive, as EDF stores it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib

from ecgml.ecgfile.recording import (
    EcgFileProblem,
    Recording,
    build_recording,
    canonical_lead,
    check_size,
    is_extra_lead,
    problems_named,
    unit_factor,
)

#: Version field of an EDF (2-byte samples) and a BDF (3-byte samples) file.
VERSIONS = {b"0       ": 2, b"\xffBIOSEMI": 3}
#: Most signals a header may declare (edflib's own limit).
MAX_SIGNALS = 4096
_FIXED = 256  # bytes of the fixed header, and of each signal's header
_SIGNAL_FIELDS = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)  # label … samples per record, reserved


@dataclass(frozen=True)
class EdfHeader:
    """What the fixed header claims (``n_records`` -1: unknown, counted from the file size)."""

    n_records: int
    record_s: float
    labels: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    header_bytes: int
    bytes_per_sample: int


@dataclass(frozen=True)
class EdfChannel:
    """One signal as pyedflib reads it: ``samples`` in its physical ``dimension`` (the unit
    EDF states) at ``fs`` Hz."""

    label: str
    dimension: str
    fs: float
    samples: np.ndarray


def read(path: Path) -> Recording:
    """The EDF/BDF file ``path``, every signal a lead, in mV."""
    check_edf_header(path)
    with open_edf(path) as reader:
        channels = read_channels_of(reader)
        patient, time = patient_id(reader), start_time(reader)
    leads, fs = _leads_in_mv(channels, path.name)
    with problems_named(path.name):
        return build_recording(leads, fs, path.stem, patient, time)


def read_channels(path: Path) -> list[EdfChannel]:
    """Every signal of ``path`` but EDF+ annotations, in the file's physical units (the header
    checked first)."""
    check_edf_header(path)
    with open_edf(path) as reader:
        return read_channels_of(reader)


def check_edf_header(path: Path) -> EdfHeader:
    """The parsed fixed header, refused (:class:`EcgFileProblem`) when it is no EDF/BDF header,
    claims an absurd size or more data records than the file holds."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        fixed = handle.read(_FIXED)
        bytes_per_sample = VERSIONS.get(fixed[:8])
        if bytes_per_sample is None:
            raise EcgFileProblem(
                "wrong_format", f"{path.name}: no EDF or BDF version field: not an EDF/BDF file"
            )
        if len(fixed) < _FIXED:
            raise EcgFileProblem("truncated", f"{path.name}: the file ends inside its header")
        n_signals = _int_field(fixed, 252, 256, "number of signals", path.name)
        if not 1 <= n_signals <= MAX_SIGNALS:
            raise EcgFileProblem("wrong_format", f"{path.name}: claims {n_signals} signals")
        signal_headers = handle.read(_FIXED * n_signals)
    header_bytes = _int_field(fixed, 184, 192, "header size", path.name)
    if header_bytes != _FIXED * (n_signals + 1):
        raise EcgFileProblem(
            "wrong_format",
            f"{path.name}: the header size {header_bytes} does not fit {n_signals} signals",
        )
    if len(signal_headers) < _FIXED * n_signals:
        raise EcgFileProblem("truncated", f"{path.name}: the file ends inside its signal headers")
    header = EdfHeader(
        n_records=_int_field(fixed, 236, 244, "number of data records", path.name),
        record_s=_float_field(fixed, 244, 252, "data record duration", path.name),
        labels=tuple(
            _signal_field(signal_headers, n_signals, 0, k).strip() for k in range(n_signals)
        ),
        samples_per_record=tuple(
            _int_field(
                signal_headers, *_signal_span(n_signals, 8, k), "samples per record", path.name
            )
            for k in range(n_signals)
        ),
        header_bytes=header_bytes,
        bytes_per_sample=bytes_per_sample,
    )
    _check_claimed_size(header, size, path.name)
    return header


def _signal_span(n_signals: int, field: int, k: int) -> tuple[int, int]:
    """Byte span of field number ``field`` of signal ``k`` in the signal header block."""
    start = n_signals * sum(_SIGNAL_FIELDS[:field]) + k * _SIGNAL_FIELDS[field]
    return start, start + _SIGNAL_FIELDS[field]


def _signal_field(block: bytes, n_signals: int, field: int, k: int) -> str:
    start, end = _signal_span(n_signals, field, k)
    return block[start:end].decode("latin-1")


def _int_field(block: bytes, start: int, end: int, what: str, name: str) -> int:
    text = block[start:end].decode("latin-1").strip()
    try:
        return int(text)
    except ValueError:
        raise EcgFileProblem(
            "wrong_format", f"{name}: the header's {what} is {text!r}, not a whole number"
        ) from None


def _float_field(block: bytes, start: int, end: int, what: str, name: str) -> float:
    text = block[start:end].decode("latin-1").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise EcgFileProblem(
            "wrong_format", f"{name}: the header's {what} is {text!r}, not a number"
        )
    return value


def _check_claimed_size(header: EdfHeader, size: int, name: str) -> None:
    if header.record_s <= 0:
        raise EcgFileProblem(
            "unreadable",
            f"{name}: data records of {header.record_s:g} s give no sampling rate",
        )
    if min(header.samples_per_record) < 1:
        raise EcgFileProblem("wrong_format", f"{name}: a signal has no samples per data record")
    record_bytes = sum(header.samples_per_record) * header.bytes_per_sample
    n_records = header.n_records
    if n_records == -1:  # "unknown" (written while recording): what the file holds
        n_records = max(size - header.header_bytes, 0) // record_bytes
    if n_records < 0:
        raise EcgFileProblem("wrong_format", f"{name}: claims {n_records} data records")
    if n_records == 0:
        raise EcgFileProblem("too_short", f"{name}: holds no data records")
    check_size(n_records * max(header.samples_per_record), len(header.labels), name)
    needed = header.header_bytes + n_records * record_bytes
    if size < needed:
        raise EcgFileProblem(
            "truncated",
            f"{name}: the header claims {n_records:,} data records ({needed:,} bytes), the file "
            f"has {size:,}: truncated (an interrupted copy or recording?)",
        )


@contextmanager
def open_edf(path: Path) -> Iterator[Any]:
    """A ``pyedflib.EdfReader`` of ``path``, always closed; its refusals as ``wrong_format``.

    The file size is checked by :func:`check_edf_header` (bytes after the last data record are
    ignored), and annotations are not read."""
    try:
        reader = pyedflib.EdfReader(
            str(path),
            annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS,
            check_file_size=pyedflib.DO_NOT_CHECK_FILE_SIZE,
        )
    except OSError as err:
        detail = " ".join(str(err).split())[:160]
        raise EcgFileProblem(
            "wrong_format", f"{path.name}: pyedflib refuses it ({detail})"
        ) from None
    try:
        yield reader
    finally:
        reader.close()


def read_channels_of(reader: Any) -> list[EdfChannel]:
    """Every signal of an open reader in physical units (pyedflib skips EDF+ annotations)."""
    channels = []
    for k in range(int(reader.signals_in_file)):
        label = str(reader.getLabel(k)).strip()
        fs = round(float(reader.getSampleFrequency(k)), 6)  # samples / duration: binary noise
        unit = str(reader.getPhysicalDimension(k)).strip()
        channels.append(EdfChannel(label, unit, fs, reader.readSignal(k)))
    return channels


def _leads_in_mv(
    channels: list[EdfChannel], name: str
) -> tuple[list[tuple[str, np.ndarray]], float]:
    """``(label, mV)`` of the lead channels and their rate: labels first (``unknown_lead``),
    then one rate for all (``inconsistent_leads``), then units (``no_units``)."""
    kept = [c for c in channels if not is_extra_lead(c.label)]
    if not kept:
        raise EcgFileProblem("no_lead_ii", f"{name}: holds no ECG signal")
    for channel in kept:
        if canonical_lead(channel.label) is None:
            raise EcgFileProblem(
                "unknown_lead", f"{name}: signal {channel.label[:40]!r} is no ECG lead"
            )
    rates = sorted({c.fs for c in kept})
    if len(rates) > 1:
        raise EcgFileProblem(
            "inconsistent_leads",
            f"{name}: leads sampled at different rates ({', '.join(f'{r:g}' for r in rates)} Hz)",
        )
    leads = [
        (c.label, c.samples * unit_factor(c.dimension or None, f"{name} signal {c.label!r}"))
        for c in kept
    ]
    return leads, rates[0]


def patient_id(reader: Any) -> str | None:
    """EDF+'s patient code; for plain EDF the patient field's first word when it holds a digit
    (a bare word there is usually a name); None for ``X`` (unknown) or nothing."""
    if int(reader.filetype) in (pyedflib.FILETYPE_EDFPLUS, pyedflib.FILETYPE_BDFPLUS):
        code = str(reader.getPatientCode()).strip()
    else:
        field = reader.patient
        text = field.decode("latin-1") if isinstance(field, bytes) else str(field)
        words = text.split()
        code = words[0] if words and any(ch.isdigit() for ch in words[0]) else ""
    return None if code in ("", "X") else code


def start_time(reader: Any) -> datetime | None:
    """The recording's start (naive); None when the header's date is no date."""
    try:
        value = reader.getStartdatetime()
    except (ValueError, OverflowError):
        return None
    return value if isinstance(value, datetime) else None
