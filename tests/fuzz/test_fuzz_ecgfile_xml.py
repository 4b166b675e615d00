"""Fuzz: GE MUSE XML and HL7 aECG documents, written by ecgml's writers and then damaged.

Element text replaced by random text, numbers or absurd counts, elements removed or
duplicated, base64 and digits truncated or garbled, attributes emptied or replaced, the file
cut short: ``read_ecg`` either returns a valid Recording (finite mV samples, a plausible rate,
canonical leads, at least 2 s) or raises :class:`EcgFileProblem` with one of the closed
reasons and a one-line detail naming the file. The readers themselves
(:func:`ecgml.ecgfile.xml.read`) let no other exception out (``read_ecg`` would hide it as
``unreadable``), and no read takes long or allocates much (a ``LeadSampleCountTotal`` of
10^12 is refused by its size check, not allocated).
"""

from __future__ import annotations

import copy
import functools
import tempfile
import time
import tracemalloc
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import FILE_REASONS, EcgFileProblem, Recording, build_recording, read_ecg
from ecgml.ecgfile import xml as xml_reader
from ecgml.synth.exports import aecg as aecg_export
from ecgml.synth.exports import muse as muse_export
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ
from tests.fuzz.strategies import NUMBER_TEXT

ET.register_namespace("", aecg_export.HL7)  # re-serialized aECG keeps HL7 as default namespace
#: Most memory (bytes, numpy buffers included) one read of these ~100 kB documents may take.
PEAK_BYTES = 64 << 20
#: Longest one read may take (s), however damaged the document.
SLOWEST_S = 5.0
HUGE_COUNTS = ["1000000000000", "1e12", "-1", "9" * 30, "1e309", "nan", "0", "2.5", "  5000  "]
ACTIONS = ("text", "remove", "duplicate", "truncate", "garble", "attribute")
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
PAYLOAD = st.one_of(NUMBER_TEXT, XML_TEXT, st.sampled_from(HUGE_COUNTS), st.just("AAAA" * 300))
MUTATION = st.tuples(st.sampled_from(ACTIONS), st.integers(0, 10**6), PAYLOAD, st.floats(0.0, 1.0))


@functools.cache
def documents() -> dict[str, bytes]:
    """One small valid document per format (3 s, 250 Hz, 12 leads) as the writers write it."""
    t = np.arange(750) / 250.0
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0004)
    channels = [("I", 0.6 * beat), ("II", beat + 0.05 * np.sin(t))]
    channels += [(f"V{k}", (k - 3) * 0.4 * beat + 0.02 * np.cos(k * t)) for k in range(1, 7)]
    rec = build_recording(channels, 250.0, "fuzz", "P-fuzz", datetime(2181, 1, 2, 3, 4, 5))
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "muse": muse_export.write(Path(tmp) / "m.xml", rec).read_bytes(),
            "aecg": aecg_export.write(Path(tmp) / "a.xml", rec).read_bytes(),
        }


def mutated(kind: str, mutations: list[tuple[str, int, str, float]]) -> bytes:
    """The ``kind`` document with each ``(action, element index, payload, fraction)`` applied."""
    root = ET.fromstring(documents()[kind])
    for action, index, payload, fraction in mutations:
        parents = {child: parent for parent in root.iter() for child in parent}
        elements = list(root.iter())
        apply(action, elements[index % len(elements)], parents, payload, fraction)
    body = ET.tostring(root, encoding="UTF-8", xml_declaration=False)
    header = muse_export.HEADER if kind == "muse" else b""
    return header.replace(b"ISO-8859-1", b"UTF-8") + body


def apply(
    action: str,
    element: ET.Element,
    parents: dict[ET.Element, ET.Element],
    payload: str,
    fraction: float,
) -> None:
    text = element.text or ""
    parent = parents.get(element)
    if action == "text":
        element.text = payload
    elif action == "truncate":
        element.text = text[: int(len(text) * fraction)]
    elif action == "garble" and text:
        at = int(len(text) * fraction) % len(text)
        element.text = text[:at] + payload[:8] + text[at + len(payload[:8]) :]
    elif action == "attribute" and element.attrib:
        names = sorted(element.attrib)
        element.set(
            names[int(fraction * len(names)) % len(names)], payload if fraction > 0.5 else ""
        )
    elif action == "remove" and parent is not None:
        parent.remove(element)
    elif action == "duplicate" and parent is not None:
        parent.insert(list(parent).index(element) + 1, copy.deepcopy(element))


