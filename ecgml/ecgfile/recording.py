"""What every ECG file reader returns (:class:`Recording`), and why a file cannot be used.

A reader turns one file of its format into a :class:`Recording` through
:func:`build_recording`, which does what every format needs the same way: lead names made
canonical (``I, II, III, aVR, aVL, aVF, V1``…``V6``), the limb leads an 8-lead export leaves
out derived (Einthoven / Goldberger), equal lengths, a plausible rate, at least
:data:`MIN_DURATION_S`, lead II present and amplitudes that look like millivolts.

A file that cannot be used raises :class:`EcgFileProblem` with one of :data:`FILE_REASONS`
(closed list, documented in docs/contracts.md) and a one-line detail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ecgml import TWELVE_LEADS
from ecgml.errors import EcgmlError

#: Why one ECG file cannot be read into a :class:`Recording` (a subset of ingest's reasons).
FILE_REASONS = (
    "unreadable",
    "wrong_format",
    "truncated",
    "too_short",
    "inconsistent_leads",
    "unknown_lead",
    "no_lead_ii",
    "no_units",
    "implausible_amplitude",
    "missing_file",
)
#: Shortest usable recording (s): the R-peak detector needs at least this much signal.
MIN_DURATION_S = 2.0
#: Plausible sampling rates (Hz) of a diagnostic ECG file.
MIN_FS, MAX_FS = 50.0, 10_000.0
#: Largest file a reader opens (bytes): far above a 10 s 12-lead export, far below a memory risk.
MAX_FILE_BYTES = 256 << 20
#: Most samples (all leads together) a recording may hold: 12 leads × 1 h at 500 Hz.
MAX_SAMPLES = 12 * 3600 * 500
#: A lead II whose robust amplitude exceeds this (mV) is not a millivolt ECG (µV stored as mV).
MAX_AMPLITUDE_MV = 20.0
#: ... and one below this (mV) is flat or volts stored as mV.
MIN_AMPLITUDE_MV = 0.02

_UNIT_FACTORS = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "nanovolt": 1e-6,
    "nanovolts": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}
_LEAD_KEYS = {lead.upper(): lead for lead in TWELVE_LEADS}
#: ECG leads beyond the 12 that exports carry beside them (right-sided and posterior chest
#: leads of a 15/18-lead ECG, PTB's Frank leads) and EDF's annotation channel: dropped, never
#: a reason to refuse the file (the 12 leads are what ecgml models read).
EXTRA_LEADS = frozenset(
    {"V1R", "V2R", "V3R", "V4R", "V5R", "V6R", "V7", "V8", "V9", "VX", "VY", "VZ", "EDFANNOTATIONS"}
)
_ROMAN = {"1": "I", "2": "II", "3": "III"}
# Prefixes vendors put before a lead name: "Lead II", "MDC_ECG_LEAD_II", "ECG V1", "EKG aVR".
_PREFIX = re.compile(r"^(?:MDC_ECG_LEAD_|LEAD[_ -]?|ECG[_ -]?|EKG[_ -]?)+", re.IGNORECASE)


class EcgFileProblem(EcgmlError):
    """One file that cannot be used: ``reason`` (one of :data:`FILE_REASONS`) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in FILE_REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Recording:
    """One ECG: ``signal`` ``(n_leads, n_samples)`` in mV, rows named by ``leads`` (canonical
    names in :data:`~ecgml.TWELVE_LEADS` order), sampled at ``fs`` Hz.

    ``record_id`` is the source's own id (WFDB record name, DICOM SOP Instance UID, file stem);
    ``patient_id`` and ``time`` (acquisition; naive local time, or aware when the file gives an
    offset) are None when the file does not hold them.
    """

    signal: np.ndarray
    leads: tuple[str, ...]
    fs: float
    record_id: str
    patient_id: str | None = None
    time: datetime | None = None

    @property
    def duration_s(self) -> float:
        return self.signal.shape[1] / self.fs

    def lead(self, name: str) -> np.ndarray:
        return self.signal[self.leads.index(name)]


def canonical_lead(name: object) -> str | None:
    """A channel label as one of the 12 standard leads, else None.

    Case, spaces, underscores and vendor prefixes are ignored (``Lead II``, ``MDC_ECG_LEAD_II``,
    ``ECG V1``, ``avr``); ``MLII`` (MIT-BIH's modified lead II) and a CSV's ``mv`` are lead II;
    ``1``/``2``/``3`` after a prefix are I/II/III.
    """
    text = str(name).strip()
    if text.lower() in ("mlii", "mv"):
        return "II"
    stripped = _PREFIX.sub("", text).strip(" _")  # "-aVR" (inverted) stays unknown
    key = stripped.upper().replace(" ", "")
    if stripped != text and key in _ROMAN:
        return _ROMAN[key]
    return _LEAD_KEYS.get(key)


def is_extra_lead(name: object) -> bool:
    """Whether a channel label is one of :data:`EXTRA_LEADS` (vendor prefixes ignored)."""
    key = _PREFIX.sub("", str(name).strip()).strip(" _").upper().replace(" ", "")
    return key in EXTRA_LEADS


