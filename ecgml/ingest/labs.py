"""The laboratory table: potassium and sodium results with their times, read streamed.

Two layouts, recognised by their header:

- ecgml's: ``patient_id, time, analyte, value`` (analyte ``potassium``/``sodium`` or ``K``/``Na``,
  any case; mmol/L = mEq/L);
- MIMIC-IV ``labevents.csv`` (also ``.csv.gz``): ``subject_id, charttime, itemid, valuenum``;
  the potassium and sodium item ids are configurable, every other item id is skipped unread
  (a 120-million-row file is filtered chunk by chunk, never held whole).

Each usable row becomes ``(patient_id, time, analyte, value)``; each unusable one a row of
``excluded_labs.csv`` with one of :data:`LAB_REASONS`. Times are naive local times: an offset
is converted to ``timezone`` when one is given, else dropped (one warning).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ecgml.beatstore import SERUM_BOUNDS
from ecgml.errors import EcgmlError

log = logging.getLogger("ecgml.ingest")

LAB_REASONS = (
    "non_numeric_value",
    "bad_time",
    "no_patient_id",
    "lab_out_of_range",
    "unknown_analyte",
)
ANALYTES = ("potassium", "sodium")
#: MIMIC-IV ``d_labitems``: 50971 potassium, 50983 sodium (blood chemistry).
MIMIC_ITEMIDS = {"potassium": (50971,), "sodium": (50983,)}
GENERIC_COLUMNS = ("patient_id", "time", "analyte", "value")
MIMIC_COLUMNS = ("subject_id", "charttime", "itemid", "valuenum")
EXCLUDED_COLUMNS = ("row", "patient_id", "time", "analyte", "value", "reason")
_ANALYTE_NAMES = {"potassium": "potassium", "k": "potassium", "sodium": "sodium", "na": "sodium"}
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
CHUNK_ROWS = 500_000


@dataclass
class LabTable:
    """Usable results (``patient_id`` str, ``time`` datetime64, ``analyte``, ``value`` float)
    and the rows left out (:data:`EXCLUDED_COLUMNS`; ``row`` is the line in the file)."""

    results: pd.DataFrame
    excluded: pd.DataFrame
    layout: str
    rows_read: int


def read_labs(
    path: Path,
    itemids: Mapping[str, Sequence[int]] | None = None,
    timezone: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> LabTable:
    """Read ``path`` in either layout; an unknown layout is one line (exit 2)."""
    layout = detect_layout(path)
    ids = {k: tuple(int(i) for i in v) for k, v in (itemids or MIMIC_ITEMIDS).items()}
    clock = LocalClock(timezone)
    results, excluded, rows_read = [], [], 0
    for chunk, first_line in _chunks(path, layout, chunk_rows):
        rows_read += len(chunk)
        frame = _normalise(chunk, layout, ids, first_line)
        good, bad = _checked(frame, clock)
        results.append(good)
        excluded.append(bad)
    clock.report(path)
    return LabTable(
        _concat(results, ["patient_id", "time", "analyte", "value"]),
        _concat(excluded, list(EXCLUDED_COLUMNS)),
        layout,
        rows_read,
    )


def detect_layout(path: Path) -> str:
    """``generic`` or ``mimic`` from the header; one :class:`EcgmlError` line otherwise."""
    if not path.is_file():
        raise EcgmlError(f"labs {path} does not exist: pass labs=PATH to a lab CSV")
    try:
        header = pd.read_csv(path, nrows=0)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        raise EcgmlError(f"labs {path} is not a readable CSV ({err})") from None
    columns = {str(c).strip().lower() for c in header.columns}
    if set(MIMIC_COLUMNS) <= columns:
        return "mimic"
    if set(GENERIC_COLUMNS) <= columns:
        return "generic"
    raise EcgmlError(
        f"labs {path} has columns {', '.join(sorted(columns))[:120]}: expected "
        f"{', '.join(GENERIC_COLUMNS)} (or MIMIC-IV labevents: {', '.join(MIMIC_COLUMNS)})"
    )


def _chunks(path: Path, layout: str, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """``(chunk of text columns, line number of its first row)``."""
    wanted = MIMIC_COLUMNS if layout == "mimic" else GENERIC_COLUMNS
    reader = pd.read_csv(
        path,
        usecols=lambda c: str(c).strip().lower() in wanted,
        dtype=str,
        keep_default_na=False,
        chunksize=chunk_rows,
        compression="infer",
    )
    line = 2
    with reader:
        for chunk in reader:
            chunk.columns = [str(c).strip().lower() for c in chunk.columns]
            yield chunk, line
            line += len(chunk)


def _normalise(
    chunk: pd.DataFrame, layout: str, itemids: Mapping[str, Sequence[int]], first_line: int
) -> pd.DataFrame:
    """Columns ``row, patient_id, time_text, analyte, value_text`` (MIMIC: wanted items only)."""
    rows = np.arange(first_line, first_line + len(chunk))
    if layout == "mimic":
        item = pd.to_numeric(chunk["itemid"], errors="coerce")
        analyte = pd.Series(pd.NA, index=chunk.index, dtype=object)
        for name, ids in itemids.items():
            analyte[item.isin(ids)] = name
        keep = analyte.notna().to_numpy()
        return pd.DataFrame(
            {
                "row": rows[keep],
                "patient_id": chunk["subject_id"].to_numpy()[keep],
                "time_text": chunk["charttime"].to_numpy()[keep],
                "analyte": analyte.to_numpy()[keep],
                "value_text": chunk["valuenum"].to_numpy()[keep],
            }
        )
    names = chunk["analyte"].str.strip().str.lower().map(_ANALYTE_NAMES)
    return pd.DataFrame(
        {
            "row": rows,
            "patient_id": chunk["patient_id"].to_numpy(),
            "time_text": chunk["time"].to_numpy(),
            "analyte": names.to_numpy(),
            "value_text": chunk["value"].to_numpy(),
            "analyte_text": chunk["analyte"].to_numpy(),
        }
    )


def _checked(frame: pd.DataFrame, clock: LocalClock) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Usable results and excluded rows, each row given the first reason that applies."""
    patient = frame["patient_id"].astype(str).str.strip()
    value = pd.to_numeric(frame["value_text"].astype(str).str.strip(), errors="coerce")
    time = clock.parse(frame["time_text"].astype(str))
    reason = pd.Series("", index=frame.index, dtype=object)
    in_range = pd.Series(False, index=frame.index)
    for analyte, (low, high) in SERUM_BOUNDS.items():
        mine = frame["analyte"] == analyte
        in_range |= mine & value.between(low, high)
    checks = [
        ("no_patient_id", patient == ""),
        ("unknown_analyte", frame["analyte"].isna()),
        ("bad_time", time.isna()),
        ("non_numeric_value", value.isna() | ~np.isfinite(value.fillna(np.nan))),
        ("lab_out_of_range", ~in_range),
    ]
    for name, failed in reversed(checks):  # the first check that fails names the row
        reason[failed.to_numpy()] = name
    bad = (reason != "").to_numpy()
    good = pd.DataFrame(
        {
            "patient_id": patient[~bad].to_numpy(),
            "time": time[~bad].to_numpy(),
            "analyte": frame["analyte"][~bad].to_numpy(),
            "value": value[~bad].to_numpy(dtype=float),
        }
    )
    shown = frame.get("analyte_text", frame["analyte"])
    excluded = pd.DataFrame(
        {
            "row": frame["row"][bad].to_numpy(),
            "patient_id": patient[bad].to_numpy(),
            "time": frame["time_text"][bad].to_numpy(),
            "analyte": shown[bad].to_numpy(),
            "value": frame["value_text"][bad].to_numpy(),
            "reason": reason[bad].to_numpy(),
        }
    )
    return good, excluded


