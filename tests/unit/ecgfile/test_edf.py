"""The EDF/EDF+/BDF reader against known truth: ecgml's EDF+ export read back, pyedflib's bundled
test_generator.edf against its digital samples scaled by a header parsed here, and every bad
input refused with its reason."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyedflib
import pytest
from pyedflib._extensions._pyedflib import get_number_of_open_files

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import EcgFileProblem, Recording, build_recording, read_ecg
from ecgml.ecgfile.edf import patient_id, read_channels
from ecgml.synth.exports import edf as edf_export
from tests.unit.ecgfile.truth import refused, synthetic_channels

FS = 500.0
WHEN = datetime(2021, 3, 4, 5, 6, 7)
EIGHT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
GENERATOR = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
SIGNAL_FIELDS = {
    "label": (0, 16),
    "dimension": (96, 8),
    "physical_min": (104, 8),
    "physical_max": (112, 8),
    "digital_min": (120, 8),
    "digital_max": (128, 8),
    "samples_per_record": (216, 8),
}  # fmt: skip  (offset × n_signals, width)


def lsb_mv(samples_mv: np.ndarray) -> float:
    """The writer's step: its physical range (whole µV around the data) over 65534 steps."""
    low, high = np.floor(samples_mv.min() * 1000), np.ceil(samples_mv.max() * 1000)
    return float(high - low) / 65534 / 1000


@pytest.fixture(scope="module")
def twelve() -> Recording:
    return build_recording(synthetic_channels(TWELVE_LEADS), FS, "ignored", "MCH-0042", WHEN)


@pytest.fixture()
def written(tmp_path: Path, twelve: Recording) -> Path:
    return edf_export.write(tmp_path / "ecg.edf", twelve)


def problem(path: Path) -> EcgFileProblem:
    found = refused(path)
    assert get_number_of_open_files() == 0  # the reader is closed on every path
    return found


def n_signals(data: bytes) -> int:
    return int(data[252:256].decode())


def patched(path: Path, field: str, k: int, text: str) -> Path:
    """``path`` with signal ``k``'s header field ``field`` set to ``text``."""
    data = bytearray(path.read_bytes())
    offset, width = SIGNAL_FIELDS[field]
    start = 256 + offset * n_signals(data) + k * width
    data[start : start + width] = text.ljust(width).encode("latin-1")
    path.write_bytes(bytes(data))
    return path


def patched_fixed(path: Path, start: int, width: int, text: str) -> Path:
    data = bytearray(path.read_bytes())
    data[start : start + width] = text.ljust(width).encode("latin-1")
    path.write_bytes(bytes(data))
    return path


# --- known truth: ecgml's export read back -------------------------------------------------


def test_twelve_leads_read_back_within_one_lsb(written: Path, twelve: Recording) -> None:
    rec = read_ecg(written)
    assert rec.leads == TWELVE_LEADS
    assert rec.fs == FS
    assert rec.record_id == "ecg"
    assert rec.patient_id == "MCH-0042"
    assert rec.time == WHEN
    assert rec.signal.shape == twelve.signal.shape
    for k in range(12):
        error = np.abs(rec.signal[k] - twelve.signal[k]).max()
        assert 0 < error <= lsb_mv(twelve.signal[k]) + 1e-12


def test_the_export_is_edf_plus_in_microvolts(written: Path) -> None:
    with pyedflib.EdfReader(str(written)) as reader:
        assert reader.filetype == pyedflib.FILETYPE_EDFPLUS
        assert reader.getSignalLabels() == list(TWELVE_LEADS)
        assert {reader.getPhysicalDimension(k) for k in range(12)} == {"uV"}
        assert reader.getDigitalMaximum(0) == 32767 and reader.getDigitalMinimum(0) == -32767
    # EDF+ patient field: code, sex, birth date, name; all but the code unknown ("X")
    assert written.read_bytes()[8:88].decode().strip() == "MCH-0042 X X X"


