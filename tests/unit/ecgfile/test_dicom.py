"""The DICOM waveform reader against known truth: ecgml's own export read back, pydicom's bundled
Mortara ECG against a reference decoded here from its raw bytes, and every bad input refused
with its reason."""

from __future__ import annotations

import shutil
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import EcgFileProblem, Recording, build_recording, read_ecg
from ecgml.ecgfile.dicom import acquisition_time, channel_lead
from ecgml.synth.exports import dicom as dicom_export
from tests.unit.ecgfile.truth import refused, synthetic_channels

FS = 500.0
LSB_MV = dicom_export.LSB_UV / 1000.0
UID = "1.2.826.0.1.3680043.8.498.424242"
WHEN = datetime(2021, 3, 4, 5, 6, 7, 250000, tzinfo=timezone(timedelta(hours=1)))
EIGHT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


@pytest.fixture(scope="module")
def twelve() -> Recording:
    return build_recording(synthetic_channels(TWELVE_LEADS), FS, UID, "P0042", WHEN)


@pytest.fixture()
def written(tmp_path: Path, twelve: Recording) -> Path:
    return dicom_export.write(tmp_path / "ecg.dcm", twelve)


def problem(path: Path) -> EcgFileProblem:
    found = refused(path)
    return found


def edited(path: Path, edit: object) -> Path:
    """``path`` rewritten after ``edit(dataset)``."""
    ds = pydicom.dcmread(path)
    edit(ds)  # type: ignore[operator]
    ds.save_as(path)
    return path


def rhythm(ds: Dataset) -> Dataset:
    return next(g for g in ds.WaveformSequence if g.MultiplexGroupLabel == "RHYTHM")


# --- known truth: ecgml's export read back -------------------------------------------------


def test_twelve_leads_read_back_within_one_lsb(written: Path, twelve: Recording) -> None:
    rec = read_ecg(written)
    assert rec.leads == TWELVE_LEADS
    assert rec.fs == FS
    assert rec.record_id == UID
    assert rec.patient_id == "P0042"
    assert rec.time == WHEN and rec.time.utcoffset() == timedelta(hours=1)
    assert rec.signal.shape == twelve.signal.shape
    error = np.abs(rec.signal - twelve.signal)
    assert error.max() <= LSB_MV / 2 + 1e-12
    assert error.max() > 0  # quantized: the test compares values, not the same array


def test_the_export_puts_a_median_beat_before_the_rhythm(written: Path) -> None:
    ds = pydicom.dcmread(written)
    labels = [g.MultiplexGroupLabel for g in ds.WaveformSequence]
    assert labels == ["MEDIAN BEAT", "RHYTHM"]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.2"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert str(ds.PatientName) == "" and ds.PatientBirthDate == ""
    codes = [c.ChannelSourceSequence[0].CodeValue for c in rhythm(ds).ChannelDefinitionSequence]
    assert codes == [
        "2:1",
        "2:2",
        "2:61",
        "2:62",
        "2:63",
        "2:64",
        "2:3",
        "2:4",
        "2:5",
        "2:6",
        "2:7",
        "2:8",
    ]


def test_eight_leads_read_back_and_the_limb_leads_are_derived(tmp_path: Path) -> None:
    channels = synthetic_channels(EIGHT)
    signal = np.stack([values for _, values in channels])
    naive = datetime(2020, 1, 2, 3, 4, 5)
    stored = Recording(signal, EIGHT, FS, "R-8", "P7", naive)
    rec = read_ecg(dicom_export.write(tmp_path / "eight.dcm", stored))
    assert rec.leads == TWELVE_LEADS
    assert rec.time == naive and rec.time.tzinfo is None
    assert rec.record_id == dicom_export.instance_uid("R-8")  # not a UID: derived, stable
    for k, lead in enumerate(EIGHT):
        assert np.abs(rec.lead(lead) - signal[k]).max() <= LSB_MV / 2 + 1e-12
    one, two = signal[0], signal[1]
    assert np.abs(rec.lead("III") - (two - one)).max() <= LSB_MV + 1e-12
    assert np.abs(rec.lead("aVR") + (one + two) / 2).max() <= LSB_MV + 1e-12


