"""A Recording as an HL7 aECG document (``AnnotatedECG``, namespace ``urn:hl7-org:v3``).

Every lead of the recording (12 for a 12-lead one) is an ``SLIST_PQ`` sequence with origin
0 µV and scale :data:`MICROVOLTS_PER_DIGIT` (5 µV: the LSB; digits are unbounded integers),
coded ``MDC_ECG_LEAD_<name>``; the time sequence is ``TIME_ABSOLUTE`` (``GLIST_TS`` from the
acquisition time) or, without a time, ``TIME_RELATIVE`` (``GLIST_PQ`` from 0 s), its increment
1/fs s. A ``REPRESENTATIVE_BEAT`` series (1 s: the sample-wise median of the whole seconds)
precedes the ``RHYTHM`` series. The document id is ``root`` :data:`DOCUMENT_ROOT` with the
record id as ``extension``; the subject is the ``trialSubject`` id (``extension`` = patient id).
No patient name, birth time or sex is written.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import numpy as np

from ecgml.ecgfile import Recording
from ecgml.synth.exports.muse import representative_beat

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
#: Amplitude step (LSB) of every digit.
MICROVOLTS_PER_DIGIT = 5.0
#: ``id@root`` of the documents and subjects ecgml writes (a fixed UUID; the ids are extensions).
DOCUMENT_ROOT = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://ecgml/aecg/document"))
SUBJECT_ROOT = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://ecgml/aecg/subject"))
ACT_CODES = "2.16.840.1.113883.5.4"  # HL7 ActCode: RHYTHM, TIME_ABSOLUTE…
MDC = "2.16.840.1.113883.6.24"  # ISO/IEEE 11073 MDC: the lead codes
CPT = "2.16.840.1.113883.6.12"


def write(path: Path, rec: Recording) -> Path:
    """Write ``rec`` to ``path`` (``.xml``); returns ``path``."""
    root = Element("AnnotatedECG", {"xmlns": HL7, "xmlns:xsi": XSI})
    root.attrib.update(classCode="OBS", moodCode="EVN")
    _el(root, "id", root=DOCUMENT_ROOT, extension=rec.record_id)
    _el(root, "code", code="93000", codeSystem=CPT, codeSystemName="CPT-4")
    if rec.time is not None:
        _add_effective_time(root, rec.time, rec.duration_s)
    _add_subject(root, rec.patient_id)
    beat = representative_beat(rec.signal, rec.fs)
    _add_series(root, "REPRESENTATIVE_BEAT", beat, rec, None)
    _add_series(root, "RHYTHM", rec.signal, rec, rec.time)
    indent(root, space="  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tostring(root, encoding="UTF-8", xml_declaration=True))
    return path


def hl7_time(when: datetime) -> str:
    """HL7 TS ``YYYYMMDDHHMMSS[.ffffff][±ZZzz]``."""
    text = when.strftime("%Y%m%d%H%M%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}"
    return text + when.strftime("%z")


def _add_effective_time(parent: Element, start: datetime, seconds: float) -> None:
    effective = _el(parent, "effectiveTime")
    _el(effective, "low", value=hl7_time(start), inclusive="true")
    _el(effective, "high", value=hl7_time(start + timedelta(seconds=seconds)), inclusive="false")


def _add_subject(root: Element, patient_id: str | None) -> None:
    event = _el(_el(root, "componentOf"), "timepointEvent")
    assignment = _el(_el(event, "componentOf"), "subjectAssignment")
    subject = _el(_el(assignment, "subject"), "trialSubject")
    if patient_id:
        _el(subject, "id", root=SUBJECT_ROOT, extension=patient_id)
    else:
        _el(subject, "id", nullFlavor="NI")
    trial = _el(_el(assignment, "componentOf"), "clinicalTrial")
    _el(trial, "id", root=DOCUMENT_ROOT, extension="ecgml-synthetic")


def _add_series(
    root: Element, kind: str, signal: np.ndarray, rec: Recording, start: datetime | None
) -> None:
    series = _el(_el(root, "component"), "series")
    _el(series, "code", code=kind, codeSystem=ACT_CODES)
    if start is not None:
        _add_effective_time(series, start, signal.shape[1] / rec.fs)
    sequences = _el(_el(series, "component"), "sequenceSet")
    _add_time_sequence(sequences, rec.fs, start)
    for lead, samples in zip(rec.leads, signal, strict=True):
        _add_lead_sequence(sequences, lead, samples)


def _add_time_sequence(sequences: Element, fs: float, start: datetime | None) -> None:
    sequence = _el(_el(sequences, "component"), "sequence")
    step = f"{1.0 / fs:.12g}"
    if start is None:
        _el(sequence, "code", code="TIME_RELATIVE", codeSystem=ACT_CODES)
        value = _el(sequence, "value", **{"xsi:type": "GLIST_PQ"})
        _el(value, "head", value="0", unit="s")
    else:
        _el(sequence, "code", code="TIME_ABSOLUTE", codeSystem=ACT_CODES)
        value = _el(sequence, "value", **{"xsi:type": "GLIST_TS"})
        _el(value, "head", value=hl7_time(start))
    _el(value, "increment", value=step, unit="s")


def _add_lead_sequence(sequences: Element, lead: str, samples_mv: np.ndarray) -> None:
    sequence = _el(_el(sequences, "component"), "sequence")
    _el(sequence, "code", code=f"MDC_ECG_LEAD_{lead.upper()}", codeSystem=MDC)
    value = _el(sequence, "value", **{"xsi:type": "SLIST_PQ"})
    _el(value, "origin", value="0", unit="uV")
    _el(value, "scale", value=f"{MICROVOLTS_PER_DIGIT:g}", unit="uV")
    digits = np.round(samples_mv * 1000.0 / MICROVOLTS_PER_DIGIT).astype(np.int64)
    _el(value, "digits").text = " ".join(map(str, digits.tolist()))


def _el(parent: Element, tag: str, **attributes: str) -> Element:
    """A child element; the root declares the HL7 namespace as the default and ``xsi``, so the
    plain tags written here are HL7's and ``xsi:type`` is the schema-instance type."""
    return SubElement(parent, tag, attributes)