def test_eight_leads_read_back_and_the_limb_leads_are_derived(tmp_path: Path) -> None:
    channels = synthetic_channels(EIGHT)
    signal = np.stack([values for _, values in channels])
    stored = Recording(signal, EIGHT, FS, "x", None, WHEN)
    rec = read_ecg(edf_export.write(tmp_path / "eight.edf", stored))
    assert rec.leads == TWELVE_LEADS and rec.patient_id is None
    for k, lead in enumerate(EIGHT):
        assert np.abs(rec.lead(lead) - signal[k]).max() <= lsb_mv(signal[k]) + 1e-12
    expected = signal[1] - signal[0]
    assert np.abs(rec.lead("III") - expected).max() <= lsb_mv(signal[0]) + lsb_mv(signal[1])


@pytest.mark.parametrize("n", [5001, 4999])
def test_a_length_of_no_whole_second_is_kept(tmp_path: Path, n: int) -> None:
    rec = build_recording(synthetic_channels(TWELVE_LEADS, n), FS, "x", None, WHEN)
    back = read_ecg(edf_export.write(tmp_path / "odd.edf", rec))
    assert back.signal.shape == (12, n) and back.fs == FS


def test_a_bdf_file_reads(tmp_path: Path, twelve: Recording) -> None:
    path = tmp_path / "ecg.bdf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        writer.setSignalHeaders(
            [
                {
                    "label": lead,
                    "dimension": "mV",
                    "sample_frequency": FS,
                    "physical_min": -5.0,
                    "physical_max": 5.0,
                    "digital_min": -8388607,
                    "digital_max": 8388607,
                    "transducer": "",
                    "prefilter": "",
                }
                for lead in ("ECG I", "ECG II")
            ]
        )
        writer.setStartdatetime(WHEN)
        writer.writeSamples([np.ascontiguousarray(row) for row in twelve.signal[:2]])
    finally:
        writer.close()
    rec = read_ecg(path)
    assert rec.leads == ("I", "II", "III", "aVR", "aVL", "aVF")  # the other limb leads derived
    assert np.abs(rec.lead("II") - twelve.signal[1]).max() <= 10 / 16777214 + 1e-9


# --- a third party's file: pyedflib's test_generator.edf ------------------------------------


def test_pyedflibs_generator_file_matches_its_header_scaling(tmp_path: Path) -> None:
    path = tmp_path / "test_generator.edf"
    shutil.copy(GENERATOR, path)
    channels = read_channels(path)
    data = path.read_bytes()
    ns = n_signals(data)  # 12: 11 signals + the EDF+ annotations

    def field(name: str, k: int) -> str:
        offset, width = SIGNAL_FIELDS[name]
        return data[256 + offset * ns + k * width : 256 + offset * ns + (k + 1) * width].decode()

    labels = [field("label", k).strip() for k in range(ns)]
    assert labels[-1] == "EDF Annotations"
    assert [c.label for c in channels] == labels[:-1]
    with pyedflib.EdfReader(str(path)) as reader:
        for k, channel in enumerate(channels):
            pmin, pmax = float(field("physical_min", k)), float(field("physical_max", k))
            dmin, dmax = int(field("digital_min", k)), int(field("digital_max", k))
            gain = (pmax - pmin) / (dmax - dmin)
            expected = (reader.readSignal(k, digital=True) - dmin) * gain + pmin
            assert channel.dimension == field("dimension", k).strip() == "uV"
            assert channel.fs == 200.0 and channel.samples.size == 120_000
            assert np.abs(channel.samples - expected).max() <= gain
    assert np.ptp(channels[0].samples) > 100  # a ±1000 µV square wave, not zeros


def test_pyedflibs_generator_file_is_no_ecg(tmp_path: Path) -> None:
    path = tmp_path / "test_generator.edf"
    shutil.copy(GENERATOR, path)
    found = problem(path)
    assert found.reason == "unknown_lead" and "squarewave" in found.detail


