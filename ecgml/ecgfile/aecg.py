"""HL7 aECG (ANSI/HL7 V3 ECG, root ``AnnotatedECG``, namespace ``urn:hl7-org:v3``).

Which series: ``component/series`` whose ``code@code`` is ``RHYTHM`` (the first one); a
``REPRESENTATIVE_BEAT`` series (a sibling or a ``derivation/derivedSeries``) is never read. No
rhythm series is ``wrong_format``. Of the rhythm series the first ``component/sequenceSet`` is
read (as ecgdatakit does).

Rate: the ``TIME_ABSOLUTE`` / ``TIME_RELATIVE`` sequence's ``increment`` (``GLIST_TS`` /
``GLIST_PQ``, unit ``s``, ``ms`` or ``us``) is the sampling interval; a rate within 10 ppm of a
whole number is taken as that number (``0.003333`` s is 300 Hz).

Samples: every other sequence is a lead named by its code (``MDC_ECG_LEAD_II``; a code that is
no standard lead, a V7 or Frank X, makes the file ``unknown_lead``: nothing is dropped
silently), its value an ``SLIST_PQ``: ``origin + scale × digit``, origin and scale each in
their own unit → mV. A missing scale or scale unit is ``no_units``; digits that are not whole
numbers are ``unreadable``. Digits are counted before they are parsed, so a document claiming
more than :data:`~ecgml.ecgfile.recording.MAX_SAMPLES` is refused before allocation.

Time: ``effectiveTime`` ``low`` (or ``center``) of the document, else of the rhythm series, else
the ``TIME_ABSOLUTE`` head: HL7 TS ``YYYYMMDDHHMM[SS[.fff]][±ZZzz]``, aware when an offset is
given. The first time the file states decides: a malformed or date-only one is None (ingest
reports ``no_time``), never guessed from another. Patient id: the ``trialSubject`` ``id``'s
``extension`` (else its ``root``). ``record_id``: the document ``id``'s ``root``, with
``^extension`` when it has one; the file stem when it has none. Patient names, birth times and
other demographics are never read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np

from ecgml.ecgfile.recording import (
    MAX_SAMPLES,
    EcgFileProblem,
    Recording,
    build_recording,
    check_size,
    unit_factor,
)

#: Seconds per unit of a time increment (UCUM).
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
#: A rate this close (relative) to a whole number of Hz is that number.
RATE_SNAP = 1e-5
#: Digits beyond this magnitude are no ADC value (and would lose precision as float64).
MAX_DIGIT = 2**53
_TS = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,9}))?(?:([+-])(\d{2})(\d{2}))?$"
)
_SUBJECT_ID = (
    "componentOf",
    "timepointEvent",
    "componentOf",
    "subjectAssignment",
    "subject",
    "trialSubject",
    "id",
)
#: Byte value → whether it is part of a token (not ASCII whitespace).
_IS_WORD = np.ones(256, dtype=bool)
_IS_WORD[[ord(c) for c in " \t\n\r\f\v"]] = False
_CHUNK = 1 << 22


def read_aecg(root: Element, path: Path) -> Recording:
    """The rhythm series of the aECG document ``root`` (read from ``path``) as a Recording."""
    rhythm = _rhythm_series(root, path)
    sequences = _sequences(rhythm, path)
    fs = _sampling_rate(sequences, path)
    leads = [seq for seq in sequences if not _code(seq).upper().startswith("TIME_")]
    budget = _DigitBudget(len(leads), path)
    channels = [(_code(seq), _lead_samples(seq, budget, path)) for seq in leads]
    time = _effective_time(root, rhythm, sequences)
    try:
        return build_recording(channels, fs, _record_id(root, path), _patient_id(root), time)
    except EcgFileProblem as problem:
        raise _named(problem, path) from None


# --------------------------------------------------------------------------- series


def _rhythm_series(root: Element, path: Path) -> Element:
    found = []
    for series in _path(root, "component", "series"):
        code = _code(series).upper()
        if code == "RHYTHM":
            return series
        found.append(code or "uncoded")
    seen = f"only {', '.join(sorted(set(found)))} series" if found else "no series"
    raise EcgFileProblem("wrong_format", f"{path.name}: aECG with {seen}, no RHYTHM series")


def _sequences(series: Element, path: Path) -> list[Element]:
    sequence_set = next(_path(series, "component", "sequenceSet"), None)
    if sequence_set is None:
        raise EcgFileProblem("wrong_format", f"{path.name}: the RHYTHM series has no sequenceSet")
    return list(_path(sequence_set, "component", "sequence"))


def _sampling_rate(sequences: list[Element], path: Path) -> float:
    """1 / the time sequence's ``increment`` in s; ``unreadable`` when it cannot be known."""
    timing = next((s for s in sequences if _code(s).upper().startswith("TIME_")), None)
    increment = _first(_first(timing, "value"), "increment")
    where = f"{path.name}: the rhythm's time increment"
    if increment is None:
        raise EcgFileProblem("unreadable", f"{where} is missing: no sampling rate")
    step = _number(increment.get("value"), where)
    unit = (increment.get("unit") or "").strip()
    if unit not in TIME_UNITS:
        raise EcgFileProblem("unreadable", f"{where} is in {unit[:20]!r}, not s, ms or us")
    if step is None or step <= 0:
        raise EcgFileProblem("unreadable", f"{where} {increment.get('value')!r} is no interval")
    rate = 1.0 / (step * TIME_UNITS[unit])
    whole = round(rate)
    return float(whole) if whole and abs(rate - whole) <= RATE_SNAP * rate else rate


