"""Fuzz: DICOM waveform and EDF+ files as damaged disks, interrupted copies and broken exporters
leave them.

A valid file of each format (ecgml's own export of a synthetic 12-lead ECG) is mutated: bytes
flipped, overwritten, inserted or cut at any offset, and header fields set to extreme values
(huge sample and record counts, zero, negative or NaN rates and durations, empty strings,
unknown units and labels). Reading it either gives a valid :class:`Recording` (finite samples,
plausible rate, canonical leads) or raises :class:`EcgFileProblem` with a one-line detail that
starts with the file name; the format's reader raises nothing else itself (no fallback through
``read_ecg``'s ``unreadable``), warns nothing, takes well under a second and never allocates
gigabytes.
"""

from __future__ import annotations

import functools
import resource
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import given
from hypothesis import strategies as st
from pydicom.config import disable_value_validation
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import FILE_REASONS, EcgFileProblem, Recording, build_recording, read_ecg
from ecgml.ecgfile import dicom as dicom_reader
from ecgml.ecgfile import edf as edf_reader
from ecgml.synth.exports import dicom as dicom_export
from ecgml.synth.exports import edf as edf_export
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ

#: Most a read may take (s) and grow the process's peak memory (bytes).
MAX_READ_S, MAX_GROWTH = 5.0, 1 << 30