# --- patient ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filetype", "code", "patient", "expected"),
    [
        (pyedflib.FILETYPE_EDFPLUS, "MCH-0234567", b"", "MCH-0234567"),
        (pyedflib.FILETYPE_EDFPLUS, "X", b"", None),
        (pyedflib.FILETYPE_BDFPLUS, "", b"", None),
        (pyedflib.FILETYPE_EDF, "", b"MCH-0234567 F 02-MAY-1951 Haagse_Harry", "MCH-0234567"),
        (pyedflib.FILETYPE_EDF, "", b"John Smith", None),  # a name, never an id
        (pyedflib.FILETYPE_EDF, "", b"X X X", None),
        (pyedflib.FILETYPE_BDF, "", b"   ", None),
    ],
)
def test_patient_id(filetype: int, code: str, patient: bytes, expected: str | None) -> None:
    reader = SimpleNamespace(filetype=filetype, getPatientCode=lambda: code, patient=patient)
    assert patient_id(reader) == expected


# --- bad input, each with its reason -------------------------------------------------------


def test_random_bytes_are_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "noise.edf"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert problem(path).reason == "wrong_format"


def test_an_edf_version_with_a_garbage_header_is_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "garbage.edf"
    path.write_bytes(b"0       " + b"z" * 2000)
    assert problem(path).reason == "wrong_format"


@pytest.mark.parametrize("keep", [0.9, 0.3, 0.05])
def test_a_cut_file_is_truncated(written: Path, keep: float) -> None:
    data = written.read_bytes()
    written.write_bytes(data[: int(len(data) * keep)])
    assert problem(written).reason == "truncated"


def test_a_header_claiming_more_records_than_the_file_holds_is_truncated(written: Path) -> None:
    found = problem(patched_fixed(written, 236, 8, "11"))
    assert found.reason == "truncated" and "11 data records" in found.detail


def test_an_absurd_record_count_is_refused_before_reading(written: Path) -> None:
    found = problem(patched_fixed(written, 236, 8, "99999999"))
    assert found.reason == "unreadable" and "more than" in found.detail


@pytest.mark.parametrize("duration", ["0", "-1"])
def test_a_record_duration_of_no_time_gives_no_rate(written: Path, duration: str) -> None:
    assert problem(patched_fixed(written, 244, 8, duration)).reason == "unreadable"


def test_a_lead_without_units_is_no_units(written: Path) -> None:
    assert problem(patched(written, "dimension", 3, "")).reason == "no_units"


def test_microvolts_labelled_as_millivolts_are_implausible(written: Path) -> None:
    for k in range(12):
        patched(written, "dimension", k, "mV")
    assert problem(written).reason == "implausible_amplitude"


def test_an_unknown_label_is_an_unknown_lead(written: Path) -> None:
    found = problem(patched(written, "label", 5, "Resp chest"))
    assert found.reason == "unknown_lead" and "Resp chest" in found.detail


def test_leads_at_different_rates_are_inconsistent(tmp_path: Path, twelve: Recording) -> None:
    path = tmp_path / "rates.edf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(
            [
                {
                    "label": lead,
                    "dimension": "mV",
                    "sample_frequency": fs,
                    "physical_min": -5.0,
                    "physical_max": 5.0,
                    "digital_min": -32767,
                    "digital_max": 32767,
                    "transducer": "",
                    "prefilter": "",
                }
                for lead, fs in (("I", 500), ("II", 250))
            ]
        )
        writer.setStartdatetime(WHEN)
        half_rate = np.ascontiguousarray(twelve.signal[1, ::2])
        writer.writeSamples([np.ascontiguousarray(twelve.signal[0]), half_rate])
    finally:
        writer.close()
    assert problem(path).reason == "inconsistent_leads"


def test_a_lead_twice_is_inconsistent(written: Path) -> None:
    assert problem(patched(written, "label", 2, "Lead II")).reason == "inconsistent_leads"


def test_a_short_recording_is_too_short(tmp_path: Path, twelve: Recording) -> None:
    cut = Recording(twelve.signal[:, :750], twelve.leads, FS, "x", None, WHEN)
    assert problem(edf_export.write(tmp_path / "short.edf", cut)).reason == "too_short"


def test_no_data_records_is_too_short(written: Path) -> None:
    assert problem(patched_fixed(written, 236, 8, "0")).reason == "too_short"


def test_the_writer_needs_a_start_time(tmp_path: Path, twelve: Recording) -> None:
    timeless = Recording(twelve.signal, twelve.leads, FS, "x")
    with pytest.raises(ValueError, match="start date"):
        edf_export.write(tmp_path / "timeless.edf", timeless)
