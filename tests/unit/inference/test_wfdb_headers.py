"""A WFDB header is checked against plausibility and its signal file before wfdb allocates
what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgml.errors import EcgmlError
from ecgml.inference.inputs import check_wfdb_header, read_wfdb


@pytest.fixture()
def record(tmp_path: Path) -> Path:
    t = np.arange(2500) / 500.0
    signal = np.column_stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * t)])
    wfdb.wrsamp(
        "rec",
        fs=500,
        units=["mV", "mV"],
        sig_name=["II", "V1"],
        p_signal=signal,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    return tmp_path / "rec.hea"


def claim(header: Path, samples: int) -> None:
    lines = header.read_text().splitlines()
    fields = lines[0].split()
    fields[3] = str(samples)
    header.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")


def test_a_well_formed_record_passes_and_reads(record: Path) -> None:
    check_wfdb_header(record)
    leads, fs, _ = read_wfdb(record)
    assert fs == 500 and set(leads) == {"II", "V1"} and leads["II"].size == 2500


def test_a_header_claiming_a_trillion_samples_is_refused_before_reading(record, monkeypatch):
    claim(record, 10**12)

    def never(*_args, **_kwargs):
        raise AssertionError("the signal was read (and allocated) before the header was checked")

    monkeypatch.setattr(wfdb, "rdrecord", never)
    with pytest.raises(EcgmlError, match=re.escape("claims 1,000,000,000,000 samples")):
        read_wfdb(record)


def test_a_header_claiming_more_than_its_file_holds_is_refused(record: Path, monkeypatch) -> None:
    claim(record, 5000)  # the .dat holds 2500 samples of two 16-bit channels
    monkeypatch.setattr(wfdb, "rdrecord", lambda *a, **k: pytest.fail("read a truncated record"))
    with pytest.raises(EcgmlError, match="holds 10,000 of the 20,000 bytes"):
        read_wfdb(record)
    (record.parent / "rec.dat").unlink()
    with pytest.raises(EcgmlError, match="signal file rec.dat is missing"):
        check_wfdb_header(record)
