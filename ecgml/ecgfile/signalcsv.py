"""ecgml's own signal CSV: ``time_s`` in seconds (uniform steps) and ``mv`` (lead II) or one
column per standard lead, in mV, as ``ecgml.synth``, ``ecgml.digitize`` and record stores write
it. The file holds no patient or time: an index CSV gives them.

:func:`write_signal_csv` is its one writer and :func:`parse_signal_csv` its one parser, with two
policies: ``strict`` (a record store's files, ``ecgml.ingest``): the columns are exactly
``time_s`` and lead names;
``lenient`` (a file handed to ``ecgml.predict``): ``time_s`` in any case, and columns that name
no lead are ignored (and listed) rather than refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecgml import TWELVE_LEADS
from ecgml.ecgfile.recording import (
    MAX_FS,
    MIN_FS,
    EcgFileProblem,
    Recording,
    build_recording,
    canonical_lead,
)

#: Time steps may deviate this much (relative) from their median.
STEP_TOLERANCE = 0.01
#: What a one-column header that should have been several was probably separated by.
SEPARATORS = (";", "\t", "|")
_LEAD_COLUMNS = f"mv (lead II) or lead columns {', '.join(TWELVE_LEADS)}"


@dataclass(frozen=True)
class SignalTable:
    """A parsed signal CSV: ``signal`` ``(n_leads, n)`` in mV, rows named by ``leads`` (in the
    file's column order), at ``fs`` Hz; ``ignored``: columns the lenient policy passed over."""

    fs: float
    leads: tuple[str, ...]
    signal: np.ndarray
    ignored: tuple[str, ...] = ()


def guess_separator(header: str) -> str | None:
    """The separator a one-column CSV header seems to use instead of a comma (``None``: none)."""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    sep, count = max(counts.items(), key=lambda item: item[1])
    return sep if count else None


def is_signal_csv(path: Path) -> bool:
    """Whether the CSV's header names a ``time_s`` column (an index CSV has ``path``)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline(4096)
    except OSError:
        return False
    return "time_s" in [c.strip().strip('"').lower() for c in first.split(",")]


def write_signal_csv(path: Path, signal: np.ndarray, leads: Sequence[str], fs: float) -> None:
    """``signal`` ``(n_leads, n)`` in mV as a signal CSV: ``time_s`` (µs precision, so rates
    such as 360 Hz stay uniform) and one column per lead (mV to 0.01 µV)."""
    columns = np.vstack([np.arange(signal.shape[1]) / fs, signal]).T
    np.savetxt(
        path,
        columns,
        fmt=["%.6f"] + ["%.5f"] * len(leads),
        delimiter=",",
        header=",".join(["time_s", *leads]),
        comments="",
    )


def read(path: Path) -> Recording:
    """A signal CSV as a checked :class:`Recording` (strict policy)."""
    table = parse_signal_csv(path)
    return build_recording(zip(table.leads, table.signal, strict=True), table.fs, path.stem)


def parse_signal_csv(path: Path, lenient: bool = False) -> SignalTable:
    """Parse ``path``; :class:`EcgFileProblem` (one line, starting with the file name) when it
    cannot be used: ``wrong_format`` (not a CSV, no ``time_s``, no lead column),
    ``unknown_lead`` (strict), ``inconsistent_leads`` (a lead twice), ``unreadable``
    (non-numeric samples, uneven time steps, an implausible rate)."""
    frame = _read_frame(path)
    columns = [str(c).strip() for c in frame.columns]
    time_column = _time_column(path, columns, lenient)
    leads, ignored = _lead_columns(path, columns, time_column, lenient)
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    kept = [columns.index(c) for c in leads]
    if not np.isfinite(values[:, [time_column, *kept]]).all():
        raise EcgFileProblem(
            "unreadable", f"{path.name}: non-numeric, empty, NaN or infinite samples"
        )
    fs = _uniform_fs(path, values[:, time_column])
    names = tuple(str(canonical_lead(c)) for c in leads)
    return SignalTable(fs, names, values[:, kept].T, tuple(ignored))


def _read_frame(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())[:160]
        problem = EcgFileProblem(
            "wrong_format", f"{path.name} is not a readable CSV ({detail}): save it as time_s,mv"
        )
        raise problem from None


def _time_column(path: Path, columns: list[str], lenient: bool) -> int:
    wanted = [c.lower() if lenient else c for c in columns]
    if "time_s" in wanted:
        return wanted.index("time_s")
    sep = guess_separator(columns[0]) if len(columns) == 1 else None
    if sep is not None:
        raise EcgFileProblem(
            "wrong_format",
            f"{path.name}: the separator looks like {sep!r}, not a comma: save the signal CSV "
            "comma-separated with the columns time_s,mv",
        )
    raise EcgFileProblem(
        "wrong_format", f"{path.name}: a signal CSV needs a time_s column and {_LEAD_COLUMNS}"
    )


def _lead_columns(
    path: Path, columns: list[str], time_column: int, lenient: bool
) -> tuple[list[str], list[str]]:
    """The columns naming a lead (``mv`` and ``MLII`` count as II), and those ignored."""
    leads, ignored = [], []
    for k, column in enumerate(columns):
        if k == time_column:
            continue
        if canonical_lead(column) is not None:
            leads.append(column)
        elif lenient:
            ignored.append(column)
        else:
            raise EcgFileProblem(
                "unknown_lead",
                f"{path.name}: unknown lead name {column[:40]!r}: name lead columns "
                f"{', '.join(TWELVE_LEADS)} (or mv)",
            )
    if not leads:
        raise EcgFileProblem("wrong_format", f"{path.name}: no signal column: add {_LEAD_COLUMNS}")
    names = [canonical_lead(c) for c in leads]
    if len(set(names)) != len(names):
        raise EcgFileProblem(
            "inconsistent_leads",
            f"{path.name}: a lead appears twice (mv and MLII count as II): keep one",
        )
    return leads, ignored


def _uniform_fs(path: Path, time: np.ndarray) -> float:
    """``1 / step`` of ``time_s`` when it increases in equal steps at a plausible rate."""
    if time.size < 2:
        raise EcgFileProblem("too_short", f"{path.name}: {time.size} sample(s)")
    with np.errstate(over="ignore", invalid="ignore"):  # huge times: refused as uneven
        steps = np.diff(time)
    step = float(np.median(steps))
    if not (np.isfinite(steps).all() and step > 0) or (
        np.max(np.abs(steps - step)) > STEP_TOLERANCE * step + 1e-12
    ):
        raise EcgFileProblem(
            "unreadable",
            f"{path.name}: non-uniform time steps: time_s must increase in equal steps (one "
            "sampling rate)",
        )
    fs = 1.0 / step
    if not MIN_FS <= fs <= MAX_FS:
        hint = "if it is in ms, divide it by 1000" if MIN_FS <= 1000 * fs <= MAX_FS else ""
        raise EcgFileProblem(
            "unreadable",
            f"{path.name}: time_s steps of {step:g} give a sampling rate of {fs:g} Hz, outside "
            f"{MIN_FS:g}–{MAX_FS:g} Hz: time_s must be in seconds{f' ({hint})' if hint else ''}",
        )
    return round(fs, 6)
