"""Turn what a user points ``predict`` at into beats: one :class:`BeatInput` per input.

Accepted: an ECG image (digitized with :func:`ecgml.digitize.pipeline.process_image`), a signal
CSV (``time_s,mv``, or ``time_s`` and one column per lead), a WFDB record (``.hea``; every
channel named after a standard lead, R-peaks on ``II``/``MLII``, else on the first channel with
a warning), a single-beat CSV (one numeric column), a beat-store folder with
``manifest.csv`` (one entry per ``patient_id``), or a folder of any of these. A file that cannot
be used becomes an entry with a warning and no beats; it never stops the other inputs, and neither
does one unusable beat of a beat store (it is skipped with a warning). Only regular files are read
(never a device or FIFO), beats are bounded in length, and an input whose median R amplitude is
implausible for mV (a µV or V signal) is refused unless ``allow_implausible_amplitude``.
A recording's other leads are cut at lead II's R-peaks (``BeatInput.lead_beats``) for
multi-lead record models.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ecgml.beatstore import (
    DEFAULT_MAX_BEAT_S,
    MANIFEST,
    BeatLimits,
    BeatStore,
    StorePathError,
    amplitude_problem,
    beat_store_folder,
    check_regular,
    load_beat_store,
    read_beat_csv,
)
from ecgml.digitize.image import IMAGE_SUFFIXES
from ecgml.digitize.leads import page_leads
from ecgml.digitize.pipeline import process_image
from ecgml.ecgfile import canonical_lead
from ecgml.ecgfile.signalcsv import parse_signal_csv
from ecgml.ecgfile.wfdb import channel_mv, check_wfdb_header
from ecgml.errors import EcgmlError
from ecgml.signal import DEFAULT_POST_R_MS, DEFAULT_PRE_R_MS, BeatSet, extract_beats

if TYPE_CHECKING:
    from ecgml.modelfile.loaded import LoadedModel

log = logging.getLogger("ecgml.inference")

#: Files in a folder that belong to other formats' bookkeeping, not to ECGs.
SKIPPED_NAMES = {"images.csv", "patients.csv", "report.csv", MANIFEST, "beatstore.json"}
#: WFDB companions of a ``.hea`` header (read through the header, never on their own).
WFDB_COMPANIONS = {".dat", ".atr", ".qrs", ".ecg", ".xws", ".mat"}
#: Largest input file read (a signal CSV: about 10 h of ``time_s,mv`` at 500 Hz).
MAX_INPUT_BYTES = 256 << 20
#: Sampling rate assumed for bounding bare beat CSVs when ``fs`` is not given.
DEFAULT_BEAT_FS = 500.0


@dataclass(frozen=True)
class Window:
    """The stretch around each R-peak cut from signals (covers every loaded model's input)."""

    pre_r_ms: float = DEFAULT_PRE_R_MS
    post_r_ms: float = DEFAULT_POST_R_MS


@dataclass(frozen=True)
class InputOptions:
    """How inputs are read: the beat window, digitizer options, and beat-CSV sampling rate."""

    window: Window = Window()
    image_fs: float = 500.0
    layout: str = "auto"
    dpi: float | None = None
    beat_fs: float | None = None  # fs of bare beat CSVs (None: the model's)
    max_beat_s: float = DEFAULT_MAX_BEAT_S  # longer beats are refused before any padding
    allow_implausible_amplitude: bool = False  # score µV/V-looking inputs anyway (warned)


@dataclass
class BeatInput:
    """Beats from one input (or one patient of a beat store), each with its R sample.

    ``fs=None`` means "the model's sampling rate" (bare beat CSVs without ``beat_fs``).
    ``r_peak_s`` is where each beat's R-peak lies in the source recording (``None`` for beats
    that come without one).
    """

    input: str
    patient_id: str
    beats: list[np.ndarray] = field(default_factory=list)
    r_indices: list[int] = field(default_factory=list)
    fs: float | None = None
    beat_ids: list[str] = field(default_factory=list)
    r_peak_s: list[float | None] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The lead-II recording the beats were cut from (mV at ``signal_fs``), for whole-strip
    #: models; ``None`` for inputs that are beats already (beat files, beat stores).
    signal: np.ndarray | None = None
    signal_fs: float | None = None
    #: Every standard lead the input holds over the whole recording (mV at ``signal_fs``, lead
    #: II included when the input names it), for multi-lead record models; empty for beats.
    lead_signals: dict[str, np.ndarray] = field(default_factory=dict)
    #: Each lead of ``lead_signals`` cut at the beats' R-peaks with their window: beat ``k``
    #: of every lead is ``beats[k]``'s stretch of the recording.
    lead_beats: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def n_beats(self) -> int:
        return len(self.beats)

    def beats_of(self, leads: Sequence[str]) -> list[list[np.ndarray]] | None:
        """The beats of each lead in ``leads`` (``[II]``: :attr:`beats`, whatever the input), or
        None when the input lacks one of them (:meth:`missing_leads`)."""
        if tuple(leads) == ("II",):
            return [self.beats]
        if self.missing_leads(leads):
            return None
        return [self.lead_beats[name] for name in leads]

    def strip_of(self, leads: Sequence[str]) -> list[np.ndarray] | None:
        """The recording of each lead in ``leads`` (``[II]``: :attr:`signal`), or None when
        the input has no recording (beats only) or lacks one of the leads."""
        if self.signal is None or not self.signal.size:
            return None
        if tuple(leads) == ("II",):
            return [self.signal]
        if any(name not in self.lead_signals for name in leads):
            return None
        return [self.lead_signals[name] for name in leads]

    def missing_leads(self, leads: Sequence[str]) -> list[str]:
        """The leads of ``leads`` this input does not hold (lead II alone is never missing:
        single-lead inputs are read as lead II)."""
        if tuple(leads) == ("II",):
            return []
        return [name for name in leads if name not in self.lead_beats]

    def clear_beats(self) -> None:
        for values in (self.beats, self.r_indices, self.beat_ids, self.r_peak_s):
            values.clear()
        self.lead_beats.clear()


# --------------------------------------------------------------------------- signals


def beats_from_signal(
    signal: np.ndarray,
    fs: float,
    source: str,
    patient_id: str,
    window: Window,
    leads: Mapping[str, np.ndarray] | None = None,
) -> BeatInput:
    """R-peaks (NeuroKit2) on ``signal`` (lead II), one window per beat, interference beats
    dropped (ecgml.signal); every lead of ``leads`` (same length as ``signal``) is cut at the
    same R-peaks."""
    entry = BeatInput(
        source,
        patient_id,
        fs=float(fs),
        signal=np.asarray(signal, np.float64),
        signal_fs=float(fs),
        lead_signals=dict(leads or {}),
    )
    beat_set = extract_beats(signal, fs, pre_r_ms=window.pre_r_ms, post_r_ms=window.post_r_ms)
    add_beat_set(entry, beat_set, offset_s=0.0)
    if not entry.beats:
        entry.warnings.append(
            f"no usable beat in the {len(signal) / fs:.1f} s signal "
            f"({len(beat_set.rejected)} R-peak(s) rejected): check the recording"
        )
    return entry


def add_beat_set(entry: BeatInput, beat_set: BeatSet, offset_s: float) -> None:
    """Append a recording's beats to ``entry`` (R at ``beat_set.r_offset`` in each), and the
    same stretch of every lead in ``entry.lead_signals``."""
    r_offset = beat_set.r_offset
    kept = zip(beat_set.beats, beat_set.r_indices, beat_set.beat_index, strict=True)
    for beat, r, k in kept:
        entry.beats.append(np.asarray(beat, dtype=np.float32))
        entry.r_indices.append(int(r_offset))
        entry.beat_ids.append(f"{entry.patient_id}_{int(k):03d}")
        entry.r_peak_s.append(round(offset_s + float(r) / float(entry.fs or 0.0), 4))
        start = int(r) - int(r_offset)
        for name, lead in entry.lead_signals.items():
            piece = lead[start : start + len(beat)]
            entry.lead_beats.setdefault(name, []).append(np.asarray(piece, dtype=np.float32))


def read_signal_csv(path: Path) -> tuple[np.ndarray, float]:
    """A signal CSV's lead II (else its first lead) and ``fs``: :func:`read_signal_leads`."""
    leads, fs, _ = read_signal_leads(path)
    return leads.get("II", next(iter(leads.values()))), fs


def read_signal_leads(path: Path) -> tuple[dict[str, np.ndarray], float, list[str]]:
    """A signal CSV → ``(leads, fs, warnings)`` (the lenient signal-CSV policy of
    :func:`ecgml.ecgfile.signalcsv.parse_signal_csv`: ``time_s`` in any case, columns that name
    no lead ignored with a warning)."""
    table = parse_signal_csv(path, lenient=True)
    with np.errstate(over="ignore"):
        leads = {
            name: row.astype(np.float32)
            for name, row in zip(table.leads, table.signal, strict=True)
        }
    if not all(np.isfinite(v).all() for v in leads.values()):
        raise EcgmlError(f"{path.name}: a lead holds values beyond any plausible mV signal")
    warnings = []
    if table.ignored:
        warnings.append(f"columns {', '.join(table.ignored)} are not lead names: ignored")
    return leads, table.fs, warnings


def read_wfdb(path: Path) -> tuple[dict[str, np.ndarray], float, list[str]]:
    """Every channel of a WFDB record named after a standard lead (``MLII`` is II), in mV;
    a record without any is read from its first channel as lead II (warned)."""
    import wfdb

    check_wfdb_header(path)  # before wfdb allocates what the header claims
    record = wfdb.rdrecord(str(path.with_suffix("")))
    names = [str(n) for n in (record.sig_name or [])]
    units = [str(u) for u in (record.units or [])]
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[1] == 0:
        raise EcgmlError(f"{path.name}: the WFDB record holds no signal")
    channels = {}
    for k in range(record.p_signal.shape[1]):
        name = canonical_lead(names[k]) if k < len(names) else None
        if name is not None and name not in channels:
            channels[name] = k
    warnings: list[str] = []
    if not channels:
        first = names[0] if names else "channel 0"
        warnings.append(
            f"no standard lead name in the record ({', '.join(names)}): {first} read as lead II"
        )
        channels = {"II": 0}
    leads = {
        name: channel_mv(record.p_signal[:, k], units[k] if k < len(units) else "mv")
        for name, k in channels.items()
    }
    return leads, float(record.fs), warnings


def beats_from_leads(
    leads: Mapping[str, np.ndarray], fs: float, path: Path, window: Window, warnings: list[str]
) -> BeatInput:
    """A recording's beats: R-peaks on lead II (else its first lead, warned), every lead cut
    at them."""
    if "II" in leads:
        signal = leads["II"]
    else:
        first = next(iter(leads))
        signal = leads[first]
        warnings = [
            *warnings,
            f"no lead II in the recording: R-peaks and single-beat models read {first}",
        ]
    entry = beats_from_signal(signal, fs, str(path), path.stem, window, leads)
    entry.warnings[:0] = warnings
    return entry


# --------------------------------------------------------------------------- files


@functools.lru_cache(maxsize=64)
def image_labels(folder: Path) -> dict[str, tuple[str | None, str | None]]:
    """``image_file → (patient_id, layout)`` from the folder's ``images.csv`` (digitize's)."""
    path = folder / "images.csv"
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {}
    if "image_file" not in frame.columns:
        return {}
    labels = {}
    for row in frame.to_dict("records"):
        patient = (row.get("patient_id") or "").strip() or None
        layout = (row.get("layout") or "").strip().lower() or None
        labels[Path(row["image_file"].strip()).name] = (patient, layout)
    return labels


def read_image(path: Path, options: InputOptions) -> BeatInput:
    """Digitize one image; ``images.csv`` beside it may give its patient_id and layout."""
    patient_id, layout = image_labels(path.parent.resolve()).get(path.name, (None, None))
    window = options.window
    result = process_image(
        path,
        layout=layout or options.layout,
        fs=options.image_fs,
        dpi=options.dpi,
        beat_options={"pre_r_ms": window.pre_r_ms, "post_r_ms": window.post_r_ms},
    )
    entry = BeatInput(str(path), patient_id or path.stem, fs=float(options.image_fs))
    if result.status != "ok" or result.beats is None:
        entry.warnings.append(f"digitization failed: {result.error}")
        return entry
    if result.digitized is not None:
        entry.signal, entry.signal_fs = result.digitized.signal, float(result.digitized.fs)
        entry.lead_signals = page_leads(
            result.digitized.signal, result.digitized.leads, float(result.digitized.fs)
        )
    add_beat_set(entry, result.beats, offset_s=0.0)
    return entry


def read_beat_file(path: Path, options: InputOptions) -> BeatInput:
    """One beat; its R-peak is the largest deflection from the beat's median."""
    fs = options.beat_fs or DEFAULT_BEAT_FS
    beat = read_beat_csv(path, BeatLimits.of(fs, options.max_beat_s, option="max_beat_s"))
    r = int(np.argmax(np.abs(beat - np.median(beat))))
    entry = BeatInput(str(path), path.stem, fs=options.beat_fs)
    entry.beats.append(beat)
    entry.r_indices.append(r)
    entry.beat_ids.append(path.stem)
    entry.r_peak_s.append(None)
    return entry


def is_signal_csv(head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    return "time_s" in first.lower()


def read_file(path: Path, options: InputOptions) -> BeatInput:
    """One file → its beats (raises EcgmlError/other errors; :func:`read_input` catches them)."""
    check_regular(path, MAX_INPUT_BYTES, "an image, a CSV or a WFDB .hea", "split it")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, options)
    if suffix == ".hea":
        leads, fs, warnings = read_wfdb(path)
        return beats_from_leads(leads, fs, path, options.window, warnings)
    if suffix == ".csv":
        with path.open("r", errors="replace") as handle:
            head = handle.read(256)
        if is_signal_csv(head):
            leads, fs, warnings = read_signal_leads(path)
            return beats_from_leads(leads, fs, path, options.window, warnings)
        return read_beat_file(path, options)
    raise EcgmlError(
        f"{path.name}: unsupported file type {suffix or '(none)'}: use an image "
        f"({'/'.join(IMAGE_SUFFIXES)}), a CSV (time_s,mv or one beat) or a WFDB .hea"
    )


def read_input(path: Path, options: InputOptions) -> BeatInput:
    """:func:`read_file`, with any failure turned into a warning entry."""
    try:
        return read_file(path, options)
    except EcgmlError as err:
        reason = str(err)
    except Exception as err:  # one unreadable file must not stop the others
        log.debug("reading %s failed", path, exc_info=True)
        reason = f"{path.name} could not be read ({type(err).__name__}: {err})"
    return BeatInput(str(path), path.stem, warnings=[reason])


def read_store(root: Path, options: InputOptions) -> list[BeatInput]:
    """A beat-store folder → one entry per ``patient_id`` (its ``r_index`` column when present).

    A beat that cannot be used is skipped with a warning on its patient's entry; a manifest path
    leaving the store is a user error (:class:`~ecgml.beatstore.StorePathError`, exit 2).
    """
    try:
        store = load_beat_store(
            root,
            default_fs=options.beat_fs or DEFAULT_BEAT_FS,
            max_beat_s=options.max_beat_s,
            skip_bad_beats=True,
        )
    except StorePathError:
        raise
    except EcgmlError as err:
        return [BeatInput(str(root), root.name, warnings=[str(err)])]
    has_fs = (root / "beatstore.json").is_file() or options.beat_fs is not None
    entries = patient_entries(store, root, float(store.info.fs) if has_fs else None)
    meta = store.meta
    r_column = meta["r_index"] if "r_index" in meta.columns else None
    for k, row in enumerate(meta.itertuples(index=False)):
        entry = entries[str(row.patient_id)]
        beat = store.beats[k]
        r_value = r_column.iloc[k] if r_column is not None else None
        if r_value is None or pd.isna(r_value):
            r = int(np.argmax(np.abs(beat - np.median(beat))))
        else:
            r = int(r_value)
        entry.beats.append(beat)
        entry.r_indices.append(r)
        entry.beat_ids.append(str(row.beat_id))
        entry.r_peak_s.append(None)
    if r_column is None or r_column.isna().any():
        for entry in entries.values():
            entry.warnings.append(
                f"{MANIFEST} has no r_index for some beats: their R-peak was taken at the "
                "largest deflection"
            )
    return list(entries.values())


def patient_entries(store: BeatStore, root: Path, fs: float | None) -> dict[str, BeatInput]:
    """One empty entry per patient in manifest order, skipped beats already warned about."""
    meta = store.meta
    rows = [(int(i), str(p)) for i, p in zip(meta.index, meta["patient_id"], strict=True)]
    rows += [(s.row, s.patient_id) for s in store.skipped]
    entries: dict[str, BeatInput] = {}
    for _, patient in sorted(rows):
        entries.setdefault(patient, BeatInput(str(root), patient, fs=fs))
    for skipped in store.skipped:
        entries[skipped.patient_id].warnings.append(
            f"beat {skipped.beat_id} skipped: {skipped.reason}"
        )
    return entries


def iter_folder(folder: Path) -> Iterator[Path]:
    """The inputs directly inside ``folder`` (sorted), bookkeeping files skipped."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in SKIPPED_NAMES:
            continue
        if path.is_dir():
            if (path / MANIFEST).is_file():
                yield path
            continue
        if path.suffix.lower() in WFDB_COMPANIONS and path.with_suffix(".hea").is_file():
            continue
        yield path


def list_inputs(path: Path) -> list[Path]:
    """What ``input=PATH`` names: the file, the beat store, or the folder's inputs."""
    if not path.exists():
        raise EcgmlError(f"input={path} does not exist: pass an image, CSV, WFDB .hea or folder")
    if not path.is_file() and not path.is_dir():
        raise EcgmlError(
            f"input={path} is not a regular file or folder (a device, FIFO or socket): pass an "
            "image, CSV, WFDB .hea or folder"
        )
    if path.is_file() or (beat_store_folder(path) / MANIFEST).is_file():
        return [beat_store_folder(path)]  # a beat store, or the folder holding it in beats/
    found = list(iter_folder(path))
    if not found:
        raise EcgmlError(
            f"input={path} holds no image, CSV, WFDB record or beat store: point it at your ECGs"
        )
    return found


def window_for(models: Iterable[LoadedModel]) -> Window:
    """The widest window any loaded model needs (start-aligned models: the default window)."""
    pre, post = [], []
    for model in models:
        model_pre, model_post = model.pre_r_ms, model.post_r_ms
        if model_pre is None or model_post is None:  # start-aligned: no R in the layout
            pre.append(DEFAULT_PRE_R_MS)
            post.append(DEFAULT_POST_R_MS)
        else:
            pre.append(model_pre)
            post.append(model_post)
    return Window(max(pre, default=DEFAULT_PRE_R_MS), max(post, default=DEFAULT_POST_R_MS))


def read_inputs(paths: list[Path], options: InputOptions, progress: bool = True) -> list[BeatInput]:
    """Every input's entries, in order (a beat store contributes one entry per patient)."""
    from tqdm.auto import tqdm

    entries: list[BeatInput] = []
    for path in tqdm(paths, desc="predict: reading", disable=not progress or len(paths) < 2):
        found = read_store(path, options) if path.is_dir() else [read_input(path, options)]
        for entry in found:
            check_amplitude(entry, options.allow_implausible_amplitude)
        entries.extend(found)
    return entries


def check_amplitude(entry: BeatInput, allow: bool) -> None:
    """Refuse (clear) an entry whose beats do not look like mV, or only warn when ``allow``."""
    problem = amplitude_problem(entry.beats)
    if problem is None:
        return
    if allow:
        entry.warnings.append(f"{problem}: scored anyway (allow_implausible_amplitude=true)")
        return
    entry.clear_beats()
    entry.warnings.append(
        f"{problem}: not scored; fix the unit, or pass allow_implausible_amplitude=true to "
        "score it anyway"
    )


__all__ = [
    "BeatInput",
    "InputOptions",
    "Window",
    "list_inputs",
    "read_inputs",
    "window_for",
]
