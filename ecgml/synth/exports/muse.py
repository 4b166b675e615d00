"""A Recording as a GE MUSE XML export (``RestingECG``), laid out as GE writes it.

GE stores 8 leads (I, II, V1–V6; readers derive III, aVR, aVL, aVF) as base64 little-endian
int16 at :data:`MICROVOLTS_PER_BIT` (4.88 µV, GE's step: ±159.9 mV range), a ``Median``
waveform (here a 1 s representative beat: the sample-wise median of the recording's whole
seconds) before the ``Rhythm`` one, and the ``restecg.dtd`` DOCTYPE line. The patient id and
acquisition date/time are written (an aware time as its clock time: MUSE holds no offset); no
patient name, birth date, age or sex.
"""

from __future__ import annotations

import base64
import zlib
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import numpy as np

from ecgml.ecgfile import Recording

#: The leads GE stores; the other four are derived by every reader.
MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
#: Amplitude step (LSB) of every stored sample: GE's 4.88 µV.
MICROVOLTS_PER_BIT = 4.88
HEADER = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
)


def write(path: Path, rec: Recording) -> Path:
    """Write ``rec`` to ``path`` (``.xml``); returns ``path``."""
    root = Element("RestingECG")
    _add(SubElement(root, "MuseInfo"), "MuseVersion", "ecgml")
    demographics = SubElement(root, "PatientDemographics")
    _add(demographics, "PatientID", rec.patient_id or "")
    test = SubElement(root, "TestDemographics")
    _add(test, "DataType", "RESTING")
    if rec.time is not None:
        _add(test, "AcquisitionTime", rec.time.strftime("%H:%M:%S"))
        _add(test, "AcquisitionDate", rec.time.strftime("%m-%d-%Y"))
    leads = [lead for lead in MUSE_LEADS if lead in rec.leads]
    stored = np.stack([rec.lead(lead) for lead in leads])
    _add_waveform(root, "Median", representative_beat(stored, rec.fs), leads, rec.fs)
    _add_waveform(root, "Rhythm", stored, leads, rec.fs)
    indent(root, space="   ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER + tostring(root, encoding="ISO-8859-1", xml_declaration=False))
    return path


def representative_beat(signal: np.ndarray, fs: float) -> np.ndarray:
    """1 s per lead: the sample-wise median of the recording's whole seconds."""
    width = max(1, round(fs))
    seconds = max(1, signal.shape[1] // width)
    if signal.shape[1] < width:
        return signal.copy()
    windows = signal[:, : seconds * width].reshape(signal.shape[0], seconds, width)
    return np.median(windows, axis=1)


def _add_waveform(
    root: Element, kind: str, signal: np.ndarray, leads: list[str], fs: float
) -> None:
    waveform = SubElement(root, "Waveform")
    _add(waveform, "WaveformType", kind)
    _add(waveform, "WaveformStartTime", "0")
    _add(waveform, "NumberofLeads", str(len(leads)))
    _add(waveform, "SampleType", "CONTINUOUS_SAMPLES")
    _add(waveform, "SampleBase", f"{fs:g}" if float(fs).is_integer() else repr(float(fs)))
    _add(waveform, "SampleExponent", "0")
    for lead, samples in zip(leads, signal, strict=True):
        _add_lead(waveform, lead, samples)


def _add_lead(waveform: Element, lead: str, samples_mv: np.ndarray) -> None:
    steps = np.clip(np.round(samples_mv * 1000.0 / MICROVOLTS_PER_BIT), -32768, 32767)
    payload = steps.astype("<i2").tobytes()
    item = SubElement(waveform, "LeadData")
    for tag, value in (
        ("LeadByteCountTotal", str(len(payload))),
        ("LeadTimeOffset", "0"),
        ("LeadSampleCountTotal", str(steps.size)),
        ("LeadAmplitudeUnitsPerBit", f"{MICROVOLTS_PER_BIT:g}"),
        ("LeadAmplitudeUnits", "MICROVOLTS"),
        ("LeadHighLimit", "32767"),
        ("LeadLowLimit", "-32768"),
        ("LeadID", lead),
        ("LeadOffsetFirstSample", "0"),
        ("FirstSampleBaseline", "0"),
        ("LeadSampleSize", "2"),
        ("LeadOff", "FALSE"),
        ("BaselineSway", "FALSE"),
        ("LeadDataCRC32", str(zlib.crc32(payload) & 0xFFFFFFFF)),
        ("WaveFormData", base64.encodebytes(payload).decode("ascii")),
    ):
        _add(item, tag, value)


def _add(parent: Element, tag: str, text: str) -> Element:
    child = SubElement(parent, tag)
    child.text = text
    return child
