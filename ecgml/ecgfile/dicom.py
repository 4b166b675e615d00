"""DICOM waveform ECGs (12-lead ECG and General ECG Waveform Storage), read with ``pydicom``.

Which multiplex group: exports carry a rhythm group (10 s of every lead) and often a
representative-beat group (``MEDIAN BEAT``, ``REPRESENTATIVE BEAT``, ``AVERAGE``…, one beat of
about 1 s). The reader takes the group labelled ``RHYTHM``, else the longest group that is not
a representative beat; a file holding only representative beats is ``wrong_format``.

Which lead: each channel's ``ChannelSourceSequence[0]`` code (DICOM CID 3001 "ECG Leads": MDC
``2:1`` … or the older SCPECG ``5.6.3-9-1`` …), else its code meaning (``Lead I (Einthoven)``,
``aVR, augmented voltage, right``). Every channel of the chosen group must be one of the 12
standard leads: a respiration, pacing or extra lead (V4R, V7, Frank) channel makes the file
``unknown_lead`` naming it; nothing is dropped silently, as for every other format.

Scale: ``value = raw × ChannelSensitivity × ChannelSensitivityCorrectionFactor +
ChannelBaseline`` in the unit of ``ChannelSensitivityUnitsSequence`` (what
``Dataset.waveform_array`` computes; done here with the values checked first, because pydicom
takes a missing sensitivity as 1 and fails on an empty baseline), then mV. A channel without
sensitivity or unit is ``no_units``; an absent or empty correction factor is 1, baseline 0.

Damage: pydicom reads a file that ends early without complaint, so the reader checks that no
element ends past the end of the file (``truncated``), that a waveform SOP class file has its
Waveform Sequence (else ``truncated``; an image or other object without one is
``wrong_format``) and that ``WaveformData`` holds what the group's header claims, before
anything is decoded (``check_size`` first). One read of a 10 s export takes a few ms.

Identity: ``PatientID``; the time from ``AcquisitionDateTime`` (aware when it or
``TimezoneOffsetFromUTC`` gives an offset), else ``AcquisitionDate`` + ``AcquisitionTime``,
else ``ContentDate`` + ``ContentTime``; an absent or malformed time is None; the record id is
``SOPInstanceUID``, else the file stem. Patient names and birth dates are never read.
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.valuerep import DA, DT, TM

from ecgml import TWELVE_LEADS
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

#: CID 3001 lead number of each standard lead: MDC ``2:<n>`` and SCPECG ``5.6.3-9-<n>``.
LEAD_NUMBERS = {
    "I": 1,
    "II": 2,
    "III": 61,
    "aVR": 62,
    "aVL": 63,
    "aVF": 64,
    "V1": 3,
    "V2": 4,
    "V3": 5,
    "V4": 6,
    "V5": 7,
    "V6": 8,
}
#: MDC codes of the derived limb leads (III, aVR, aVL, aVF computed from I and II by the cart:
#: the same values as the measured ones, by Einthoven and Goldberger).
_DERIVED_LIMB = {"2:111": "III", "2:112": "aVR", "2:113": "aVL", "2:114": "aVF"}
#: Channel source code value → standard lead.
LEAD_CODES: dict[str, str] = {
    **{f"2:{n}": lead for lead, n in LEAD_NUMBERS.items()},
    **{f"5.6.3-9-{n}": lead for lead, n in LEAD_NUMBERS.items()},
    **_DERIVED_LIMB,
}
#: Multiplex group labels of a representative (median, average) beat, never the rhythm.
_BEAT_GROUP = re.compile(r"MEDIAN|REPRESENTATIVE|AVERAGE|TEMPLATE|BEAT", re.IGNORECASE)
#: numpy dtype of each (bits allocated, sample interpretation) read; the 8-bit µ-law and A-law
#: encodings (MB, AB) are audio, never ECG, and pydicom does not expand them.
SAMPLE_DTYPES = {
    (8, "SB"): "i1",
    (8, "UB"): "u1",
    (16, "SS"): "<i2",
    (16, "US"): "<u2",
    (32, "SL"): "<i4",
    (32, "UL"): "<u4",
}
_PARENTHESES = re.compile(r"\([^)]*\)")
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Where the meta elements after the group length start: preamble, "DICM", (0002,0000).
_META_START = 128 + 4 + 12
#: SOP class UID prefix of the waveform storage classes (ECG, audio, haemodynamic …).
_WAVEFORM_CLASSES = "1.2.840.10008.5.1.4.1.1.9."
#: What pydicom raises on a damaged element (a bad length, VR or value).
_DAMAGED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    OSError,
    BytesLengthException,
)


def read(path: Path) -> Recording:
    """The rhythm group of the DICOM waveform file ``path``, every channel a lead, in mV."""
    with _pydicom_quiet():
        try:
            return _read(path)
        except EcgFileProblem:
            raise
        except InvalidDicomError as err:
            raise EcgFileProblem(
                "wrong_format", f"{path.name}: not a DICOM file ({_one_line(err)})"
            ) from None
        except (EOFError, struct.error) as err:  # struct: fewer bytes than an element header
            raise EcgFileProblem(
                "truncated", f"{path.name}: the file ends inside an element ({_one_line(err)})"
            ) from None
        except _DAMAGED as err:  # pydicom parses elements lazily: raised on first access
            raise EcgFileProblem(
                "unreadable",
                f"{path.name}: a damaged DICOM element ({type(err).__name__}: {_one_line(err)})",
            ) from None


def _read(path: Path) -> Recording:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    check_complete(ds, path)
    groups = _waveform_groups(ds, path.name)
    index = choose_rhythm_group(groups, path.name)
    channels, fs = _group_channels(ds, index, path.name)
    record_id = str(ds.get("SOPInstanceUID", "") or "").strip() or path.stem
    patient = str(ds.get("PatientID", "") or "").strip() or None
    time = acquisition_time(ds)
    with problems_named(path.name):
        return build_recording(channels, fs, record_id, patient, time)


@contextmanager
def _pydicom_quiet() -> Iterator[None]:
    """pydicom warns about any non-conformant value it meets, also in elements ecgml never uses;
    those warnings are ignored here, and every value the reader needs is checked itself.
    Arithmetic on absurd scales gives inf, which :func:`build_recording` refuses."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
        yield


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__


