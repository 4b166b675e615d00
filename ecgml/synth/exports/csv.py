"""A Recording as ecgml's own signal CSV (``time_s`` + one column per lead, mV to 0.01 µV).

The CSV holds no patient or time: an index CSV beside it gives them.
"""

from __future__ import annotations

from pathlib import Path

from ecgml.ecgfile import Recording
from ecgml.ecgfile.signalcsv import write_signal_csv


def write(path: Path, rec: Recording) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_signal_csv(path, rec.signal, rec.leads, rec.fs)
    return path