def unit_factor(unit: object, where: str) -> float:
    """Factor that turns values in ``unit`` into mV; :class:`EcgFileProblem` ``no_units`` when
    the unit is missing or not a voltage (nothing is assumed)."""
    key = str(unit).strip().lower() if unit is not None else ""
    if key in _UNIT_FACTORS:
        return _UNIT_FACTORS[key]
    if not key:
        raise EcgFileProblem("no_units", f"{where} states no unit: its scale cannot be known")
    raise EcgFileProblem("no_units", f"{where} is in {unit!r}, not a voltage unit")


def check_size(n_samples: int, n_leads: int, where: str) -> None:
    """Refuse a recording claiming more than :data:`MAX_SAMPLES` before it is allocated."""
    if n_samples * max(n_leads, 1) > MAX_SAMPLES:
        raise EcgFileProblem(
            "unreadable",
            f"{where} claims {n_samples:,} samples × {n_leads} leads, more than the "
            f"{MAX_SAMPLES:,} ecgml reads from one recording",
        )


@contextmanager
def problems_named(name: str) -> Iterator[None]:
    """Start the detail of an :class:`EcgFileProblem` raised inside with the file's name."""
    try:
        yield
    except EcgFileProblem as err:
        if err.detail.startswith(name):
            raise
        raise EcgFileProblem(err.reason, f"{name}: {err.detail}") from None


def build_recording(
    channels: Iterable[tuple[object, np.ndarray]],
    fs: float,
    record_id: str,
    patient_id: str | None = None,
    time: datetime | None = None,
) -> Recording:
    """The checked :class:`Recording` of ``(label, samples in mV)`` channels.

    Raises :class:`EcgFileProblem`: ``unknown_lead`` (a label that is no standard lead),
    ``inconsistent_leads`` (a lead twice, lengths differ), ``unreadable`` (implausible rate,
    non-finite samples), ``too_short``, ``no_lead_ii``, ``implausible_amplitude``.
    """
    leads = _named_leads(channels)
    fs = _checked_fs(fs)
    _derive_missing_leads(leads)
    if "II" not in leads:
        raise EcgFileProblem("no_lead_ii", f"no lead II among {', '.join(leads) or 'no leads'}")
    order = tuple(lead for lead in TWELVE_LEADS if lead in leads)
    signal = np.stack([leads[lead] for lead in order]).astype(np.float64, copy=False)
    duration = signal.shape[1] / fs
    if duration < MIN_DURATION_S:
        raise EcgFileProblem(
            "too_short", f"{duration:.2f} s long: shorter than {MIN_DURATION_S:g} s"
        )
    _check_amplitude(signal[order.index("II")])
    patient = None if patient_id is None or not str(patient_id).strip() else str(patient_id)
    return Recording(signal, order, fs, str(record_id), patient, time)


def _named_leads(channels: Iterable[tuple[object, np.ndarray]]) -> dict[str, np.ndarray]:
    leads: dict[str, np.ndarray] = {}
    length: int | None = None
    for label, samples in channels:
        if is_extra_lead(label):
            continue
        lead = canonical_lead(label)
        if lead is None:
            raise EcgFileProblem("unknown_lead", f"channel {str(label)[:40]!r} is no ECG lead")
        if lead in leads:
            raise EcgFileProblem("inconsistent_leads", f"lead {lead} appears twice")
        values = np.asarray(samples, dtype=np.float64).reshape(-1)
        if length is not None and values.size != length:
            raise EcgFileProblem(
                "inconsistent_leads",
                f"lead {lead} has {values.size} samples where the others have {length}",
            )
        if not np.isfinite(values).all():
            raise EcgFileProblem("unreadable", f"lead {lead} holds missing or infinite samples")
        length = values.size
        leads[lead] = values
    return leads


def _checked_fs(fs: float) -> float:
    value = float(fs) if isinstance(fs, int | float | np.number) else math.nan
    if not (math.isfinite(value) and MIN_FS <= value <= MAX_FS):
        raise EcgFileProblem(
            "unreadable", f"sampling rate {fs!r} Hz is outside {MIN_FS:g}–{MAX_FS:g} Hz"
        )
    return value


def _derive_missing_leads(leads: dict[str, np.ndarray]) -> None:
    """Complete an 8-lead export (I, II, V1–V6; GE MUSE stores these) with III, aVR, aVL, aVF
    (Einthoven: III = II − I; Goldberger: aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2);
    and lead II from I and III when only it is missing. Stored leads are never replaced."""
    derived = ("III", "aVR", "aVL", "aVF")
    if "I" in leads and "II" in leads and not any(lead in leads for lead in derived):
        one, two = leads["I"], leads["II"]
        leads["III"] = two - one
        leads["aVR"] = -(one + two) / 2.0
        leads["aVL"] = one - two / 2.0
        leads["aVF"] = two - one / 2.0
    elif "II" not in leads and "I" in leads and "III" in leads:
        leads["II"] = leads["I"] + leads["III"]


def _check_amplitude(lead_ii: np.ndarray) -> None:
    """Lead II must look like millivolts: µV stored as mV is ~1000× too large, V as mV flat."""
    spread = float(np.percentile(np.abs(lead_ii - np.median(lead_ii)), 99.5))
    if spread > MAX_AMPLITUDE_MV:
        raise EcgFileProblem(
            "implausible_amplitude",
            f"lead II spans ±{spread:.3g} mV, beyond any ECG (µV stored as mV?)",
        )
    if spread < MIN_AMPLITUDE_MV:
        raise EcgFileProblem(
            "implausible_amplitude",
            f"lead II spans ±{spread:.3g} mV: flat (no signal, or volts stored as mV?)",
        )