# --- a third party's file: pydicom's Mortara ELI 250 export --------------------------------


def test_pydicoms_mortara_ecg_matches_its_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "waveform_ecg.dcm"
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), path)
    rec = read_ecg(path)
    ds = pydicom.dcmread(path)
    group = ds.WaveformSequence[0]  # 'RHYTHM', 10 000 samples; group 1 is a 1.2 s median beat
    assert group.MultiplexGroupLabel == "RHYTHM"
    n, c = int(group.NumberOfWaveformSamples), int(group.NumberOfWaveformChannels)
    raw = np.frombuffer(group.WaveformData, dtype="<i2", count=n * c).reshape(n, c)
    reference = np.empty((c, n))
    for k, channel in enumerate(group.ChannelDefinitionSequence):
        unit = channel.ChannelSensitivityUnitsSequence[0].CodeValue
        assert unit == "uV"
        scale = float(channel.ChannelSensitivity) * float(
            channel.ChannelSensitivityCorrectionFactor
        )
        reference[k] = (raw[:, k] * scale + float(channel.ChannelBaseline)) / 1000.0
    assert rec.leads == TWELVE_LEADS  # the file's order: I, II, III, aVR, aVL, aVF, V1…V6
    assert rec.fs == 1000.0 and rec.signal.shape == (12, 10_000)
    assert np.abs(rec.signal - reference).max() <= 1.25e-3  # 1 LSB: 1.25 µV
    assert rec.patient_id == "642341"
    assert rec.time == datetime(2013, 1, 25, 10, 59, 19)
    assert rec.record_id == "1.3.6.1.4.1.20029.40.20130125105919.5407.1.1"
    assert 0.3 < np.ptp(rec.lead("II")) < 5.0  # millivolts


def test_baseline_and_correction_factor_are_applied(written: Path, twelve: Recording) -> None:
    def rescale(ds: Dataset) -> None:
        for channel in rhythm(ds).ChannelDefinitionSequence:
            channel.ChannelSensitivityCorrectionFactor = "0.5"
            channel.ChannelBaseline = "100"  # µV, the sensitivity's unit

    rec = read_ecg(edited(written, rescale))
    expected = twelve.signal / 2 + 0.1
    assert np.abs(rec.signal - expected).max() <= LSB_MV / 2 + 1e-12


def test_empty_correction_and_baseline_count_as_1_and_0(written: Path, twelve: Recording) -> None:
    def empty(ds: Dataset) -> None:
        for channel in rhythm(ds).ChannelDefinitionSequence:
            channel.ChannelSensitivityCorrectionFactor = ""
            channel.ChannelBaseline = ""

    rec = read_ecg(edited(written, empty))
    assert np.abs(rec.signal - twelve.signal).max() <= LSB_MV / 2 + 1e-12


# --- multiplex group choice ----------------------------------------------------------------


def test_a_median_group_longer_than_the_rhythm_is_still_passed_over(written: Path) -> None:
    def longer_median(ds: Dataset) -> None:
        median, main = ds.WaveformSequence
        median.NumberOfWaveformSamples = int(main.NumberOfWaveformSamples) * 2
        median.WaveformData = bytes(main.WaveformData) * 2

    rec = read_ecg(edited(written, longer_median))
    assert rec.signal.shape == (12, 5000)


def test_without_labels_the_longest_group_is_the_rhythm(written: Path, twelve: Recording) -> None:
    def unlabel(ds: Dataset) -> None:
        for group in ds.WaveformSequence:
            del group.MultiplexGroupLabel

    rec = read_ecg(edited(written, unlabel))
    assert np.abs(rec.signal - twelve.signal).max() <= LSB_MV / 2 + 1e-12