def check_complete(ds: Dataset, path: Path) -> None:
    """``truncated`` when the file ends inside its meta header or inside a top-level element:
    pydicom reads a file that ends early without complaint (the rhythm group, last in the file,
    would just be missing). Elements of undefined length have no such check; the waveform
    data's own length is checked against its header later."""
    meta = getattr(ds, "file_meta", None) or Dataset()
    meta_length = meta.get("FileMetaInformationGroupLength")
    if isinstance(meta_length, int) and path.stat().st_size < _META_START + meta_length:
        raise EcgFileProblem(
            "truncated", f"{path.name}: the file ends inside its DICOM meta header: truncated"
        )
    for dataset in (meta, ds):
        for tag in dataset.keys():  # noqa: SIM118 (iterating a Dataset converts elements)
            raw = dataset.get_item(tag)
            if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
                continue
            if raw.length != _UNDEFINED_LENGTH and len(raw.value) < raw.length:
                raise EcgFileProblem(
                    "truncated",
                    f"{path.name}: the file ends inside element {raw.tag} ({len(raw.value):,} of "
                    f"its {raw.length:,} bytes): truncated (an interrupted copy or export?)",
                )


def _waveform_groups(ds: Dataset, name: str) -> list[Dataset]:
    groups = ds.get("WaveformSequence")
    if groups:
        return list(groups)
    meta = getattr(ds, "file_meta", None) or Dataset()
    sop = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or "").strip()
    kind = f" ({pydicom.uid.UID(sop).name})" if sop else ""
    if sop.startswith(_WAVEFORM_CLASSES):  # its Waveform Sequence is required (type 1)
        raise EcgFileProblem(
            "truncated",
            f"{name}: a waveform file{kind} without its waveform data: truncated or damaged",
        )
    raise EcgFileProblem(
        "wrong_format", f"{name}: a DICOM file{kind} without waveform data, not an ECG"
    )


