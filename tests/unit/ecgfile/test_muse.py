"""GE MUSE XML: our writer and reader against known truth, against ecgdatakit's independent
parser, and on bad input (each refused with its reason)."""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import Recording, read_ecg
from ecgml.synth.exports import muse as muse_export
from tests.unit.ecgfile.truth import mutated_xml, refused, synthetic_twelve_lead

LSB_MV = muse_export.MICROVOLTS_PER_BIT / 1000.0
FS = 500.0
WHEN = datetime(2181, 3, 4, 5, 6, 7)


TRUTH = synthetic_twelve_lead()
RECORDING = Recording(
    np.stack([TRUTH[lead] for lead in TWELVE_LEADS]), TWELVE_LEADS, FS, "rec-1", "P0042", WHEN
)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return muse_export.write(tmp_path_factory.mktemp("muse") / "muse_00001.xml", RECORDING)


def _waveform(root: ET.Element, kind: str) -> ET.Element:
    return next(w for w in root.iter("Waveform") if w.findtext("WaveformType") == kind)


def _lead(root: ET.Element, lead: str, kind: str = "Rhythm") -> ET.Element:
    return next(i for i in _waveform(root, kind).iter("LeadData") if i.findtext("LeadID") == lead)


def _set(element: ET.Element, tag: str, text: str) -> None:
    child = element.find(tag)
    assert child is not None, tag
    child.text = text


# --------------------------------------------------------------------------- known truth


def test_the_written_file_reads_back_as_the_twelve_true_leads(written: Path) -> None:
    rec = read_ecg(written)
    assert rec.leads == TWELVE_LEADS  # 8 stored + III, aVR, aVL, aVF derived
    assert rec.fs == FS and rec.signal.shape == (12, 5000)
    assert rec.patient_id == "P0042" and rec.time == WHEN and rec.time.tzinfo is None
    assert rec.record_id == "muse_00001"  # MUSE has no reliable id: the file stem
    for lead in TWELVE_LEADS:
        error = np.abs(rec.lead(lead) - TRUTH[lead]).max()
        limit = LSB_MV / 2 if lead in muse_export.MUSE_LEADS else 2 * LSB_MV
        assert error <= limit + 1e-9, f"{lead}: {error * 1000:.3f} µV"
    assert np.abs(rec.lead("II") - TRUTH["II"]).max() > LSB_MV / 10  # it was quantized


def test_the_file_is_laid_out_as_ge_writes_it(written: Path) -> None:
    head = written.read_bytes()[:200].decode("latin-1")
    assert '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">' in head
    root = ET.parse(written).getroot()
    assert [w.findtext("WaveformType") for w in root.iter("Waveform")] == ["Median", "Rhythm"]
    rhythm = _waveform(root, "Rhythm")
    assert [i.findtext("LeadID") for i in rhythm.iter("LeadData")] == list(muse_export.MUSE_LEADS)
    item = _lead(root, "II")
    assert item.findtext("LeadAmplitudeUnits") == "MICROVOLTS"
    assert item.findtext("LeadAmplitudeUnitsPerBit") == "4.88"
    payload = base64.b64decode(item.findtext("WaveFormData") or "")
    digital = np.frombuffer(payload, "<i2")
    assert np.array_equal(digital, np.round(TRUTH["II"] * 1000 / 4.88))
    assert _lead(root, "II", "Median").findtext("LeadSampleCountTotal") == "500"  # 1 s beat
    names = {e.tag for e in root.iter()}
    assert not names & {"PatientLastName", "PatientFirstName", "DateofBirth", "PatientAge"}


# --------------------------------------------------------------------------- independent parser


def test_ecgdatakit_reads_our_file_and_agrees_with_our_reader(written: Path) -> None:
    from ecgdatakit.parsing.parsers.ge_muse_xml import GEMuseXMLParser

    theirs = GEMuseXMLParser().parse(written)  # any warning (CRC, sizes…) fails the test
    ours = read_ecg(written)
    assert [lead.label for lead in theirs.leads] == list(muse_export.MUSE_LEADS)
    assert {lead.sampling_rate for lead in theirs.leads} == {int(ours.fs)}
    assert theirs.patient.patient_id == ours.patient_id and theirs.recording.date == ours.time
    for lead in theirs.leads:
        physical = lead.to_physical().convert_units("mV").samples
        assert physical.shape == ours.lead(lead.label).shape
        assert np.abs(physical - ours.lead(lead.label)).max() <= LSB_MV, lead.label
    assert [len(beat.samples) for beat in theirs.median_beats] == [500] * 8