def test_only_a_median_beat_is_wrong_format(written: Path) -> None:
    def drop_rhythm(ds: Dataset) -> None:
        del ds.WaveformSequence[1]

    assert problem(edited(written, drop_rhythm)).reason == "wrong_format"


# --- leads, units, times -------------------------------------------------------------------


def source(code: str | None, meaning: str | None) -> Dataset:
    item = Dataset()
    if code is not None:
        item.CodeValue = code
    if meaning is not None:
        item.CodeMeaning = meaning
    channel = Dataset()
    channel.ChannelSourceSequence = [item]
    return channel


@pytest.mark.parametrize(
    ("code", "meaning", "lead"),
    [
        ("2:1", "Lead I", "I"),
        ("2:61", None, "III"),
        ("2:64", "aVF, augmented voltage, foot", "aVF"),
        ("2:8", "Lead V6", "V6"),
        ("5.6.3-9-1", "Lead I (Einthoven)", "I"),
        ("5.6.3-9-62", "Lead aVR", "aVR"),
        ("5.6.3-9-3", None, "V1"),
        ("2:112", "Derived Lead aVR", "aVR"),
        (None, "Lead II", "II"),
        ("vendor-7", "aVL, augmented voltage, left", "aVL"),
    ],
)
def test_leads_by_cid_3001_code_or_meaning(
    code: str | None, meaning: str | None, lead: str
) -> None:
    assert channel_lead(source(code, meaning), "x") == lead


@pytest.mark.parametrize(
    ("code", "meaning"),
    [("2:75", "Auxiliary unipolar lead 1"), ("2:65", "−aVR"), (None, None)],
)
def test_a_channel_that_is_no_standard_lead_is_unknown(
    code: str | None, meaning: str | None
) -> None:
    with pytest.raises(EcgFileProblem) as caught:
        channel_lead(source(code, meaning), "x")
    assert caught.value.reason == "unknown_lead"


def times(**values: str) -> Dataset:
    ds = Dataset()
    with warnings.catch_warnings():  # pydicom warns on setting an invalid DT, as on reading it
        warnings.simplefilter("ignore", UserWarning)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"AcquisitionDateTime": "20210304050607.25+0100"},
            datetime(2021, 3, 4, 5, 6, 7, 250000, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            {
                "AcquisitionDateTime": "20210304050607",
                "AcquisitionDate": "19990101",
                "AcquisitionTime": "000000",
            },
            datetime(2021, 3, 4, 5, 6, 7),
        ),
        (
            {
                "AcquisitionDate": "20210304",
                "AcquisitionTime": "0506",
                "ContentDate": "19990101",
                "ContentTime": "000000",
            },
            datetime(2021, 3, 4, 5, 6),
        ),
        (
            {"ContentDate": "20210304", "ContentTime": "050607.5"},
            datetime(2021, 3, 4, 5, 6, 7, 500000),
        ),
        (
            {"ContentDate": "20210304", "ContentTime": "050607", "TimezoneOffsetFromUTC": "-0500"},
            datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone(-timedelta(hours=5))),
        ),
        ({"AcquisitionDateTime": "20211340", "ContentDate": "20210304"}, None),
        ({}, None),
    ],
)
def test_acquisition_time(values: dict[str, str], expected: datetime | None) -> None:
    assert acquisition_time(times(**values)) == expected


# --- bad input, each with its reason -------------------------------------------------------


def test_random_bytes_are_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert problem(path).reason == "wrong_format"


def test_an_image_is_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), path)
    found = problem(path)
    assert found.reason == "wrong_format" and "CT Image Storage" in found.detail


@pytest.mark.parametrize("keep", [0.97, 0.5, 0.01])
def test_a_cut_file_is_truncated(written: Path, keep: float) -> None:
    data = written.read_bytes()
    written.write_bytes(data[: int(len(data) * keep)])
    assert problem(written).reason == "truncated"


