"""A Recording as an EDF+ file (``pyedflib``), as a Holter or sleep-lab export stores ECG.

Each lead is one signal labelled by its name (``I``, ``II``, … ``V6``) in ``uV``, with digital
range ±32767 and a physical range from the data, widened outwards to whole µV so the 8-character
header fields hold it exactly: one step (the LSB) is ``(physical max − physical min) / 65534``
µV, about 0.06 µV for a ±2 mV lead. Samples are quantized here (``round``), written as digital
values. Data records are 1 s long when the recording is a whole number of seconds, else as long
as the largest divisor of its length that fits, so no record is padded.

The header holds the patient code (``X`` when unknown, spaces as ``_``) and the start date and
time to the second (naive: an aware time is written as its own wall-clock time; pyedflib 0.1.42
cannot write EDF+'s sub-second start, so microseconds are dropped); never a name or birth date.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pyedflib

from ecgml.ecgfile import Recording

DIGITAL_MAX = 32767
#: edflib stores the data record duration in units of 10 µs, at most 60 s.
_DURATION_UNIT_S, _MAX_RECORD_S = 1e-5, 60.0
#: One signal's header as ``pyedflib.EdfWriter.setSignalHeaders`` takes it.
SignalHeader = dict[str, str | int | float | None]


def write(path: Path, rec: Recording) -> Path:
    """Write ``rec`` to ``path`` (``.edf``); ValueError when EDF cannot hold it."""
    if rec.time is None:
        raise ValueError("EDF stores a start date and time: this recording has none")
    path.parent.mkdir(parents=True, exist_ok=True)
    per_record = samples_per_record(rec.signal.shape[1], rec.fs)
    headers = [_signal_header(lead, rec.signal[k], rec.fs) for k, lead in enumerate(rec.leads)]
    digital = [quantize(rec.signal[k], headers[k]) for k in range(len(rec.leads))]
    writer = pyedflib.EdfWriter(str(path), len(rec.leads), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.setPatientCode(patient_code(rec.patient_id))
        writer.setStartdatetime(rec.time.replace(tzinfo=None, microsecond=0))
        if per_record != rec.fs:
            with warnings.catch_warnings():  # pyedflib warns that a forced duration may alter
                warnings.filterwarnings("ignore", message="Forcing a specific record_duration")
                writer.setDatarecordDuration(per_record / rec.fs)
        writer.writeSamples(digital, digital=True)
    finally:
        writer.close()
    return path


def patient_code(patient_id: str | None) -> str:
    """EDF+'s patient code subfield: ``X`` when unknown, spaces written as ``_`` (the spec's
    rule: read back with underscores); ValueError for a non-ASCII id."""
    if not patient_id:
        return "X"
    if not patient_id.isascii():
        raise ValueError(f"EDF+ holds ASCII patient codes only, not {patient_id!r}")
    return "_".join(patient_id.split())


def samples_per_record(n_samples: int, fs: float) -> int:
    """Samples per data record: ``fs`` (1 s) when it divides the length, else the largest
    divisor of the length whose duration edflib stores exactly (it truncates the duration to
    10 µs units: 9.998 s would become 9.99799 s), at most 60 s."""
    if float(fs).is_integer() and n_samples % int(fs) == 0:
        return int(fs)
    for size in sorted(_divisors(n_samples), reverse=True):
        duration = size / fs
        units = round(duration / _DURATION_UNIT_S)
        exact = abs(duration / _DURATION_UNIT_S - units) < 1e-9 * max(units, 1)
        if duration <= _MAX_RECORD_S and exact and int(duration * 100_000) == units:
            return size
    raise ValueError(f"{n_samples} samples at {fs:g} Hz fit no EDF data record duration")


def _divisors(n: int) -> set[int]:
    return {d for k in range(1, math.isqrt(n) + 1) if n % k == 0 for d in (k, n // k)}


def _signal_header(lead: str, samples_mv: np.ndarray, fs: float) -> SignalHeader:
    """Physical range in whole µV around the data (at least 1 µV wide)."""
    low = math.floor(float(np.min(samples_mv)) * 1000.0)
    high = math.ceil(float(np.max(samples_mv)) * 1000.0)
    if high <= low:
        high = low + 1
    return {
        "label": lead,
        "dimension": "uV",
        "sample_frequency": fs,
        "physical_min": low,
        "physical_max": high,
        "digital_min": -DIGITAL_MAX,
        "digital_max": DIGITAL_MAX,
        "transducer": "",
        "prefilter": "",
    }


def quantize(samples_mv: np.ndarray, header: SignalHeader) -> np.ndarray:
    """Digital values of ``samples_mv`` under ``header``'s linear map (error ≤ half an LSB)."""
    low, high = float(header["physical_min"] or 0), float(header["physical_max"] or 0)
    lsb = (high - low) / (2 * DIGITAL_MAX)
    steps = np.round((np.asarray(samples_mv, dtype=np.float64) * 1000.0 - low) / lsb)
    return (np.clip(steps, 0, 2 * DIGITAL_MAX) - DIGITAL_MAX).astype(np.int32)
