"""A Recording as a DICOM General ECG Waveform Storage file, as an ECG cart's export looks.

Samples are 16-bit signed (``SS``) with a sensitivity of :data:`LSB_UV` µV per step (±32.767 mV
range; a recording beyond it is refused, never clipped). Channels are named by their MDC code
(DICOM CID 3001) with its code meaning. A short ``MEDIAN BEAT`` group (a representative beat:
the sample-wise median of the recording's consecutive :data:`BEAT_S` s windows) comes before the
``RHYTHM`` group, as real exports put it, so a reader must choose the rhythm by its label.

Identity: ``PatientID`` and ``AcquisitionDateTime`` (with its UTC offset when the time is
aware); the SOP Instance UID is ``rec.record_id`` when that is a valid UID, else a UID derived
from it (the same for the same id). No patient name or birth date is written (the type-2
Patient's Name, Birth Date and Sex are present and empty, as the standard allows).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    GeneralECGWaveformStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from ecgml.ecgfile import Recording
from ecgml.ecgfile.dicom import LEAD_NUMBERS

#: µV per 16-bit step: 1 µV resolution, ±32.767 mV range.
LSB_UV = 1.0
#: Length (s) of the representative beat group.
BEAT_S = 1.2
#: CID 3001 code meanings of the augmented leads (the others are "Lead <name>").
_MEANINGS = {
    "aVR": "aVR, augmented voltage, right",
    "aVL": "aVL, augmented voltage, left",
    "aVF": "aVF, augmented voltage, foot",
}
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def write(path: Path, rec: Recording) -> Path:
    """Write ``rec`` to ``path`` (``.dcm``); ValueError for a lead or amplitude it cannot hold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sop_uid = instance_uid(rec.record_id)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_uid)
    _identify(ds, rec, sop_uid)
    ds.WaveformSequence = Sequence(
        [_group(representative_beat(rec), rec, "MEDIAN BEAT"), _group(rec.signal, rec, "RHYTHM")]
    )
    ds.save_as(path, enforce_file_format=True)
    return path


def instance_uid(record_id: str) -> str:
    """``record_id`` when it is a valid UID, else a UID derived from it (deterministic)."""
    if len(record_id) <= 64 and _UID.match(record_id):
        return record_id
    return str(generate_uid(entropy_srcs=[record_id]))


def representative_beat(rec: Recording) -> np.ndarray:
    """The sample-wise median of the consecutive :data:`BEAT_S` s windows of ``rec``."""
    width = min(round(BEAT_S * rec.fs), rec.signal.shape[1])
    n_windows = max(rec.signal.shape[1] // width, 1)
    windows = rec.signal[:, : n_windows * width].reshape(len(rec.leads), n_windows, width)
    return np.asarray(np.median(windows, axis=1))


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = GeneralECGWaveformStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _identify(ds: Dataset, rec: Recording, sop_uid: str) -> None:
    """SOP common, patient (id only), study, series, equipment and acquisition attributes."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = GeneralECGWaveformStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = ""
    ds.PatientID = rec.patient_id or ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[sop_uid, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[sop_uid, "series"])
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = "ECG"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "ecgml synthetic export"
    if rec.time is not None:
        ds.AcquisitionDateTime = dicom_datetime(rec.time)
        ds.StudyDate = ds.ContentDate = rec.time.strftime("%Y%m%d")
        ds.StudyTime = ds.ContentTime = rec.time.strftime("%H%M%S.%f")
    else:
        ds.AcquisitionDateTime = ds.StudyDate = ds.StudyTime = ""
        ds.ContentDate = ds.ContentTime = ""


def dicom_datetime(value: datetime) -> str:
    """A DT value: ``YYYYMMDDHHMMSS.FFFFFF`` and ``+HHMM`` when the time is aware."""
    text = value.strftime("%Y%m%d%H%M%S.%f")
    offset = value.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text


def _group(signal: np.ndarray, rec: Recording, label: str) -> Dataset:
    group = Dataset()
    group.MultiplexGroupTimeOffset = "0"
    group.WaveformOriginality = "ORIGINAL" if label == "RHYTHM" else "DERIVED"
    group.NumberOfWaveformChannels = len(rec.leads)
    group.NumberOfWaveformSamples = signal.shape[1]
    group.SamplingFrequency = format_number_as_ds(float(rec.fs))
    group.MultiplexGroupLabel = label
    group.ChannelDefinitionSequence = Sequence([_channel(lead) for lead in rec.leads])
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group["WaveformData"] = _data_element(signal)
    return group


def _channel(lead: str) -> Dataset:
    if lead not in LEAD_NUMBERS:
        raise ValueError(f"lead {lead!r} has no DICOM code: one of {', '.join(LEAD_NUMBERS)}")
    source = Dataset()
    source.CodeValue = f"2:{LEAD_NUMBERS[lead]}"
    source.CodingSchemeDesignator = "MDC"
    source.CodeMeaning = _MEANINGS.get(lead, f"Lead {lead}")
    units = Dataset()
    units.CodeValue = "uV"
    units.CodingSchemeDesignator = "UCUM"
    units.CodeMeaning = "microvolt"
    channel = Dataset()
    channel.ChannelSourceSequence = Sequence([source])
    channel.ChannelSensitivity = format_number_as_ds(LSB_UV)
    channel.ChannelSensitivityUnitsSequence = Sequence([units])
    channel.ChannelSensitivityCorrectionFactor = "1"
    channel.ChannelBaseline = "0"
    channel.ChannelSampleSkew = "0"
    channel.WaveformBitsStored = 16
    return channel


def _data_element(signal: np.ndarray) -> DataElement:
    """Interleaved int16 samples (C1S1, C2S1, …, CnS1, C1S2, …), little-endian, as OW."""
    steps = np.round(np.asarray(signal, dtype=np.float64) * 1000.0 / LSB_UV)
    if not np.isfinite(steps).all() or np.abs(steps).max(initial=0) > 32767:
        raise ValueError(f"samples beyond ±{32.767 * LSB_UV:g} mV cannot be written as int16")
    data = steps.T.astype("<i2").tobytes()
    return DataElement(0x54001010, "OW", data)