def test_where_ecgdatakit_differs_a_lead_without_unit(written: Path, tmp_path: Path) -> None:
    """restecg.dtd requires LeadAmplitudeUnits and gives no default: ecgdatakit keeps such a
    lead in raw counts with a warning (a caller may miss it); we refuse the file, no_units."""
    from ecgdatakit.parsing.parsers.ge_muse_xml import GEMuseXMLParser

    path = mutated_xml(written, tmp_path / "nounit.xml", _remove_units)
    assert refused(path).reason == "no_units"
    with pytest.warns(UserWarning, match="left in raw counts"):
        theirs = GEMuseXMLParser().parse(path)
    assert next(lead for lead in theirs.leads if lead.label == "V4").units == ""


# --------------------------------------------------------------------------- which waveform


def test_the_median_beat_before_the_rhythm_is_never_read(written: Path, tmp_path: Path) -> None:
    rec = read_ecg(written)  # Median comes first in the file
    assert rec.signal.shape[1] == 5000

    def rhythm_first(root: ET.Element) -> None:
        median = _waveform(root, "Median")
        root.remove(median)
        root.append(median)

    swapped = read_ecg(mutated_xml(written, tmp_path / "swapped.xml", rhythm_first))
    assert np.array_equal(swapped.signal, rec.signal)

    def unlabelled(root: ET.Element) -> None:
        rhythm = _waveform(root, "Rhythm")
        rhythm.remove(rhythm.find("WaveformType"))  # type: ignore[arg-type]

    assert np.array_equal(
        read_ecg(mutated_xml(written, tmp_path / "u.xml", unlabelled)).signal, rec.signal
    )


def test_a_file_without_a_rhythm_strip_is_the_wrong_format(written: Path, tmp_path: Path) -> None:
    only_median = mutated_xml(
        written, tmp_path / "median.xml", lambda r: r.remove(_waveform(r, "Rhythm"))
    )
    problem = refused(only_median)
    assert problem.reason == "wrong_format" and "only a Median" in problem.detail

    def no_waveform(root: ET.Element) -> None:
        for waveform in list(root.iter("Waveform")):
            root.remove(waveform)

    assert (
        refused(mutated_xml(written, tmp_path / "none.xml", no_waveform)).reason == "wrong_format"
    )


# --------------------------------------------------------------------------- bad input


