"""GE MUSE XML (root ``RestingECG``, GE's ``restecg.dtd``): the rhythm waveform in mV.

Which waveform: a MUSE export holds a ``Median`` waveform (one representative beat, ~1.2 s)
and a ``Rhythm`` waveform (the 10 s strip), in either order. The reader takes the first
``Rhythm`` one, else the first whose ``WaveformType`` is missing or not ``Median``; a file
holding only a median beat, or no waveform, is ``wrong_format``.

Samples: each ``LeadData`` holds ``WaveFormData``, base64 of little-endian signed integers of
``LeadSampleSize`` bytes (2 unless stated), times ``LeadAmplitudeUnitsPerBit`` (4.88 in GE's
exports) in ``LeadAmplitudeUnits`` (``MICROVOLTS``) → mV. Every size the file states
(``LeadSampleCountTotal``, ``LeadByteCountTotal``) must agree with the data: fewer bytes than
stated is ``truncated``, more is ``unreadable``; a claimed size over
:data:`~ecgml.ecgfile.recording.MAX_SAMPLES` is refused before anything is decoded. GE stores
I, II, V1–V6; :func:`~ecgml.ecgfile.recording.build_recording` derives III, aVR, aVL, aVF.
``FirstSampleBaseline`` / ``LeadOffsetFirstSample`` (undocumented, zero in GE's exports) are
not applied, and ``LeadDataCRC32`` is not checked (whether every MUSE version computes it over
the decoded bytes is not documented), as in ecgdatakit.

Rate: ``SampleBase`` × 10^``SampleExponent`` Hz. Patient id: ``PatientDemographics/PatientID``.
Time: ``TestDemographics/AcquisitionDate`` (MM-DD-YYYY) + ``AcquisitionTime`` (HH:MM:SS), naive
local time; absent or malformed → None. ``record_id``: the file stem (MUSE has no per-test id
that every export fills: ``SecondaryID``, the order number and the MUSE key are optional or
site-specific). Patient names and birth dates are never read.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np

from ecgml.ecgfile.recording import (
    EcgFileProblem,
    Recording,
    build_recording,
    check_size,
    unit_factor,
)

#: Bytes per stored sample MUSE may state (``LeadSampleSize``); 2 when absent.
SAMPLE_SIZES = (1, 2, 4)
#: Date and time layouts of ``AcquisitionDate`` / ``AcquisitionTime`` (GE writes the first).
DATE_FORMATS = ("%m-%d-%Y", "%m/%d/%Y", "%Y-%m-%d")
TIME_FORMATS = ("%H:%M:%S", "%H:%M")
#: GE's amplitude unit names that :func:`unit_factor` does not know by themselves.
_GE_UNITS = {"MICROVOLT": "uV", "MICROVOLTS": "uV", "MILLIVOLT": "mV", "MILLIVOLTS": "mV"}
_WHITESPACE = {ord(c): None for c in " \t\n\r\f\v"}


def read_muse(root: Element, path: Path) -> Recording:
    """The rhythm waveform of the MUSE document ``root`` (read from ``path``) as a Recording."""
    waveform, kind = _rhythm_waveform(root, path)
    fs = _sampling_rate(waveform, kind, path)
    items = [child for child in waveform if _tag(child) == "leaddata"]
    channels = [_lead_samples(item, len(items), kind, path) for item in items]
    patient = _text(_child(root, "PatientDemographics"), "PatientID") or None
    try:
        return build_recording(channels, fs, path.stem, patient, _acquisition_time(root))
    except EcgFileProblem as problem:
        raise _named(problem, path) from None


def _rhythm_waveform(root: Element, path: Path) -> tuple[Element, str]:
    """The first ``Rhythm`` waveform, else the first that is not labelled ``Median``."""
    waveforms = [child for child in root if _tag(child) == "waveform"]
    kinds = [_text(w, "WaveformType") for w in waveforms]
    for waveform, kind in zip(waveforms, kinds, strict=True):
        if kind.lower() == "rhythm":
            return waveform, kind
    for waveform, kind in zip(waveforms, kinds, strict=True):
        if kind.lower() != "median":
            return waveform, kind or "unlabelled"
    found = "only a Median beat" if waveforms else "no <Waveform>"
    raise EcgFileProblem("wrong_format", f"{path.name}: MUSE file with {found}, no Rhythm strip")


def _sampling_rate(waveform: Element, kind: str, path: Path) -> float:
    """``SampleBase`` × 10^``SampleExponent``; the plausible range is checked by the builder."""
    base = _number(_text(waveform, "SampleBase"), f"{path.name}: {kind} SampleBase")
    exponent_text = _text(waveform, "SampleExponent")
    exponent = _number(exponent_text, f"{path.name}: {kind} SampleExponent") if exponent_text else 0
    if base is None:
        raise EcgFileProblem("unreadable", f"{path.name}: the {kind} waveform has no SampleBase")
    if exponent is None or exponent != int(exponent) or abs(exponent) > 9:
        raise EcgFileProblem(
            "unreadable", f"{path.name}: {kind} SampleExponent {exponent_text[:40]!r} is absurd"
        )
    return base * 10.0 ** int(exponent)


def _lead_samples(item: Element, n_leads: int, kind: str, path: Path) -> tuple[str, np.ndarray]:
    """One ``LeadData`` as ``(LeadID, samples in mV)``, every stated size checked."""
    lead = _text(item, "LeadID")[:40] or "?"
    where = f"{path.name}: lead {lead} ({kind})"
    size = _sample_size(item, where)
    count = _count(item, "LeadSampleCountTotal", where)
    stated_bytes = _count(item, "LeadByteCountTotal", where)
    if count is not None:
        check_size(count, n_leads, where)
    factor = _millivolts_per_bit(item, where)
    payload = _decoded(_text(item, "WaveFormData"), where)
    expected = [n for n in (None if count is None else count * size, stated_bytes) if n is not None]
    _check_length(len(payload), expected, size, where)
    check_size(len(payload) // size, n_leads, where)
    digital = np.frombuffer(payload, dtype=f"<i{size}")
    return lead, digital.astype(np.float64) * factor


def _sample_size(item: Element, where: str) -> int:
    text = _text(item, "LeadSampleSize")
    size = _number(text, f"{where} LeadSampleSize") if text else 2.0
    if size not in SAMPLE_SIZES or size is None:
        raise EcgFileProblem(
            "unreadable", f"{where}: LeadSampleSize {text[:40]!r} is not 1, 2 or 4"
        )
    return int(size)


def _count(item: Element, tag: str, where: str) -> int | None:
    """A stated non-negative whole count, None when the element is absent or empty."""
    text = _text(item, tag)
    if not text:
        return None
    value = _number(text, f"{where} {tag}")
    if value is None or value < 0 or value != int(value):
        raise EcgFileProblem("unreadable", f"{where}: {tag} {text[:40]!r} is not a count")
    return int(value)


def _millivolts_per_bit(item: Element, where: str) -> float:
    """``LeadAmplitudeUnitsPerBit`` in ``LeadAmplitudeUnits``, as mV per stored step."""
    text = _text(item, "LeadAmplitudeUnitsPerBit")
    if not text:
        raise EcgFileProblem("no_units", f"{where} states no LeadAmplitudeUnitsPerBit")
    per_bit = _number(text, f"{where} LeadAmplitudeUnitsPerBit")
    if per_bit is None or per_bit == 0 or not math.isfinite(per_bit):
        raise EcgFileProblem(
            "unreadable", f"{where}: LeadAmplitudeUnitsPerBit {text[:40]!r} is no scale"
        )
    unit = _text(item, "LeadAmplitudeUnits")
    return per_bit * unit_factor(_GE_UNITS.get(unit.upper(), unit) or None, where)


def _decoded(text: str, where: str) -> bytes:
    """The bytes of base64 ``text`` (line breaks allowed); cut short → ``truncated``."""
    compact = text.translate(_WHITESPACE)
    if len(compact) % 4:
        raise EcgFileProblem(
            "truncated", f"{where}: its base64 data ends mid-way ({len(compact)} characters)"
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise EcgFileProblem("unreadable", f"{where}: WaveFormData is not base64") from None


def _check_length(n_bytes: int, expected: list[int], size: int, where: str) -> None:
    """Fewer bytes than any stated size: ``truncated``; more: ``unreadable``."""
    for n in expected:
        if n_bytes < n:
            raise EcgFileProblem(
                "truncated", f"{where}: {n_bytes:,} bytes of data where the file states {n:,}"
            )
        if n_bytes > n:
            raise EcgFileProblem(
                "unreadable", f"{where}: {n_bytes:,} bytes of data, more than the {n:,} stated"
            )
    if n_bytes % size:
        raise EcgFileProblem(
            "truncated", f"{where}: {n_bytes:,} bytes is no whole number of {size}-byte samples"
        )


def _acquisition_time(root: Element) -> datetime | None:
    """``AcquisitionDate`` + ``AcquisitionTime`` as a naive datetime, None if either is bad."""
    test = _child(root, "TestDemographics")
    date_text, time_text = _text(test, "AcquisitionDate"), _text(test, "AcquisitionTime")
    day = _first_parsed(date_text, DATE_FORMATS)
    clock = _first_parsed(time_text, TIME_FORMATS)
    if day is None or clock is None:
        return None
    return datetime.combine(day.date(), clock.time())


def _first_parsed(text: str, formats: tuple[str, ...]) -> datetime | None:
    for layout in formats:
        try:
            return datetime.strptime(text, layout)
        except ValueError:
            continue
    return None


def _number(text: str, where: str) -> float | None:
    """A finite decimal (``4.88``, ``4,88``); None for an empty text, ``unreadable`` else."""
    if not text:
        return None
    try:
        value = float(text.replace(",", ".") if "." not in text else text)
    except ValueError:
        raise EcgFileProblem("unreadable", f"{where} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise EcgFileProblem("unreadable", f"{where} {text[:40]!r} is not a finite number")
    return value


def _tag(element: Element) -> str:
    """The lower-cased local tag (MUSE's tags are unprefixed; case varies between versions)."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child(node: Element | None, tag: str) -> Element | None:
    """The first direct child named ``tag`` (case-insensitive)."""
    if node is None:
        return None
    wanted = tag.lower()
    return next((child for child in node if _tag(child) == wanted), None)


def _text(node: Element | None, tag: str) -> str:
    """The stripped text of ``node``'s child ``tag``; empty when absent."""
    child = _child(node, tag)
    return "" if child is None else "".join(child.itertext()).strip()


def _named(problem: EcgFileProblem, path: Path) -> EcgFileProblem:
    """``problem`` with a detail that starts with the file's name."""
    if problem.detail.startswith(path.name):
        return problem
    return EcgFileProblem(problem.reason, f"{path.name}: {problem.detail}")