class LocalClock:
    """Makes times naive local ones: offsets converted to ``timezone`` (when given) or
    dropped (counted, warned once per input)."""

    def __init__(self, timezone: str | None) -> None:
        self.timezone = timezone
        self.dropped = 0

    def parse(self, text: pd.Series) -> pd.Series:
        text = text.str.strip()
        offset = text.str.contains(_OFFSET, na=False)
        parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        if (~offset).any():
            parsed[~offset] = _to_datetime(text[~offset])
        if offset.any():
            parsed[offset] = self._with_offset(text[offset])
        return parsed

    def naive(self, value: datetime | None) -> datetime | None:
        """One acquisition time (a reader's, possibly aware) as a naive local time."""
        if value is None or value.tzinfo is None:
            return value
        if self.timezone is None:
            self.dropped += 1
            return value.replace(tzinfo=None)
        return value.astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None)

    def _with_offset(self, text: pd.Series) -> pd.Series:
        if self.timezone is None:
            self.dropped += len(text)
            return _to_datetime(text.str.replace(_OFFSET, "", regex=True))
        aware = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        return aware.dt.tz_convert(self.timezone).dt.tz_localize(None)

    def report(self, source: Path) -> None:
        if self.dropped:
            count, self.dropped = self.dropped, 0
            log.warning(
                "%s: %d time(s) carry a UTC offset, dropped (times compared as local wall "
                "clock): pass pairing.timezone=<IANA zone> to convert them instead",
                source.name,
                count,
            )


def _to_datetime(text: pd.Series) -> pd.Series:
    """ISO 8601-like text (``2180-07-23 08:44:00``, ``…T08:44``, a date alone) to
    ``datetime64``; anything else NaT."""
    return pd.to_datetime(text, errors="coerce", format="ISO8601")


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(frames, ignore_index=True)