@functools.cache
def base_files() -> dict[str, bytes]:
    """A 3 s 12-lead ECG as ecgml exports it: DICOM (median beat + rhythm) and EDF+."""
    fs = 500.0
    t = np.arange(int(3 * fs)) / fs
    channels = [
        (lead, 0.8 * np.exp(-((((t * 1.2) % 1.0 - 0.3) / 0.015) ** 2)) + 0.05 * np.sin(t + k))
        for k, lead in enumerate(TWELVE_LEADS)
    ]
    rec = build_recording(channels, fs, "1.2.3.4.5", "P0042", datetime(2021, 3, 4, 5, 6, 7))
    with tempfile.TemporaryDirectory(prefix="ecgml-fuzz-base-") as tmp:
        folder = Path(tmp)
        return {
            ".dcm": dicom_export.write(folder / "base.dcm", rec).read_bytes(),
            ".edf": edf_export.write(folder / "base.edf", rec).read_bytes(),
        }


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """1–4 of: flip a byte, overwrite a run, insert or delete bytes, cut the file; offsets are
    drawn from the whole file and, as often, from its first 1.5 KB (the headers)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        size = max(len(out), 1)
        where = draw(st.one_of(st.integers(0, min(size, 1536) - 1), st.integers(0, size - 1)))
        action = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "cut"]))
        if action == "flip" and out:
            out[where] ^= draw(st.integers(1, 255))
        elif action == "overwrite":
            run = draw(st.binary(min_size=1, max_size=16))
            out[where : where + len(run)] = run
        elif action == "insert":
            out[where:where] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del out[where : where + draw(st.integers(1, 64))]
        else:
            del out[where:]
    return bytes(out)


def check_read(path: Path) -> Recording | None:
    """The contract of one read (see the module docstring); the Recording or None (refused)."""
    reader = {".dcm": dicom_reader.read, ".edf": edf_reader.read}[path.suffix]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = _refused_or(reader, path)
        routed = _refused_or(read_ecg, path)
    elapsed = time.monotonic() - start
    assert not [w for w in caught if w.category is not DeprecationWarning], [
        str(w.message) for w in caught
    ]
    assert elapsed < 2 * MAX_READ_S, f"{elapsed:.1f} s"
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert growth < MAX_GROWTH, f"peak memory grew {growth / 2**20:.0f} MiB"
    assert (found is None) == (routed is None)
    if found is not None:
        _check_recording(found)
    return found


def _refused_or(read: Callable[[Path], Recording], path: Path) -> Recording | None:
    try:
        return read(path)
    except EcgFileProblem as err:
        assert err.reason in FILE_REASONS
        assert err.detail.startswith(path.name) and "\n" not in err.detail, err.detail
        return None


def _check_recording(rec: Recording) -> None:
    assert isinstance(rec, Recording)
    assert rec.leads == tuple(lead for lead in TWELVE_LEADS if lead in rec.leads)
    assert "II" in rec.leads
    assert rec.signal.dtype == np.float64 and rec.signal.shape[0] == len(rec.leads)
    assert np.isfinite(rec.signal).all()
    assert 50.0 <= rec.fs <= 10_000.0 and rec.duration_s >= 2.0


def read_mutated(suffix: str, content: bytes) -> Recording | None:
    with case_dir() as case:
        path = case / f"ecg{suffix}"
        path.write_bytes(content)
        return check_read(path)


@FUZZ
@given(data=st.data())
def test_dicom_with_damaged_bytes_reads_or_is_one_problem(data: st.DataObject) -> None:
    read_mutated(".dcm", data.draw(byte_mutations(base_files()[".dcm"])))


@FUZZ
@given(data=st.data())
def test_edf_with_damaged_bytes_reads_or_is_one_problem(data: st.DataObject) -> None:
    read_mutated(".edf", data.draw(byte_mutations(base_files()[".edf"])))


# --- DICOM header fields set to extreme values ----------------------------------------------

_DS = st.sampled_from(["0", "-500", "1e308", "-1e308", "NaN", "inf", "", "1e-300", "abc", "5"])
_GROUP_EDITS: dict[str, st.SearchStrategy[object]] = {
    "NumberOfWaveformSamples": st.sampled_from([0, 1, 999, 1501, 2**16, 2**31, 2**32 - 1]),
    "NumberOfWaveformChannels": st.sampled_from([0, 1, 11, 13, 2**16 - 1]),
    "SamplingFrequency": _DS,
    "WaveformBitsAllocated": st.sampled_from([0, 1, 8, 12, 32, 64, 2**16 - 1]),
    "WaveformSampleInterpretation": st.sampled_from(["SS", "US", "SB", "MB", "AB", "SV", "", "ZZ"]),
    "MultiplexGroupLabel": st.sampled_from(["", "RHYTHM", "MEDIAN BEAT", "rhythm strip"]),
    "WaveformData": st.sampled_from([b"", b"\x00", b"\xff" * 7, b"\x00\x80" * 4096]),
}
_CHANNEL_EDITS: dict[str, st.SearchStrategy[object]] = {
    "ChannelSensitivity": _DS,
    "ChannelSensitivityCorrectionFactor": _DS,
    "ChannelBaseline": _DS,
    "unit": st.sampled_from(["", "mV", "uV", "V", "nV", "Ohm", "%", "µV"]),
    "code": st.sampled_from(["", "2:2", "2:350", "5.6.3-9-64", "2:65", "x" * 16]),
    "meaning": st.sampled_from(["", "Lead II", "Respiration", "aVR, augmented voltage, right"]),
}
_CHANNEL_ELEMENTS = ("ChannelSensitivity", "ChannelSensitivityCorrectionFactor", "ChannelBaseline")
_TOP_EDITS: dict[str, st.SearchStrategy[object]] = {
    "PatientID": st.sampled_from(["", " ", "X" * 64, "P\u00e9"]),
    "AcquisitionDateTime": st.sampled_from(["", "2021", "99999999999999", "20210304+9999"]),
    "SOPInstanceUID": st.sampled_from(["", "1." * 32, "not.a.uid"]),
    "TimezoneOffsetFromUTC": st.sampled_from(["", "+0100", "-9999", "abc"]),
}


@st.composite
def dicom_edits(draw: st.DrawFn) -> list[tuple[str, str, int, object]]:
    """``(scope, keyword, index, value)``: a group's, a channel's or a top-level element."""
    edits: list[tuple[str, str, int, object]] = []
    for _ in range(draw(st.integers(1, 4))):
        scope = draw(st.sampled_from(["group", "channel", "top", "delete"]))
        if scope == "group":
            keyword = draw(st.sampled_from(sorted(_GROUP_EDITS)))
            edits.append((scope, keyword, draw(st.integers(0, 1)), draw(_GROUP_EDITS[keyword])))
        elif scope == "channel":
            keyword = draw(st.sampled_from(sorted(_CHANNEL_EDITS)))
            edits.append((scope, keyword, draw(st.integers(0, 11)), draw(_CHANNEL_EDITS[keyword])))
        elif scope == "top":
            keyword = draw(st.sampled_from(sorted(_TOP_EDITS)))
            edits.append((scope, keyword, 0, draw(_TOP_EDITS[keyword])))
        else:
            target = draw(st.sampled_from(["WaveformSequence", "group", "channel", "units"]))
            edits.append((scope, target, draw(st.integers(0, 11)), None))
    return edits


def set_value(target: Dataset, keyword: str, value: object) -> None:
    """``target.<keyword> = value``; text is stored as the raw bytes it is (pydicom refuses to
    hold a DS of ``abc``, a file can)."""
    if not isinstance(value, str):
        setattr(target, keyword, value)
        return
    tag = Tag(tag_for_keyword(keyword))
    raw = value.encode("utf-8")
    raw += b" " * (len(raw) % 2)
    target[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)


def apply_dicom_edit(ds: Dataset, scope: str, keyword: str, index: int, value: object) -> None:
    groups = ds.get("WaveformSequence") or []
    rhythm = groups[-1] if len(groups) else Dataset()
    channels = rhythm.get("ChannelDefinitionSequence") or []
    channel = channels[min(index, len(channels) - 1)] if len(channels) else Dataset()
    if scope == "group":
        set_value(groups[index] if index < len(groups) else rhythm, keyword, value)
    elif scope == "channel" and keyword == "unit" and "ChannelSensitivityUnitsSequence" in channel:
        set_value(channel.ChannelSensitivityUnitsSequence[0], "CodeValue", value)
    elif (
        scope == "channel" and keyword in ("code", "meaning") and "ChannelSourceSequence" in channel
    ):
        item = channel.ChannelSourceSequence[0]
        set_value(item, "CodeValue" if keyword == "code" else "CodeMeaning", value)
    elif scope == "channel" and keyword in _CHANNEL_ELEMENTS:
        set_value(channel, keyword, value)
    elif scope == "top":
        set_value(ds, keyword, value)
    elif keyword == "WaveformSequence" and "WaveformSequence" in ds:
        del ds.WaveformSequence
    elif keyword == "group" and len(groups):
        del groups[index % len(groups)]
    elif keyword == "channel" and len(channels):
        del channels[index % len(channels)]
    elif keyword == "units" and "ChannelSensitivityUnitsSequence" in channel:
        del channel.ChannelSensitivityUnitsSequence


@FUZZ
@given(edits=dicom_edits(), data=st.data())
def test_dicom_with_extreme_header_values_reads_or_is_one_problem(
    edits: list[tuple[str, str, int, object]], data: st.DataObject
) -> None:
    with case_dir() as case:
        path = case / "ecg.dcm"
        path.write_bytes(base_files()[".dcm"])
        with warnings.catch_warnings(), disable_value_validation():
            warnings.simplefilter("ignore")  # pydicom's complaints about the values set here
            ds = pydicom.dcmread(path)
            for edit in edits:
                apply_dicom_edit(ds, *edit)
            ds.save_as(path)
        if data.draw(st.booleans()):
            path.write_bytes(data.draw(byte_mutations(path.read_bytes())))
        check_read(path)


# --- EDF header fields set to extreme values ------------------------------------------------

_NUMBERS = ["", "0", "-0", "-1", "1", "nan", "inf", "1e308", "99999999", "-9999999", "abc"]
#: Fixed header fields: (offset, width) and the texts tried there.
_FIXED_EDITS: dict[str, tuple[int, int, list[str]]] = {
    "version": (0, 8, ["0", "1", "\xffBIOSEMI", ""]),
    "startdate": (168, 8, ["99.99.99", "", "01.01.85", "31.02.21", "aa.bb.cc"]),
    "starttime": (176, 8, ["25.61.61", "", "00:00:00", "12.00.00"]),
    "header_bytes": (184, 8, ["0", "256", "3328", "3584", "99999999", ""]),
    "reserved": (192, 44, ["", "EDF+D", "EDF+C", "24BIT"]),
    "n_records": (236, 8, [*_NUMBERS, "2", "4", "1e3"]),
    "record_s": (244, 8, [*_NUMBERS, "0.000001", "1e9", "0.5", "2"]),
    "n_signals": (252, 4, ["", "0", "1", "12", "13", "14", "9999", "-1"]),
}
#: Signal header fields: (offset per signal count, width) and the texts tried there.
_SIGNAL_EDITS: dict[str, tuple[int, int, list[str]]] = {
    "label": (0, 16, ["", "II", "Resp", "EDF Annotations", "ECG V1", "\xff\xfe"]),
    "dimension": (96, 8, ["", "mV", "uV", "V", "nV", "Ohm", "%"]),
    "physical_min": (104, 8, [*_NUMBERS, "-32767"]),
    "physical_max": (112, 8, [*_NUMBERS, "32767"]),
    "digital_min": (120, 8, [*_NUMBERS, "-32768", "32767", "-8388608"]),
    "digital_max": (128, 8, [*_NUMBERS, "-32768", "32767", "8388607"]),
    "samples_per_record": (216, 8, [*_NUMBERS, "500", "501", "250", "2"]),
}


@st.composite
def edf_edits(draw: st.DrawFn) -> list[tuple[int, int, str]]:
    """``(byte offset, width, text)`` header edits of the 13-signal base file."""
    signals = 13  # 12 leads + EDF Annotations
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            offset, width, texts = _FIXED_EDITS[draw(st.sampled_from(sorted(_FIXED_EDITS)))]
            edits.append((offset, width, draw(st.sampled_from(texts))))
        else:
            base, width, texts = _SIGNAL_EDITS[draw(st.sampled_from(sorted(_SIGNAL_EDITS)))]
            k = draw(st.integers(0, signals - 1))
            edits.append((256 + base * signals + k * width, width, draw(st.sampled_from(texts))))
    return edits


@FUZZ
@given(edits=edf_edits(), data=st.data())
def test_edf_with_extreme_header_values_reads_or_is_one_problem(
    edits: list[tuple[int, int, str]], data: st.DataObject
) -> None:
    content = bytearray(base_files()[".edf"])
    for offset, width, text in edits:
        content[offset : offset + width] = text.encode("latin-1")[:width].ljust(width)
    if data.draw(st.booleans()):
        content = bytearray(data.draw(byte_mutations(bytes(content))))
    read_mutated(".edf", bytes(content))


def test_the_base_files_read() -> None:
    """The unmutated files are valid: every refusal above comes from a mutation."""
    for suffix, content in base_files().items():
        rec = read_mutated(suffix, content)
        assert rec is not None and rec.leads == TWELVE_LEADS and rec.patient_id == "P0042"
