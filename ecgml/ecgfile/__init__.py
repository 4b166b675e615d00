"""One ECG file in, one :class:`~ecgml.ecgfile.recording.Recording` out, whatever its format.

Formats, each read with the library made for it: WFDB (``.hea`` + signal files, ``wfdb``),
DICOM waveform (``.dcm``, ``pydicom``), GE MUSE XML and HL7 aECG (``.xml``, parsed with
``defusedxml``), EDF/EDF+/BDF (``pyedflib``) and ecgml's own signal CSV (``time_s`` + leads).
:func:`read_ecg` picks the reader by the file's extension (an ``.xml`` by its root element) and
turns anything a reader did not foresee into an ``unreadable`` :class:`EcgFileProblem`, so one
bad file never stops a folder.

This layer imports nothing from ecgml but ``ecgml.errors`` and the package constants.
"""

from __future__ import annotations

import importlib
import stat
from pathlib import Path

from ecgml.ecgfile.recording import (
    FILE_REASONS,
    MAX_FILE_BYTES,
    EcgFileProblem,
    Recording,
    build_recording,
    canonical_lead,
    problems_named,
)

#: Reader module (``ecgml.ecgfile.<name>``) per file extension.
READERS = {
    ".hea": "wfdb",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".xml": "xml",
    ".edf": "edf",
    ".bdf": "edf",
    ".csv": "signalcsv",
}

__all__ = [
    "FILE_REASONS",
    "READERS",
    "EcgFileProblem",
    "Recording",
    "build_recording",
    "canonical_lead",
    "format_of",
    "read_ecg",
]


def format_of(path: Path) -> str | None:
    """The reader module for ``path`` by its extension, None for a file no reader takes."""
    return READERS.get(path.suffix.lower())


def read_ecg(path: Path) -> Recording:
    """Read one ECG file; :class:`EcgFileProblem` (with its reason) when it cannot be used."""
    name = format_of(path)
    if name is None:
        raise EcgFileProblem("wrong_format", f"{path.name}: no reader for {path.suffix!r} files")
    check_regular_file(path)
    # deferred: each reader pulls in its format's library (pydicom, pyedflib, wfdb) on first use
    reader = importlib.import_module(f"ecgml.ecgfile.{name}")
    try:
        with problems_named(path.name):
            recording = reader.read(path)
    except EcgFileProblem:
        raise
    except MemoryError:
        raise EcgFileProblem("unreadable", f"{path.name}: too large to read") from None
    except Exception as err:  # a reader's library failing on a damaged file: this file only
        detail = " ".join(str(err).split())[:200]
        raise EcgFileProblem("unreadable", f"{path.name}: {type(err).__name__}: {detail}") from None
    assert isinstance(recording, Recording)
    return recording


def check_regular_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> None:
    """A regular file of at most ``max_bytes`` (``stat`` only: a FIFO is never opened)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise EcgFileProblem("missing_file", f"{path.name} does not exist") from None
    except OSError as err:
        raise EcgFileProblem("unreadable", f"{path.name} cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise EcgFileProblem("unreadable", f"{path.name} is not a regular file")
    if info.st_size > max_bytes:
        raise EcgFileProblem(
            "unreadable", f"{path.name} has {info.st_size:,} bytes, more than {max_bytes:,}"
        )