def _truncate_base64(root: ET.Element) -> None:
    item = _lead(root, "V2")
    text = "".join((item.findtext("WaveFormData") or "").split())
    _set(item, "WaveFormData", text[: len(text) // 2 // 4 * 4])


def _cut_mid_quantum(root: ET.Element) -> None:
    item = _lead(root, "II")
    _set(item, "WaveFormData", "".join((item.findtext("WaveFormData") or "").split())[:-3])


def _shorter_lead(root: ET.Element) -> None:
    item = _lead(root, "V3")
    payload = base64.b64decode(item.findtext("WaveFormData") or "")[:8000]
    _set(item, "WaveFormData", base64.b64encode(payload).decode())
    _set(item, "LeadByteCountTotal", "8000")
    _set(item, "LeadSampleCountTotal", "4000")


def _remove_units(root: ET.Element) -> None:
    item = _lead(root, "V4")
    item.remove(item.find("LeadAmplitudeUnits"))  # type: ignore[arg-type]


def _remove_per_bit(root: ET.Element) -> None:
    item = _lead(root, "I")
    item.remove(item.find("LeadAmplitudeUnitsPerBit"))  # type: ignore[arg-type]


def _all_units(unit: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        for item in _waveform(root, "Rhythm").iter("LeadData"):
            _set(item, "LeadAmplitudeUnits", unit)

    return change


def _rhythm_text(tag: str, text: str) -> Callable[[ET.Element], None]:
    return lambda root: _set(_waveform(root, "Rhythm"), tag, text)


def _lead_text(lead: str, tag: str, text: str) -> Callable[[ET.Element], None]:
    return lambda root: _set(_lead(root, lead), tag, text)


def _duplicate_lead(root: ET.Element) -> None:
    _set(_lead(root, "V5"), "LeadID", "V6")


BAD = {
    "truncated base64": (_truncate_base64, "truncated", "V2"),
    "base64 cut mid-way": (_cut_mid_quantum, "truncated", "lead II"),
    "leads of different lengths": (_shorter_lead, "inconsistent_leads", "V3"),
    "a lead twice": (_duplicate_lead, "inconsistent_leads", "V6"),
    "no amplitude unit": (_remove_units, "no_units", "V4"),
    "not a voltage unit": (_all_units("BANANAS"), "no_units", "BANANAS"),
    "no units per bit": (_remove_per_bit, "no_units", "LeadAmplitudeUnitsPerBit"),
    "µV labelled as mV": (_all_units("MILLIVOLTS"), "implausible_amplitude", "µV stored as mV"),
    "non-numeric SampleBase": (_rhythm_text("SampleBase", "fast"), "unreadable", "SampleBase"),
    "absurd SampleBase": (_rhythm_text("SampleBase", "5e9"), "unreadable", "Hz"),
    "absurd SampleExponent": (_rhythm_text("SampleExponent", "400"), "unreadable", "Exponent"),
    "not base64": (_lead_text("V1", "WaveFormData", "!!!!" * 2500), "unreadable", "base64"),
    "non-numeric count": (_lead_text("V1", "LeadSampleCountTotal", "x"), "unreadable", "V1"),
    "byte count disagrees": (_lead_text("V1", "LeadByteCountTotal", "10002"), "truncated", "V1"),
    "more data than stated": (_lead_text("V1", "LeadSampleCountTotal", "10"), "unreadable", "more"),
    "a 3-byte sample size": (_lead_text("V1", "LeadSampleSize", "3"), "unreadable", "1, 2 or 4"),
    "an unknown lead": (_lead_text("V6", "LeadID", "V10"), "unknown_lead", "V10"),
    "no lead II": (lambda r: _waveform(r, "Rhythm").remove(_lead(r, "II")), "no_lead_ii", "II"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_its_reason(case: str, written: Path, tmp_path: Path) -> None:
    change, reason, mention = BAD[case]
    problem = refused(mutated_xml(written, tmp_path / "bad.xml", change))
    assert (problem.reason, mention in problem.detail) == (reason, True), problem.detail


def test_a_claimed_terasample_lead_is_refused_before_allocation(
    written: Path, tmp_path: Path
) -> None:
    path = mutated_xml(
        written, tmp_path / "huge.xml", _lead_text("II", "LeadSampleCountTotal", "1e12")
    )
    started = time.perf_counter()
    problem = refused(path)
    assert problem.reason == "unreadable" and "1,000,000,000,000 samples" in problem.detail
    assert time.perf_counter() - started < 1.0


def test_a_malformed_acquisition_time_is_no_time(written: Path, tmp_path: Path) -> None:
    def bad_time(root: ET.Element) -> None:
        _set(root.find("TestDemographics"), "AcquisitionDate", "31-12-2181")  # type: ignore[arg-type]

    rec = read_ecg(mutated_xml(written, tmp_path / "t.xml", bad_time))
    assert rec.time is None and rec.patient_id == "P0042"


def test_an_empty_patient_id_is_none_and_a_comma_decimal_scale_is_read(
    written: Path, tmp_path: Path
) -> None:
    def change(root: ET.Element) -> None:
        _set(root.find("PatientDemographics"), "PatientID", "  ")  # type: ignore[arg-type]
        for item in _waveform(root, "Rhythm").iter("LeadData"):
            _set(item, "LeadAmplitudeUnitsPerBit", "4,88")

    rec = read_ecg(mutated_xml(written, tmp_path / "c.xml", change))
    assert rec.patient_id is None
    assert np.abs(rec.lead("II") - TRUTH["II"]).max() <= LSB_MV / 2 + 1e-9


def test_not_xml_and_a_foreign_root_are_the_wrong_format(tmp_path: Path) -> None:
    not_xml = tmp_path / "notxml.xml"
    not_xml.write_bytes(b"\x00\x01MUSE? no\xff")
    assert refused(not_xml).reason == "wrong_format"
    foreign = tmp_path / "foreign.xml"
    foreign.write_text('<?xml version="1.0"?><RestingECGData><Waveform/></RestingECGData>')
    assert refused(foreign).reason == "wrong_format"


def test_an_entity_bomb_is_refused_quickly(tmp_path: Path) -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10)
    ]
    path = tmp_path / "bomb.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE RestingECG [{"".join(entities)}]>\n'
        "<RestingECG><PatientDemographics><PatientID>&lol9;</PatientID>"
        "</PatientDemographics></RestingECG>"
    )
    started = time.perf_counter()
    problem = refused(path)
    assert problem.reason == "unreadable" and "refused unsafe XML" in problem.detail
    assert time.perf_counter() - started < 1.0


def test_an_external_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        "<RestingECG><PatientDemographics><PatientID>&x;</PatientID></PatientDemographics>"
        "</RestingECG>"
    )
    problem = refused(path)
    assert problem.reason == "unreadable" and "refused unsafe XML" in problem.detail
    assert "TOP-SECRET" not in str(problem) and "TOP-SECRET" not in repr(problem.args)