def test_a_header_claiming_more_samples_than_the_data_is_truncated(written: Path) -> None:
    def claim_more(ds: Dataset) -> None:
        rhythm(ds).NumberOfWaveformSamples = 6000

    found = problem(edited(written, claim_more))
    assert found.reason == "truncated" and "6,000 samples" in found.detail


def test_an_absurd_sample_count_is_refused_before_reading(written: Path) -> None:
    def absurd(ds: Dataset) -> None:
        rhythm(ds).NumberOfWaveformSamples = 2**32 - 1

    found = problem(edited(written, absurd))
    assert found.reason == "unreadable" and "more than" in found.detail


@pytest.mark.parametrize("element", ["ChannelSensitivityUnitsSequence", "ChannelSensitivity"])
def test_a_channel_without_units_is_no_units(written: Path, element: str) -> None:
    def drop(ds: Dataset) -> None:
        delattr(rhythm(ds).ChannelDefinitionSequence[4], element)

    assert problem(edited(written, drop)).reason == "no_units"


def test_microvolts_labelled_as_millivolts_are_implausible(written: Path) -> None:
    def as_mv(ds: Dataset) -> None:
        for channel in rhythm(ds).ChannelDefinitionSequence:
            channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"

    assert problem(edited(written, as_mv)).reason == "implausible_amplitude"


def test_a_volume_unit_is_no_units(written: Path) -> None:
    def ohm(ds: Dataset) -> None:
        rhythm(ds).ChannelDefinitionSequence[0].ChannelSensitivityUnitsSequence[0].CodeValue = "Ohm"

    assert problem(edited(written, ohm)).reason == "no_units"


def test_a_respiration_channel_is_an_unknown_lead(written: Path) -> None:
    def respiration(ds: Dataset) -> None:
        item = rhythm(ds).ChannelDefinitionSequence[7].ChannelSourceSequence[0]
        item.CodeValue, item.CodingSchemeDesignator = "2:350", "MDC"
        item.CodeMeaning = "Respiration"

    found = problem(edited(written, respiration))
    assert found.reason == "unknown_lead" and "Respiration" in found.detail


def test_a_lead_twice_is_inconsistent(written: Path) -> None:
    def twice(ds: Dataset) -> None:
        rhythm(ds).ChannelDefinitionSequence[2].ChannelSourceSequence[0].CodeValue = "2:2"

    assert problem(edited(written, twice)).reason == "inconsistent_leads"


def test_fewer_channel_definitions_than_channels_is_inconsistent(written: Path) -> None:
    def fewer(ds: Dataset) -> None:
        del rhythm(ds).ChannelDefinitionSequence[11]

    assert problem(edited(written, fewer)).reason == "inconsistent_leads"


def test_a_short_rhythm_is_too_short(tmp_path: Path) -> None:
    rec = build_recording(synthetic_channels(TWELVE_LEADS, int(3.0 * FS), FS), FS, UID)
    cut = Recording(rec.signal[:, : int(1.5 * FS)], rec.leads, FS, UID)
    assert problem(dicom_export.write(tmp_path / "short.dcm", cut)).reason == "too_short"


def test_mu_law_samples_are_refused(written: Path) -> None:
    def mu_law(ds: Dataset) -> None:
        group = rhythm(ds)
        group.WaveformBitsAllocated = 8
        group.WaveformSampleInterpretation = "MB"

    assert problem(edited(written, mu_law)).reason == "unreadable"


def test_the_writer_refuses_what_int16_cannot_hold(tmp_path: Path, twelve: Recording) -> None:
    loud = Recording(twelve.signal * 100, twelve.leads, FS, UID)
    with pytest.raises(ValueError, match="int16"):
        dicom_export.write(tmp_path / "loud.dcm", loud)