def choose_rhythm_group(groups: list[Dataset], name: str) -> int:
    """Index of the rhythm group: labelled ``RHYTHM``, else the longest group that is not a
    representative beat (``MEDIAN BEAT`` …)."""
    candidates = [k for k, group in enumerate(groups) if not _BEAT_GROUP.search(_label(group))]
    if not candidates:
        labels = ", ".join(repr(_label(group)) for group in groups)
        raise EcgFileProblem(
            "wrong_format",
            f"{name}: holds only representative beats ({labels}), no rhythm recording",
        )
    rhythm = [k for k in candidates if "RHYTHM" in _label(groups[k]).upper()]
    return max(rhythm or candidates, key=lambda k: _duration_s(groups[k]))


def _label(group: Dataset) -> str:
    return str(group.get("MultiplexGroupLabel", "") or "").strip()


def _duration_s(group: Dataset) -> float:
    """The group's length in seconds (0 where its header says no usable length)."""
    try:
        samples = int(group.get("NumberOfWaveformSamples") or 0)
        fs = float(group.get("SamplingFrequency") or 0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return samples / fs if fs > 0 and np.isfinite(fs) else 0.0


def _group_channels(ds: Dataset, index: int, name: str) -> tuple[list[tuple[str, Any]], float]:
    """``(lead, samples in mV)`` of the group at ``index``, and its sampling rate."""
    group = ds.WaveformSequence[index]
    where = f"{name} ({_label(group) or f'group {index}'})"
    n_channels = _count(group, "NumberOfWaveformChannels", where)
    n_samples = _count(group, "NumberOfWaveformSamples", where)
    check_size(n_samples, n_channels, where)
    definitions = list(group.get("ChannelDefinitionSequence") or [])
    if len(definitions) != n_channels:
        raise EcgFileProblem(
            "inconsistent_leads",
            f"{where}: defines {len(definitions)} channels but holds {n_channels}",
        )
    leads = [
        channel_lead(definition, f"{where} channel {k + 1}")
        for k, definition in enumerate(definitions)
    ]
    scales = [
        channel_scale_mv(d, f"{where} lead {lead}")
        for d, lead in zip(definitions, leads, strict=True)
    ]
    fs = _number(group.get("SamplingFrequency"), f"{where}: SamplingFrequency")
    dtype = _check_data_length(group, n_samples, n_channels, where)
    if ds.original_encoding[1] is False:  # the retired Explicit VR Big Endian syntax
        dtype = dtype.replace("<", ">")
    raw = np.frombuffer(group.WaveformData, dtype=dtype, count=n_samples * n_channels)
    raw = raw.reshape(n_samples, n_channels)  # C1S1, C2S1, …, CnS1, C1S2, …
    channels = [(lead, raw[:, k] * scales[k][0] + scales[k][1]) for k, lead in enumerate(leads)]
    return channels, fs


def _count(group: Dataset, keyword: str, where: str) -> int:
    value = group.get(keyword)
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        raise EcgFileProblem("unreadable", f"{where}: {keyword} is {value!r}") from None
    if count < 0:
        raise EcgFileProblem("unreadable", f"{where}: {keyword} is {count}")
    return count


def _number(value: object, what: str, default: float | None = None) -> float:
    """A DS value as a finite float; ``default`` when it is absent (None: required)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise EcgFileProblem("unreadable", f"{what} is missing")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if not np.isfinite(number):
        raise EcgFileProblem("unreadable", f"{what} is {str(value)[:40]!r}, not a number")
    return number


def channel_lead(definition: Dataset, where: str) -> str:
    """The standard lead of one channel definition, from its source code (CID 3001) or,
    when the code is not one of the 12 leads', its code meaning; else ``unknown_lead``."""
    sources = definition.get("ChannelSourceSequence") or []
    source = sources[0] if len(sources) else Dataset()
    code = str(source.get("CodeValue", "") or "").strip()
    meaning = str(source.get("CodeMeaning", "") or "").strip()
    lead = LEAD_CODES.get(code) or _lead_from_meaning(meaning)
    if lead is None and is_extra_lead(_PARENTHESES.sub("", meaning).strip()):
        return meaning  # a 15/18-lead ECG's extra lead: build_recording drops it
    if lead is None:
        shown = meaning or code or "no channel source"
        raise EcgFileProblem(
            "unknown_lead", f"{where} ({shown[:40]!r}, code {code[:20]!r}) is no standard lead"
        )
    return lead


def _lead_from_meaning(meaning: str) -> str | None:
    """``Lead I (Einthoven)`` → I, ``aVR, augmented voltage, right`` → aVR."""
    text = _PARENTHESES.sub("", meaning).split(",")[0].strip()
    lead = canonical_lead(text) if text else None
    return lead if lead in TWELVE_LEADS else None


def channel_scale_mv(definition: Dataset, where: str) -> tuple[float, float]:
    """``(mV per step, baseline in mV)`` of one channel; ``no_units`` without a sensitivity or
    a unit, ``unreadable`` for a scale value that is no number (or a zero sensitivity)."""
    units = definition.get("ChannelSensitivityUnitsSequence") or []
    unit = str(units[0].get("CodeValue", "") or "").strip() if len(units) else ""
    factor = unit_factor(unit or None, where)
    if definition.get("ChannelSensitivity") in (None, ""):
        raise EcgFileProblem("no_units", f"{where} states no ChannelSensitivity: no scale")
    sensitivity = _number(definition.get("ChannelSensitivity"), f"{where}: ChannelSensitivity")
    correction = _number(
        definition.get("ChannelSensitivityCorrectionFactor"), f"{where}: correction", 1.0
    )
    baseline = _number(definition.get("ChannelBaseline"), f"{where}: ChannelBaseline", 0.0)
    if sensitivity * correction == 0:
        raise EcgFileProblem("unreadable", f"{where}: a sensitivity of 0 (all samples 0)")
    return sensitivity * correction * factor, baseline * factor


def _check_data_length(group: Dataset, n_samples: int, n_channels: int, where: str) -> str:
    """The samples' numpy dtype, once ``WaveformData`` is known to hold what the header
    claims, in an encoding read here."""
    bits = group.get("WaveformBitsAllocated")
    kind = str(group.get("WaveformSampleInterpretation", "") or "").strip()
    if (bits, kind) not in SAMPLE_DTYPES:
        raise EcgFileProblem(
            "unreadable", f"{where}: samples of {bits!r} bits, {kind!r}, are not ECG samples"
        )
    data = group.get("WaveformData")
    held = len(data) if isinstance(data, bytes | bytearray) else 0
    needed = n_samples * n_channels * int(bits) // 8
    if held < needed:
        raise EcgFileProblem(
            "truncated",
            f"{where}: the header claims {n_samples:,} samples × {n_channels} channels "
            f"({needed:,} bytes), WaveformData holds {held:,}: truncated or a wrong header",
        )
    return SAMPLE_DTYPES[(bits, kind)]


def acquisition_time(ds: Dataset) -> datetime | None:
    """When the ECG was taken: AcquisitionDateTime, else AcquisitionDate + AcquisitionTime,
    else ContentDate + ContentTime; aware when the value or TimezoneOffsetFromUTC gives an
    offset, None when none is there or parses."""
    value = (
        _datetime(ds.get("AcquisitionDateTime"))
        or _date_time(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))
        or _date_time(ds.get("ContentDate"), ds.get("ContentTime"))
    )
    if value is not None and value.tzinfo is None:
        offset = _utc_offset(ds.get("TimezoneOffsetFromUTC"))
        if offset is not None:
            value = value.replace(tzinfo=offset)
    return value


def _datetime(value: object) -> datetime | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        parsed = DT(text)
    except (ValueError, TypeError, OverflowError):
        return None
    return _plain(parsed)


def _date_time(date_value: object, time_value: object) -> datetime | None:
    date_text, time_text = str(date_value or "").strip(), str(time_value or "").strip()
    if not (date_text and time_text):
        return None
    try:
        day, clock = DA(date_text), TM(time_text)
    except (ValueError, TypeError, OverflowError):
        return None
    if day is None or clock is None:
        return None
    return datetime.combine(day, clock)


def _plain(value: datetime) -> datetime:
    """A stdlib ``datetime`` (pydicom's ``DT`` subclass also carries its original string)."""
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=value.tzinfo,
    )


def _utc_offset(value: object) -> timezone | None:
    match = re.fullmatch(r"([+-])(\d\d)(\d\d)", str(value or "").strip())
    if match is None:
        return None
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes = int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