# --------------------------------------------------------------------------- samples


class _DigitBudget:
    """Counts the digits of all leads together against :data:`MAX_SAMPLES` before parsing."""

    def __init__(self, n_leads: int, path: Path) -> None:
        self.n_leads, self.path, self.used = n_leads, path, 0

    def take(self, count: int, lead: str) -> None:
        check_size(count, self.n_leads, f"{self.path.name}: lead {lead}")
        self.used += count
        if self.used > MAX_SAMPLES:
            check_size(self.used, 1, f"{self.path.name}: its leads together")


def _lead_samples(sequence: Element, budget: _DigitBudget, path: Path) -> np.ndarray:
    """``origin + scale × digits`` of one ``SLIST_PQ`` sequence, in mV."""
    lead = _code(sequence)[:40] or "uncoded"
    where = f"{path.name}: lead {lead}"
    value = _first(sequence, "value")
    scale_mv = _scale_mv(_first(value, "scale"), where)
    origin_mv = _origin_mv(_first(value, "origin"), where)
    digits_element = _first(value, "digits")
    text = "" if digits_element is None else (digits_element.text or "")
    count = count_tokens(text)
    if count == 0:
        raise EcgFileProblem("truncated", f"{where} holds no digits")
    budget.take(count, lead)
    digits = parse_digits(text, count, where)
    with np.errstate(over="ignore", invalid="ignore"):
        return origin_mv + scale_mv * digits.astype(np.float64)


def _scale_mv(scale: Element | None, where: str) -> float:
    text = None if scale is None else scale.get("value")
    if text is None or not text.strip():
        raise EcgFileProblem("no_units", f"{where} states no scale: its size cannot be known")
    value = _number(text, f"{where} scale")
    if value is None or value == 0:
        raise EcgFileProblem("unreadable", f"{where}: scale {text[:40]!r} is no scale")
    unit = scale.get("unit") if scale is not None else None
    return value * unit_factor(unit or None, f"{where} scale")


def _origin_mv(origin: Element | None, where: str) -> float:
    """The origin in mV: absent or 0 needs no unit; any other value does."""
    text = None if origin is None else origin.get("value")
    value = _number(text, f"{where} origin") if text and text.strip() else None
    if origin is None or not value:
        return 0.0
    return value * unit_factor(origin.get("unit") or None, f"{where} origin")


