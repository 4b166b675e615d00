"""HL7 aECG: our writer and reader against known truth, against ecgdatakit's independent
parser, and on bad input (each refused with its reason)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import Recording, read_ecg
from ecgml.ecgfile import aecg as aecg_reader
from ecgml.ecgfile import recording as recording_module
from ecgml.ecgfile.aecg import count_tokens, parse_hl7_time
from ecgml.synth.exports import aecg as aecg_export
from tests.unit.ecgfile.truth import mutated_xml, refused, synthetic_twelve_lead

LSB_MV = aecg_export.MICROVOLTS_PER_DIGIT / 1000.0
FS = 500.0
WHEN = datetime(2181, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5)))
HL7 = aecg_export.HL7
NS = {"h": HL7}
ET.register_namespace("", HL7)  # our mutated copies keep HL7 as the default namespace


TRUTH = synthetic_twelve_lead()
SIGNAL = np.stack([TRUTH[lead] for lead in TWELVE_LEADS])
RECORDING = Recording(SIGNAL, TWELVE_LEADS, FS, "rec-7", "S-0042", WHEN)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return aecg_export.write(tmp_path_factory.mktemp("aecg") / "aecg_00001.xml", RECORDING)


def _series(root: ET.Element, code: str) -> ET.Element:
    return next(
        s
        for s in root.iterfind("h:component/h:series", NS)
        if s.find("h:code", NS).get("code") == code  # type: ignore[union-attr]
    )


def _sequence(root: ET.Element, code: str, series: str = "RHYTHM") -> ET.Element:
    return next(
        seq
        for seq in _series(root, series).iterfind(".//h:sequence", NS)
        if seq.find("h:code", NS).get("code") == code  # type: ignore[union-attr]
    )


def _value(root: ET.Element, code: str, part: str) -> ET.Element:
    element = _sequence(root, code).find(f"h:value/h:{part}", NS)
    assert element is not None, (code, part)
    return element


# --------------------------------------------------------------------------- known truth


def test_the_written_file_reads_back_as_the_twelve_true_leads(written: Path) -> None:
    rec = read_ecg(written)
    assert rec.leads == TWELVE_LEADS and rec.fs == FS and rec.signal.shape == (12, 5000)
    assert rec.patient_id == "S-0042"
    assert rec.time == WHEN and rec.time is not None and rec.time.utcoffset() == timedelta(hours=-5)
    assert rec.record_id == f"{aecg_export.DOCUMENT_ROOT}^rec-7"
    error = np.abs(rec.signal - SIGNAL).max(axis=1)
    assert (error <= LSB_MV / 2 + 1e-9).all(), dict(zip(TWELVE_LEADS, error * 1000, strict=True))
    assert error.max() > LSB_MV / 10  # it was quantized


def test_a_naive_time_and_no_patient_round_trip(tmp_path: Path) -> None:
    rec = Recording(SIGNAL, TWELVE_LEADS, FS, "r", None, datetime(2181, 1, 2, 3, 4, 5, 250000))
    back = read_ecg(aecg_export.write(tmp_path / "naive.xml", rec))
    assert back.time == rec.time and back.time is not None and back.time.tzinfo is None
    assert back.patient_id is None
    no_time = Recording(SIGNAL, TWELVE_LEADS, FS, "r", "p", None)
    back = read_ecg(aecg_export.write(tmp_path / "no_time.xml", no_time))  # TIME_RELATIVE
    assert back.time is None and back.fs == FS


def test_the_document_is_laid_out_as_hl7_defines_it(written: Path) -> None:
    root = ET.parse(written).getroot()
    assert root.tag == f"{{{HL7}}}AnnotatedECG"
    codes = [s.find("h:code", NS).get("code") for s in root.iterfind("h:component/h:series", NS)]  # type: ignore[union-attr]
    assert codes == ["REPRESENTATIVE_BEAT", "RHYTHM"]
    scale = _value(root, "MDC_ECG_LEAD_AVR", "scale")
    assert (scale.get("value"), scale.get("unit")) == ("5", "uV")
    value = _sequence(root, "MDC_ECG_LEAD_II").find("h:value", NS)
    assert value is not None
    assert value.get("{http://www.w3.org/2001/XMLSchema-instance}type") == "SLIST_PQ"
    digits = np.array((_value(root, "MDC_ECG_LEAD_II", "digits").text or "").split(), dtype=int)
    assert np.array_equal(digits, np.round(TRUTH["II"] * 1000 / 5))
    increment = _value(root, "TIME_ABSOLUTE", "increment")
    assert (increment.get("value"), increment.get("unit")) == ("0.002", "s")
    beat = _sequence(root, "MDC_ECG_LEAD_II", "REPRESENTATIVE_BEAT").find("h:value/h:digits", NS)
    assert beat is not None and len((beat.text or "").split()) == 500  # a 1 s beat
    names = {e.tag.rsplit("}", 1)[-1] for e in root.iter()}
    assert not names & {"name", "birthTime", "administrativeGenderCode", "subjectDemographicPerson"}


# --------------------------------------------------------------------------- independent parser


def test_ecgdatakit_reads_our_file_and_agrees_with_our_reader(written: Path) -> None:
    from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

    theirs = HL7aECGParser().parse(written)  # any warning fails the test
    ours = read_ecg(written)
    assert [lead.label for lead in theirs.leads] == list(TWELVE_LEADS)
    assert {lead.sampling_rate for lead in theirs.leads} == {int(ours.fs)}
    assert theirs.patient.patient_id == ours.patient_id and theirs.recording.date == ours.time
    for lead in theirs.leads:
        physical = lead.to_physical().convert_units("mV").samples
        assert np.abs(physical - ours.lead(lead.label)).max() <= LSB_MV, lead.label
    assert [len(beat.samples) for beat in theirs.median_beats] == [500] * 12


def test_both_parsers_apply_the_origin_in_its_own_unit(written: Path, tmp_path: Path) -> None:
    from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

    def shifted(root: ET.Element) -> None:
        origin = _value(root, "MDC_ECG_LEAD_V2", "origin")
        origin.set("value", "0.25")
        origin.set("unit", "mV")

    path = mutated_xml(written, tmp_path / "origin.xml", shifted)
    ours = read_ecg(path).lead("V2")
    assert np.abs(ours - (TRUTH["V2"] + 0.25)).max() <= LSB_MV / 2 + 1e-9
    theirs = next(lead for lead in HL7aECGParser().parse(path).leads if lead.label == "V2")
    assert np.abs(theirs.to_physical().convert_units("mV").samples - ours).max() <= 1e-9


def test_where_ecgdatakit_differs_a_rate_off_whole_hz(written: Path, tmp_path: Path) -> None:
    """An increment of 0.0033 s is 303.03 Hz: ecgdatakit rounds every rate to whole Hz (and
    warns); the file states the interval, so we keep 303.03 Hz (only a rate within 10 ppm of
    whole Hz, a rounded 1/300 s, is snapped)."""
    from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

    path = mutated_xml(
        written, tmp_path / "rate.xml", _attribute("TIME_ABSOLUTE", "increment", "value", "0.0033")
    )
    assert read_ecg(path).fs == pytest.approx(1 / 0.0033, rel=1e-12)
    with pytest.warns(UserWarning, match="rounded to 303 Hz"):
        assert HL7aECGParser().parse(path).leads[0].sampling_rate == 303


# --------------------------------------------------------------------------- which series


def test_the_representative_beat_before_the_rhythm_is_never_read(
    written: Path, tmp_path: Path
) -> None:
    rec = read_ecg(written)
    assert rec.signal.shape[1] == 5000

    def beat_after(root: ET.Element) -> None:
        component = next(c for c in root.iterfind("h:component", NS))
        root.remove(component)
        root.append(component)

    assert np.array_equal(
        read_ecg(mutated_xml(written, tmp_path / "s.xml", beat_after)).signal, rec.signal
    )


def test_a_document_without_a_rhythm_series_is_the_wrong_format(
    written: Path, tmp_path: Path
) -> None:
    def drop_rhythm(root: ET.Element) -> None:
        components = list(root.iterfind("h:component", NS))
        root.remove(components[-1])

    problem = refused(mutated_xml(written, tmp_path / "beat_only.xml", drop_rhythm))
    assert problem.reason == "wrong_format" and "REPRESENTATIVE_BEAT" in problem.detail


# --------------------------------------------------------------------------- rate and time


@pytest.mark.parametrize(
    ("value", "unit", "fs"),
    [("2", "ms", 500.0), ("0.003333333", "s", 300.0), ("4000", "us", 250.0)],
)
def test_the_rate_comes_from_the_time_increment(
    written: Path, tmp_path: Path, value: str, unit: str, fs: float
) -> None:
    def increment(root: ET.Element) -> None:
        element = _value(root, "TIME_ABSOLUTE", "increment")
        element.set("value", value)
        element.set("unit", unit)

    assert read_ecg(mutated_xml(written, tmp_path / "rate.xml", increment)).fs == fs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20210304050607", datetime(2021, 3, 4, 5, 6, 7)),
        ("202103040506", datetime(2021, 3, 4, 5, 6)),
        (
            "20210304050607.5+0130",
            datetime(2021, 3, 4, 5, 6, 7, 500000, timezone(timedelta(minutes=90))),
        ),
        ("20210304", None),  # no time of day: nothing is made up
        ("2021-03-04T05:06:07", None),
        ("20211304050607", None),
        ("20210304050607+9900", None),
    ],
)
def test_hl7_timestamps(text: str, expected: datetime | None) -> None:
    assert parse_hl7_time(text) == expected


def test_a_malformed_effective_time_is_no_time_not_a_failure(written: Path, tmp_path: Path) -> None:
    def bad_time(root: ET.Element) -> None:
        low = root.find("h:effectiveTime/h:low", NS)
        assert low is not None
        low.set("value", "yesterday")

    rec = read_ecg(mutated_xml(written, tmp_path / "t.xml", bad_time))
    assert rec.time is None and rec.patient_id == "S-0042"


def test_the_subject_root_is_the_patient_id_without_an_extension(
    written: Path, tmp_path: Path
) -> None:
    def root_only(root: ET.Element) -> None:
        subject = next(root.iterfind(".//h:trialSubject/h:id", NS))
        subject.attrib.pop("extension")
        subject.set("root", "1.2.3.4")

    assert read_ecg(mutated_xml(written, tmp_path / "r.xml", root_only)).patient_id == "1.2.3.4"


def test_a_document_without_namespace_reads_the_same(written: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.xml"
    plain.write_text(written.read_text().replace(' xmlns="urn:hl7-org:v3"', "", 1))
    assert np.array_equal(read_ecg(plain).signal, read_ecg(written).signal)


# --------------------------------------------------------------------------- bad input


def _digits(code: str, text: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        _value(root, code, "digits").text = text

    return change


def _drop_last_digit(root: ET.Element) -> None:
    digits = _value(root, "MDC_ECG_LEAD_V3", "digits")
    digits.text = (digits.text or "").rsplit(" ", 1)[0]


def _attribute(code: str, part: str, name: str, value: str | None) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        element = _value(root, code, part)
        if value is None:
            element.attrib.pop(name, None)
        else:
            element.set(name, value)

    return change


def _all_scales(unit: str) -> Callable[[ET.Element], None]:
    def change(root: ET.Element) -> None:
        for sequence in _series(root, "RHYTHM").iterfind(".//h:sequence", NS):
            scale = sequence.find("h:value/h:scale", NS)
            if scale is not None:
                scale.set("unit", unit)

    return change


def _rename(code: str, new: str) -> Callable[[ET.Element], None]:
    return lambda root: _sequence(root, code).find("h:code", NS).set("code", new)  # type: ignore[union-attr]


def _remove_time_sequence(root: ET.Element) -> None:
    sequence_set = _series(root, "RHYTHM").find("h:component/h:sequenceSet", NS)
    assert sequence_set is not None
    sequence_set.remove(sequence_set.find("h:component", NS))  # type: ignore[arg-type]


II, V1 = "MDC_ECG_LEAD_II", "MDC_ECG_LEAD_V1"


def _unitless_origin(root: ET.Element) -> None:
    _attribute(II, "origin", "value", "100")(root)  # a zero origin needs no unit; this does
    _attribute(II, "origin", "unit", None)(root)


BAD = {
    "digits count differs": (_drop_last_digit, "inconsistent_leads", "V3"),
    "a decimal digit": (_digits(V1, "1 2 3.5 4 " * 1250), "unreadable", "whole numbers"),
    "a word among the digits": (_digits(V1, "1 2 x 4 " * 1250), "unreadable", "whole numbers"),
    "a lone sign": (_digits(V1, "1 2 - 4 " * 1250), "unreadable", "whole numbers"),
    "a 25-digit number": (_digits(V1, "1 " * 4999 + "9" * 25), "unreadable", "whole numbers"),
    "no digits": (_digits(V1, "  "), "truncated", "no digits"),
    "no scale unit": (_attribute(II, "scale", "unit", None), "no_units", "states no unit"),
    "no scale value": (_attribute(II, "scale", "value", None), "no_units", "no scale"),
    "a non-numeric scale": (_attribute(II, "scale", "value", "big"), "unreadable", "big"),
    "a zero scale": (_attribute(II, "scale", "value", "0"), "unreadable", "no scale"),
    "an origin without unit": (_unitless_origin, "no_units", "origin"),
    "a scale in seconds": (_attribute(II, "scale", "unit", "s"), "no_units", "'s'"),
    "µV labelled as mV": (_all_scales("mV"), "implausible_amplitude", "µV stored as mV"),
    "no time sequence": (_remove_time_sequence, "unreadable", "time increment"),
    "a time increment in beats": (
        _attribute("TIME_ABSOLUTE", "increment", "unit", "beat"),
        "unreadable",
        "not s, ms",
    ),
    "a negative time increment": (
        _attribute("TIME_ABSOLUTE", "increment", "value", "-0.002"),
        "unreadable",
        "interval",
    ),
    "an unknown lead": (_rename("MDC_ECG_LEAD_V6", "MDC_ECG_LEAD_V10"), "unknown_lead", "V10"),
    "a lead twice": (_rename("MDC_ECG_LEAD_V6", "MDC_ECG_LEAD_V5"), "inconsistent_leads", "V5"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_its_reason(case: str, written: Path, tmp_path: Path) -> None:
    change, reason, mention = BAD[case]
    problem = refused(mutated_xml(written, tmp_path / "bad.xml", change))
    assert (problem.reason, mention in problem.detail) == (reason, True), problem.detail


def test_too_many_digits_are_refused_before_they_are_parsed(
    written: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording_module, "MAX_SAMPLES", 12 * 4000)
    problem = refused(written)
    assert problem.reason == "unreadable" and "5,000 samples × 12 leads" in problem.detail


@pytest.mark.parametrize("chunk", [3, 1 << 22])
def test_digits_are_counted_without_splitting(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aecg_reader, "_CHUNK", chunk)  # token boundaries across chunks too
    texts = ["", "  ", "1", " 1 -2\n\t3 ", "1  2", "12 345 6789 0", "abcdefgh", "  a  b  "]
    assert [count_tokens(t) for t in texts] == [len(t.split()) for t in texts]


def test_not_xml_and_a_foreign_root_are_the_wrong_format(tmp_path: Path) -> None:
    not_xml = tmp_path / "notxml.xml"
    not_xml.write_text("AnnotatedECG, but as CSV\n1,2,3\n")
    assert refused(not_xml).reason == "wrong_format"
    foreign = tmp_path / "foreign.xml"
    foreign.write_text(f'<?xml version="1.0"?><ClinicalDocument xmlns="{HL7}"/>')
    assert refused(foreign).reason == "wrong_format"


def test_an_entity_bomb_is_refused_quickly(tmp_path: Path) -> None:
    entities = ['<!ENTITY a0 "ha">'] + [
        f'<!ENTITY a{k} "{f"&a{k - 1};" * 10}">' for k in range(1, 10)
    ]
    path = tmp_path / "bomb.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE AnnotatedECG [{"".join(entities)}]>\n'
        f'<AnnotatedECG xmlns="{HL7}"><id root="&a9;"/></AnnotatedECG>'
    )
    started = time.perf_counter()
    problem = refused(path)
    assert problem.reason == "unreadable" and "refused unsafe XML" in problem.detail
    assert time.perf_counter() - started < 1.0


def test_an_external_entity_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-19c2")
    path = tmp_path / "xxe.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE AnnotatedECG [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        f'<AnnotatedECG xmlns="{HL7}"><id root="x" extension="&x;"/></AnnotatedECG>'
    )
    problem = refused(path)
    assert problem.reason == "unreadable" and "refused unsafe XML" in problem.detail
    assert "TOP-SECRET" not in str(problem) and "TOP-SECRET" not in repr(problem.args)
