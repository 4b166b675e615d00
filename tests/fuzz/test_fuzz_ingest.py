"""Fuzz: the WFDB and signal-CSV readers, and ``ecgml.ingest`` over hostile index and lab
tables.

A reader either returns a checked :class:`~ecgml.ecgfile.Recording` or raises
:class:`~ecgml.ecgfile.EcgFileProblem` with a reason of the closed list; an ingest either
writes a store or stops with one :class:`~ecgml.errors.EcgmlError` line and no output folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecgml import TWELVE_LEADS
from ecgml.ecgfile import FILE_REASONS, EcgFileProblem, Recording, read_ecg
from ecgml.ecgfile.recording import MAX_FS, MIN_FS
from ecgml.errors import EcgmlError
from ecgml.ingest.run import IngestSettings, ingest
from ecgml.synth.exports import csv as csv_export
from ecgml.synth.exports import wfdb as wfdb_export
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ
from tests.fuzz.strategies import NUMBER_TEXT


def _recording(leads: tuple[str, ...] = ("I", "II")) -> Recording:
    t = np.arange(2500) / 500
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0004)
    signal = np.stack([beat * (k + 1) / len(leads) for k in range(len(leads))])
    return Recording(signal, leads, 500.0, "r", "p", datetime(2180, 1, 1, 10))


def _checked(path: Path) -> None:
    """The reader's promise: a valid Recording or a problem with a listed reason."""
    try:
        rec = read_ecg(path)
    except EcgFileProblem as problem:
        assert problem.reason in FILE_REASONS
        assert "\n" not in str(problem)
        return
    assert rec.signal.ndim == 2 and rec.signal.shape[0] == len(rec.leads)
    assert np.isfinite(rec.signal).all() and MIN_FS <= rec.fs <= MAX_FS
    assert set(rec.leads) <= set(TWELVE_LEADS) and "II" in rec.leads


@st.composite
def damaged_header(draw: st.DrawFn) -> str:
    """A WFDB header with one field replaced by an odd value."""
    fields = ["r", "2", "500", "2500"]
    k = draw(st.integers(0, 3))
    fields[k] = draw(st.one_of(NUMBER_TEXT, st.sampled_from(["-1", "0", "1e12", "", "x"])))
    gain = draw(st.sampled_from(["1000/mV", "1000/uV", "1000/V", "1000/NU", "1000", "0/mV"]))
    lead = draw(st.sampled_from(["II", "MLII", "Lead II", "resp", "V7", "-aVR"]))
    return f"{' '.join(fields)}\nr.dat 16 {gain} 16 0 0 0 0 I\nr.dat 16 {gain} 16 0 0 0 0 {lead}\n"


@FUZZ
@given(header=damaged_header(), cut=st.integers(0, 10_000))
def test_wfdb_reader_refuses_or_reads(header: str, cut: int) -> None:
    with case_dir() as folder:
        wfdb_export.write(folder / "r.hea", _recording())
        data = (folder / "r.dat").read_bytes()
        (folder / "r.dat").write_bytes(data[:cut])
        (folder / "r.hea").write_text(header)
        _checked(folder / "r.hea")


@FUZZ
@given(
    rows=st.lists(st.tuples(NUMBER_TEXT, NUMBER_TEXT, NUMBER_TEXT), max_size=30),
    header=st.sampled_from(["time_s,I,II", "time_s,mv", "time_s,II,II", "time_s,X", "time_s"]),
    valid=st.booleans(),
)
def test_signal_csv_reader_refuses_or_reads(
    rows: list[tuple[str, str, str]], header: str, valid: bool
) -> None:
    with case_dir() as folder:
        path = folder / "s.csv"
        if valid:
            csv_export.write(path, _recording())
            lines = path.read_text().splitlines()
            lines[0] = header
            lines[1 : 1 + len(rows)] = [",".join(r) for r in rows]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
        _checked(path)


@FUZZ
@given(
    labs=st.lists(
        st.tuples(
            st.sampled_from(["p", "", "q", "p,x"]),
            st.one_of(st.sampled_from(["2180-01-01 09:00", "2180-01-01", "nope", ""]), NUMBER_TEXT),
            st.sampled_from(["K", "Na", "potassium", "Cl", ""]),
            NUMBER_TEXT,
        ),
        max_size=8,
    ),
    index_path=st.sampled_from(["r.csv", "../x.csv", "missing.csv", "", "/etc/passwd"]),
)
def test_ingest_writes_a_store_or_one_line_and_nothing(
    labs: list[tuple[str, str, str, str]], index_path: str
) -> None:
    with case_dir() as folder:
        csv_export.write(folder / "ecgs" / "r.csv", _recording())
        (folder / "ecgs" / "index.csv").write_text(
            f"path,patient_id,time\n{index_path},p,2180-01-01 10:00\nr.csv,p,2180-01-01 10:00\n"
        )
        (folder / "labs.csv").write_text(
            "patient_id,time,analyte,value\n" + "\n".join(",".join(r) for r in labs) + "\n"
        )
        settings = IngestSettings(
            folder / "ecgs" / "index.csv", folder / "labs.csv", folder / "out", progress=False
        )
        try:
            report = ingest(settings)
        except EcgmlError as err:
            assert "\n" not in str(err)
            assert not (folder / "out").exists()
            assert {p.name for p in folder.iterdir()} == {"ecgs", "labs.csv"}  # no temporary
            return
        assert report.n_records >= 1 and (folder / "out" / "records.csv").is_file()
