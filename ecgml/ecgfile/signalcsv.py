"""ecgml's own signal CSV: ``time_s`` in seconds (uniform steps) and ``mv`` (lead II) or one
column per standard lead, in mV, as ``ecgml.synth``, ``ecgml.digitize`` and record stores write
it. The file holds no patient or time: an index CSV gives them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.ecgfile.recording import EcgFileProblem, Recording, build_recording

#: Time steps may deviate this much (relative) from their median.
STEP_TOLERANCE = 0.01


def is_signal_csv(path: Path) -> bool:
    """Whether the CSV's header names a ``time_s`` column (an index CSV has ``path``)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline(4096)
    except OSError:
        return False
    return "time_s" in [c.strip().strip('"').lower() for c in first.split(",")]


def read(path: Path) -> Recording:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise EcgFileProblem(
            "wrong_format", f"{path.name}: not a readable CSV ({detail})"
        ) from None
    columns = [str(c).strip() for c in frame.columns]
    if "time_s" not in columns:
        raise EcgFileProblem("wrong_format", f"{path.name}: a signal CSV needs a time_s column")
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    time = values[:, columns.index("time_s")]
    fs = _uniform_fs(path, time)
    channels = [(c, values[:, k]) for k, c in enumerate(columns) if c != "time_s"]
    return build_recording(channels, fs, path.stem)


def _uniform_fs(path: Path, time: np.ndarray) -> float:
    if time.size < 2 or not np.isfinite(time).all():
        raise EcgFileProblem("unreadable", f"{path.name}: time_s is empty or not numeric")
    steps = np.diff(time)
    step = float(np.median(steps))
    if step <= 0 or np.max(np.abs(steps - step)) > STEP_TOLERANCE * step:
        raise EcgFileProblem("unreadable", f"{path.name}: time_s does not increase in equal steps")
    return round(1.0 / step, 6)