def check_reads_or_is_refused(path: Path) -> None:
    """The contract of the module docstring, for one file."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        outcome: Recording | EcgFileProblem = xml_reader.read(path)  # nothing else escapes
    except EcgFileProblem as problem:
        outcome = problem
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < SLOWEST_S, f"{elapsed:.1f} s"
    assert peak < PEAK_BYTES, f"{peak:,} bytes"
    if isinstance(outcome, EcgFileProblem):
        assert outcome.reason in FILE_REASONS
        assert outcome.detail.startswith(path.name) and "\n" not in outcome.detail, outcome.detail
        try:
            read_ecg(path)
        except EcgFileProblem as again:
            assert again.reason == outcome.reason
        else:
            raise AssertionError("read_ecg read what the XML reader refused")
        return
    check_recording(outcome)
    assert np.array_equal(read_ecg(path).signal, outcome.signal)


def check_recording(rec: Recording) -> None:
    assert rec.leads == tuple(lead for lead in TWELVE_LEADS if lead in rec.leads)
    assert "II" in rec.leads
    assert rec.signal.dtype == np.float64 and rec.signal.shape[0] == len(rec.leads)
    assert np.isfinite(rec.signal).all()
    assert 50.0 <= rec.fs <= 10_000.0 and rec.duration_s >= 2.0
    assert rec.time is None or isinstance(rec.time, datetime)
    assert rec.patient_id is None or (isinstance(rec.patient_id, str) and rec.patient_id.strip())


@FUZZ
@given(
    kind=st.sampled_from(["muse", "aecg"]),
    mutations=st.lists(MUTATION, min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_a_damaged_document_reads_or_is_refused_with_a_reason(
    kind: str, mutations: list[tuple[str, int, str, float]], cut: float | None
) -> None:
    content = mutated(kind, mutations)
    if cut is not None:
        content = content[: int(len(content) * cut)]
    with case_dir() as case:
        path = case / f"{kind}.xml"
        path.write_bytes(content)
        check_reads_or_is_refused(path)


#: The MUSE fields the reader reads (the sizes first: a claimed 10^12 samples must be refused).
MUSE_FIELDS = (
    "LeadSampleCountTotal",
    "LeadByteCountTotal",
    "LeadSampleSize",
    "SampleBase",
    "SampleExponent",
    "LeadAmplitudeUnitsPerBit",
    "LeadAmplitudeUnits",
    "LeadID",
    "WaveformType",
    "WaveFormData",
    "AcquisitionDate",
    "AcquisitionTime",
    "PatientID",
)
#: The aECG attributes the reader reads: (element local name, attribute).
AECG_ATTRIBUTES = (
    ("scale", "value"),
    ("scale", "unit"),
    ("origin", "value"),
    ("origin", "unit"),
    ("increment", "value"),
    ("increment", "unit"),
    ("head", "value"),
    ("low", "value"),
    ("code", "code"),
    ("id", "root"),
    ("id", "extension"),
)
ANYTHING = st.one_of(
    st.integers(-(10**15), 10**15).map(str), st.sampled_from(HUGE_COUNTS), NUMBER_TEXT, XML_TEXT
)


@FUZZ
@given(field=st.sampled_from(MUSE_FIELDS), value=ANYTHING, which=st.integers(0, 100))
def test_a_muse_field_may_hold_anything(field: str, value: str, which: int) -> None:
    root = ET.fromstring(documents()["muse"])
    holders = [e for e in root.iter() if e.tag == field]
    holders[which % len(holders)].text = value
    with case_dir() as case:
        path = case / "field.xml"
        path.write_bytes(ET.tostring(root, encoding="UTF-8"))
        check_reads_or_is_refused(path)


@FUZZ
@given(target=st.sampled_from(AECG_ATTRIBUTES), value=ANYTHING, which=st.integers(0, 100))
def test_an_aecg_attribute_may_hold_anything(
    target: tuple[str, str], value: str, which: int
) -> None:
    root = ET.fromstring(documents()["aecg"])
    name, attribute = target
    holders = [e for e in root.iter(f"{{{aecg_export.HL7}}}{name}") if attribute in e.attrib]
    holders[which % len(holders)].set(attribute, value)
    with case_dir() as case:
        path = case / "attribute.xml"
        path.write_bytes(ET.tostring(root, encoding="UTF-8"))
        check_reads_or_is_refused(path)


@FUZZ
@given(
    lead=st.integers(0, 11),
    digits=st.lists(st.one_of(st.integers(-(10**20), 10**20).map(str), XML_TEXT), max_size=30),
    increment=st.one_of(NUMBER_TEXT, st.sampled_from(["1e-300", "0.004", "4"])),
)
def test_aecg_digits_and_increments_read_or_are_refused(
    lead: int, digits: list[str], increment: str
) -> None:
    root = ET.fromstring(documents()["aecg"])
    rhythm = list(root.iter(f"{{{aecg_export.HL7}}}series"))[-1]
    sequences = list(rhythm.iter(f"{{{aecg_export.HL7}}}digits"))
    target = sequences[lead % len(sequences)]
    target.text = f"{target.text} {' '.join(digits)}"
    step = next(rhythm.iter(f"{{{aecg_export.HL7}}}increment"))
    step.set("value", increment)
    with case_dir() as case:
        path = case / "digits.xml"
        path.write_bytes(ET.tostring(root, encoding="UTF-8"))
        check_reads_or_is_refused(path)