def count_tokens(text: str) -> int:
    """Whitespace-separated tokens in ``text``, counted without making them: numpy over the
    bytes, in chunks, so even a file-sized text costs a few MB beyond its bytes."""
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    count, previous = 0, False
    for start in range(0, data.size, _CHUNK):
        word = _IS_WORD[data[start : start + _CHUNK]]
        count += int(bool(word[0]) and not previous)
        count += int(np.count_nonzero(word[1:] > word[:-1]))
        previous = bool(word[-1])
    return count


def parse_digits(text: str, count: int, where: str) -> np.ndarray:
    """The ``count`` whole numbers of ``text`` (int64); ``unreadable`` for anything else."""
    try:
        digits = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        digits = np.empty(0, dtype=np.int64)
    if digits.size != count or (digits.size and np.abs(digits).max() >= MAX_DIGIT):
        raise EcgFileProblem("unreadable", f"{where}: its digits are not all whole numbers")
    return digits


# --------------------------------------------------------------------------- identity, time


def _record_id(root: Element, path: Path) -> str:
    ident = _first(root, "id")
    base = (ident.get("root") or "").strip() if ident is not None else ""
    extension = (ident.get("extension") or "").strip() if ident is not None else ""
    if not base:
        return extension or path.stem
    return f"{base}^{extension}" if extension else base


def _patient_id(root: Element) -> str | None:
    ident = next(_path(root, *_SUBJECT_ID), None)
    if ident is None:
        return None
    return (ident.get("extension") or "").strip() or (ident.get("root") or "").strip() or None


def _effective_time(root: Element, rhythm: Element, sequences: list[Element]) -> datetime | None:
    """The first time the file states (see the module docstring), parsed; None if malformed."""
    candidates = []
    for node in (root, rhythm):
        effective = _first(node, "effectiveTime")
        candidates += [_first(effective, "low"), _first(effective, "center")]
    absolute = next((s for s in sequences if _code(s).upper() == "TIME_ABSOLUTE"), None)
    candidates.append(_first(_first(absolute, "value"), "head"))
    for element in candidates:
        value = None if element is None else (element.get("value") or "").strip()
        if value:
            return parse_hl7_time(value)
    return None


def parse_hl7_time(value: str) -> datetime | None:
    """HL7 TS to minute precision or finer; aware when it has an offset; None if malformed."""
    match = _TS.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        zone = None
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(offset if sign == "+" else -offset)
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micro,
            tzinfo=zone,
        )
    except ValueError:
        return None


# --------------------------------------------------------------------------- XML helpers


def _local(element: Element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _first(node: Element | None, name: str) -> Element | None:
    """The first direct child of ``node`` with local name ``name`` (any namespace)."""
    if node is None:
        return None
    return next((child for child in node if _local(child) == name), None)


def _path(node: Element, *names: str) -> Iterator[Element]:
    """Every element under ``node`` along the local names ``names`` (document order)."""
    if not names:
        yield node
        return
    for child in node:
        if _local(child) == names[0]:
            yield from _path(child, *names[1:])


def _code(element: Element) -> str:
    code = _first(element, "code")
    return "" if code is None else (code.get("code") or "").strip()


def _number(text: str | None, where: str) -> float | None:
    """A finite number; None for no text, ``unreadable`` for anything else."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise EcgFileProblem("unreadable", f"{where} {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise EcgFileProblem("unreadable", f"{where} {text[:40]!r} is not a finite number")
    return value


def _named(problem: EcgFileProblem, path: Path) -> EcgFileProblem:
    """``problem`` with a detail that starts with the file's name."""
    if problem.detail.startswith(path.name):
        return problem
    return EcgFileProblem(problem.reason, f"{path.name}: {problem.detail}")
