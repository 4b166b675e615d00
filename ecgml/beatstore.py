"""The beat store: ``manifest.csv`` + one CSV per beat (+ optional ``beatstore.json``).

This is the project's interchange format (see the README's "Bring your own data"): the
synthetic cohort and the digitizer write it, training and prediction read it. Reading is strict:
every problem is reported as one :class:`~ecgml.errors.EcgmlError` line naming the file and what
to do about it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml import GROUPS
from ecgml.ecgfile.signalcsv import guess_separator
from ecgml.errors import EcgmlError
from ecgml.packstore import PACKED, ROW_COLUMN, PackedSamples, PackedWriter, file_digest, is_packed
from ecgml.signal.windows import BeatSet

log = logging.getLogger("ecgml.data")

MANIFEST = "manifest.csv"
META_FILE = "beatstore.json"
REQUIRED_COLUMNS = ("beat_file", "patient_id", "group")
OPTIONAL_COLUMNS = (
    "beat_id",
    "record_id",
    "beat_index",
    "r_index",
    "center",
    "device",
    "source_image",
    "potassium",
    "sodium",
)
#: Optional serum columns (mmol/L) and their plausible bounds; an empty cell means unknown.
SERUM_BOUNDS = {"potassium": (1.0, 10.0), "sodium": (100.0, 180.0)}
VALID_GROUPS = (*GROUPS, "unknown")
PROVENANCE_COLUMNS = ("record_id", "beat_index", "r_index", "center", "device", "source_image")
#: Plausible sampling rates (Hz): anything outside is a typo or a unit mistake.
MIN_FS, MAX_FS = 50.0, 10_000.0
#: Longest beat accepted by default (``data.max_beat_s``): a beat is well under 2 s.
DEFAULT_MAX_BEAT_S = 4.0
#: Bytes one sample line may take in a beat CSV, and the header's allowance: the file-size cap.
BYTES_PER_SAMPLE, HEADER_BYTES = 32, 1024
MAX_META_BYTES = 1 << 20
#: Plausible median |R| (mV): outside it the samples are most likely in µV or V.
MIN_R_MV, MAX_R_MV = 0.05, 10.0
#: Largest ``r_index`` magnitude read exactly (floats hold whole numbers exactly up to 2**53).
MAX_R_INDEX = 2**53
BEAT_FIX = "cut the recording into single beats, or raise the bound if beats are that long"


@dataclass(frozen=True)
class StoreMeta:
    """Contents of ``beatstore.json`` (all optional in a user's store)."""

    fs: float = 500.0
    units: str = "mV"
    pre_r_ms: float | None = None
    post_r_ms: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BeatLimits:
    """How long a beat may be: ``max_samples``, explained by ``hint`` in messages."""

    max_samples: int
    hint: str

    @classmethod
    def of(cls, fs: float, max_beat_s: float, option: str = "data.max_beat_s") -> BeatLimits:
        if not (isinstance(max_beat_s, int | float) and 0 < max_beat_s <= 3600):
            raise EcgmlError(f"{option}={max_beat_s!r} must be a number of seconds in (0, 3600]")
        samples = max(1, round(float(max_beat_s) * float(fs)))
        return cls(samples, f"{option}={max_beat_s:g} s at {fs:g} Hz")

    @property
    def max_bytes(self) -> int:
        return HEADER_BYTES + BYTES_PER_SAMPLE * self.max_samples


@dataclass(frozen=True)
class SkippedBeat:
    """A beat left out by a lenient load (``row``: its 0-based position in the manifest)."""

    row: int
    beat_id: str
    patient_id: str
    reason: str


@dataclass
class BeatStore:
    """A loaded beat store: one row of ``meta`` per beat, samples in ``beats`` (ragged)."""

    root: Path
    meta: pd.DataFrame
    beats: list[np.ndarray]
    info: StoreMeta
    digest: str
    skipped: list[SkippedBeat] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.beats)


# --------------------------------------------------------------------------- reading


def read_store_csv(
    root: Path | str,
    filename: str,
    kind: str,
    required: Sequence[str],
    docs: str,
    dtype: Mapping[str, type],
) -> tuple[pd.DataFrame, Path]:
    """``root/filename``, the table of a ``kind`` folder (a beat or record store), and its path:
    a missing folder or file, or a CSV pandas cannot parse, is one line naming it."""
    root = Path(root)
    if not root.exists():
        raise EcgmlError(f"{kind} folder {root} does not exist: pass an existing folder")
    if not root.is_dir():
        raise EcgmlError(f"{kind} {root} is not a folder: pass the folder holding {filename}")
    path = root / filename
    if not path.is_file():
        raise EcgmlError(
            f"{path} is missing: a {kind} needs a {filename} with columns "
            f"{', '.join(required)} ({docs})"
        )
    try:
        return pd.read_csv(path, dtype=dict(dtype)), path
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise EcgmlError(
            f"{path} is not a readable CSV ({one_line(err)}): fix or regenerate it"
        ) from None


def read_manifest(root: Path | str) -> pd.DataFrame:
    """Read and validate ``root/manifest.csv``; returns one row per beat, ``beat_id`` filled."""
    manifest, path = read_store_csv(
        root,
        MANIFEST,
        "beat store",
        REQUIRED_COLUMNS,
        "see README, 'Bring your own data'",
        {"patient_id": str, "beat_id": str, "record_id": str},
    )
    return validate_manifest(manifest, path)


@dataclass(frozen=True)
class StoreIndex:
    """What distinguishes a store's index table: ``manifest.csv`` (beats) or ``records.csv``."""

    name: str
    unit: str
    file_column: str
    id_column: str
    required: tuple[str, ...]


BEAT_INDEX = StoreIndex(MANIFEST, "beat", "beat_file", "beat_id", REQUIRED_COLUMNS)


def validate_manifest(manifest: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check columns, values and uniqueness of ``manifest.csv``; return a cleaned copy."""
    manifest = validate_store_index(manifest, path, BEAT_INDEX)
    if "r_index" in manifest.columns:
        manifest["r_index"] = _whole_r_index(manifest["r_index"], path)
    return manifest


def validate_store_index(table: pd.DataFrame, path: Path, index: StoreIndex) -> pd.DataFrame:
    """The one validator of a store's index table (beat or record store): required columns,
    groups, unique ids (defaulting to the file column), serum bounds; every problem one
    :class:`EcgmlError` line naming the file, line and column. Returns a cleaned copy."""
    required = _required_columns(table, path, index)
    _check_columns(table, path, index, required)
    if table.empty:
        raise EcgmlError(f"{path} lists no {index.unit}s: add one row per {index.unit} CSV")
    table = table.copy()
    for column in required:
        blank = table[column].isna() | (table[column].astype(str).str.strip() == "")
        if blank.any():
            raise EcgmlError(
                f"{path} line {_first_line(blank)}: column {column} is empty: every "
                f"{index.unit} needs one"
            )
        table[column] = table[column].astype(str).str.strip()
    table["group"] = table["group"].str.lower()
    bad = ~table["group"].isin(VALID_GROUPS)
    if bad.any():
        raise EcgmlError(
            f"{path} line {_first_line(bad)}: column group holds {table['group'][bad].iloc[0]!r}"
            f": use one of {', '.join(VALID_GROUPS)}"
        )
    ids = table[index.id_column] if index.id_column in table.columns else table[index.file_column]
    if index.file_column in table.columns:
        ids = ids.fillna(table[index.file_column])
    table[index.id_column] = ids.astype(str)
    repeated = table[index.id_column].duplicated()
    if repeated.any():
        raise EcgmlError(
            f"{path} line {_first_line(repeated)}: column {index.id_column} "
            f"{table[index.id_column][repeated].iloc[0]!r} appears twice: {index.unit} ids must "
            "be unique"
        )
    for column, bounds in SERUM_BOUNDS.items():
        if column in table.columns:
            table[column] = serum_values(table[column], column, bounds, path)
    return table.reset_index(drop=True)


def _required_columns(table: pd.DataFrame, path: Path, index: StoreIndex) -> tuple[str, ...]:
    """The index's required columns: a packed store's rows name their samples by
    ``packed_row`` and their id, so its file column is optional."""
    if ROW_COLUMN not in table.columns:
        return index.required
    if index.file_column not in table.columns and index.id_column not in table.columns:
        raise EcgmlError(
            f"{path} has {ROW_COLUMN} but neither {index.file_column} nor {index.id_column}: "
            f"a packed store's index needs {index.id_column} (the id its samples are stored "
            "under)"
        )
    extra = (index.id_column,) if index.file_column not in table.columns else ()
    return (*(c for c in index.required if c != index.file_column), *extra)


def _check_columns(
    table: pd.DataFrame, path: Path, index: StoreIndex, required: tuple[str, ...]
) -> None:
    missing = [c for c in required if c not in table.columns]
    if not missing:
        return
    sep = guess_separator(str(table.columns[0])) if len(table.columns) == 1 else None
    if sep is not None:
        raise EcgmlError(
            f"{path}: the separator looks like {sep!r}, not a comma (one column "
            f"{table.columns[0]!r} was read): save {index.name} comma-separated"
        )
    raise EcgmlError(
        f"{path} lacks column(s) {', '.join(missing)}: required are {', '.join(required)}"
    )


def _first_line(rows: pd.Series) -> int:
    """The file line of the first ``True`` row (the header is line 1)."""
    return int(np.flatnonzero(rows.to_numpy())[0]) + 2


def serum_values(
    column: pd.Series, name: str, bounds: tuple[float, float], path: Path
) -> pd.Series:
    """A serum column as floats in mmol/L (NaN: unknown); text and implausible values refused."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = column.to_numpy(dtype=float, na_value=np.nan)
        given = ~np.isnan(numbers)
    else:  # text somewhere in the column: blank cells are unknown, anything else must parse
        text = column.astype("string").str.strip()
        given = (text.fillna("") != "").to_numpy()
        values = pd.to_numeric(text.where(given), errors="coerce")
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
    low, high = bounds
    with np.errstate(invalid="ignore"):
        plausible = np.isfinite(numbers) & (numbers >= low) & (numbers <= high)
    bad = given & ~plausible
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = column.iloc[row]
        shown = repr(value) if np.isnan(numbers[row]) else f"{float(numbers[row]):g}"
        raise EcgmlError(
            f"{path} line {row + 2}: column {name} must hold a serum {name} in mmol/L between "
            f"{low:g} and {high:g} (empty = unknown), got {shown}: give the value in mmol/L "
            "or leave the cell empty"
        )
    return pd.Series(numbers, index=column.index, name=column.name)


def _whole_r_index(column: pd.Series, path: Path) -> pd.Series:
    """``r_index`` as nullable integers; fractions, infinities and text are refused."""
    values = pd.to_numeric(column, errors="coerce")
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    given = column.notna().to_numpy()
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(numbers) & (np.mod(numbers, 1) == 0) & (np.abs(numbers) < MAX_R_INDEX)
    bad = given & ~whole
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise EcgmlError(
            f"{path} line {row + 2}: column r_index must hold whole sample indices, got "
            f"{column.iloc[row]!r}: give the R-peak's sample number inside the beat"
        )
    return values.astype("Int64")


def check_fs(fs: Any, source: str) -> float:
    """``fs`` as a float if it is a plausible sampling rate (:data:`MIN_FS`–:data:`MAX_FS` Hz)."""
    if not _is_finite_number(fs) or not MIN_FS <= float(fs) <= MAX_FS:
        raise EcgmlError(
            f"{source}: fs must be a number of Hz between {MIN_FS:g} and {MAX_FS:g}, got "
            f"{fs!r}: give the beats' sampling rate"
        )
    return float(fs)


def read_store_meta(root: Path, default_fs: float) -> StoreMeta:
    """Read ``beatstore.json`` when present, else defaults with ``default_fs``."""
    path = root / META_FILE
    if not path.is_file():
        return StoreMeta(
            fs=check_fs(default_fs, f"{root} has no {META_FILE}, so the configured fs applies")
        )
    try:
        raw = json.loads(read_capped(path, MAX_META_BYTES, "a small JSON file"))
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, digits
        raise EcgmlError(f"{path} is not valid JSON ({one_line(err)}): fix or delete it") from None
    if not isinstance(raw, dict):
        raise EcgmlError(
            f'{path} must hold a JSON object like {{"fs": 500, "units": "mV"}}, got '
            f"{type(raw).__name__}: fix or delete it"
        )
    fs = check_fs(raw.pop("fs", default_fs), str(path))
    units = str(raw.pop("units", "mV"))
    if units.lower() != "mv":
        raise EcgmlError(f"{path}: units {units!r} are not supported: store beats in mV")
    window = {key: raw.pop(key, None) for key in ("pre_r_ms", "post_r_ms")}
    longest_ms = 1000.0 * DEFAULT_MAX_BEAT_S
    for key, value in window.items():
        if value is not None and not (
            _is_finite_number(value) and 0.0 <= float(value) <= longest_ms
        ):
            raise EcgmlError(
                f"{path}: {key} must be a number of ms between 0 and {longest_ms:g} (a beat's "
                f"window around its R-peak) or null, got {value!r}: fix or delete it"
            )
    return StoreMeta(fs=fs, units="mV", extra=raw, **window)


def _is_finite_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def one_line(err: BaseException) -> str:
    """An exception's message on one line (parsers' messages may span several)."""
    return " ".join(str(err).split()) or type(err).__name__


class StorePathError(EcgmlError):
    """A manifest path that leaves its store: never skipped, always fatal (exit 2)."""


class StorePaths:
    """Paths of a store's listed files, refused when they leave the store (``..``, absolute, a
    symlink out). Each folder is resolved once and a file only when it is a link, so checking
    millions of rows costs one ``lstat`` each, not one ``resolve``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.real_root = self.root.resolve()
        self._real_dirs: dict[Path, Path] = {}

    def __call__(self, listed: str) -> Path:
        path = self.root / listed
        relative = os.path.normpath(listed)
        if os.path.isabs(relative) or relative == ".." or relative.startswith(f"..{os.sep}"):
            raise self._outside(path, listed)
        try:
            real_dir = self._real_dirs.get(path.parent)
            if real_dir is None:
                real_dir = self._real_dirs[path.parent] = path.parent.resolve()
            real = path.resolve() if path.is_symlink() else real_dir / path.name
        except (RuntimeError, OSError, ValueError) as err:  # a symlink loop, a NUL byte
            raise EcgmlError(f"file {path} cannot be resolved ({err}): fix the link") from None
        if not real.is_relative_to(self.real_root):
            raise self._outside(path, listed)
        return path

    def _outside(self, path: Path, listed: str) -> StorePathError:
        return StorePathError(
            f"beat file {path} (beat_file {listed!r} in {self.root / MANIFEST}) lies outside the "
            f"beat store {self.root}: list files inside the store folder, relative to it"
        )


def beat_path(root: Path, beat_file: str) -> Path:
    """``root/beat_file``, refused when it resolves outside ``root`` (``..``, absolute, symlink)."""
    return StorePaths(root)(beat_file)


def check_regular(path: Path, max_bytes: int, expected: str, fix: str = "trim it") -> None:
    """Refuse folders, devices, FIFOs and files over ``max_bytes``, without opening them.

    ``stat`` only: opening a FIFO blocks and ``/dev/zero`` never ends.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise EcgmlError(f"file {path} is listed but missing: add it or drop its row") from None
    except OSError as err:
        raise EcgmlError(f"file {path} cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise EcgmlError(f"{path} is a folder, not a file: point at {expected}")
    if not stat.S_ISREG(info.st_mode):
        raise EcgmlError(
            f"{path} is not a regular file (a device, FIFO or socket): point at {expected}"
        )
    if info.st_size > max_bytes:
        raise EcgmlError(f"{path} is {info.st_size} bytes, more than {expected} may take: {fix}")


def read_capped(path: Path, max_bytes: int, expected: str, fix: str = "trim it") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (:func:`check_regular` first)."""
    check_regular(path, max_bytes, expected, fix)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise EcgmlError(f"file {path} cannot be read ({err.strerror})") from None
    if len(data) > max_bytes:
        raise EcgmlError(f"{path} grew past {max_bytes} bytes while being read: {fix}")
    return data


def check_listed(path: Path) -> None:
    """Refuse a listed beat file that is absent or whose name the system cannot look up."""
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        raise EcgmlError(f"beat file {path} is listed in the manifest but missing") from None
    except (OSError, ValueError) as err:  # a name too long, a NUL byte
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise EcgmlError(
            f"beat file {path} cannot be looked up ({reason}): fix its name in {MANIFEST}"
        ) from None


def read_beat_csv(path: Path, limits: BeatLimits | None = None) -> np.ndarray:
    """One beat: one numeric column of samples (one header line allowed), finite values only."""
    limits = limits or BeatLimits.of(500.0, DEFAULT_MAX_BEAT_S)
    expected = f"a beat CSV of at most {limits.max_samples} samples ({limits.hint})"
    check_listed(path)
    try:
        text = read_capped(path, limits.max_bytes, expected, BEAT_FIX).decode()
    except UnicodeDecodeError as err:
        raise EcgmlError(f"beat file {path} cannot be read as text ({err})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and not _is_number(lines[0].split(",")[-1]):
        lines = lines[1:]
    if not lines:
        raise EcgmlError(f"beat file {path} holds no samples: one numeric column of mV expected")
    if len(lines) > limits.max_samples:
        raise EcgmlError(
            f"beat file {path} holds {len(lines)} samples, more than {expected}: {BEAT_FIX}"
        )
    try:
        values = np.array([float(line.split(",")[-1]) for line in lines], dtype=np.float64)
    except ValueError:
        raise EcgmlError(
            f"beat file {path} has non-numeric values: one numeric column of mV expected"
        ) from None
    with np.errstate(over="ignore"):  # beyond float32: infinite, refused below
        values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise EcgmlError(f"beat file {path} has NaN or infinite samples: clean or drop the beat")
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_beat(beat: np.ndarray, r_index: Any, limits: BeatLimits, where: str) -> None:
    """A loaded beat within ``limits`` whose ``r_index`` (when given) lies inside it."""
    if len(beat) > limits.max_samples:
        raise EcgmlError(
            f"{where}: the beat holds {len(beat)} samples, more than the at most "
            f"{limits.max_samples} samples ({limits.hint}): cut it or raise the bound"
        )
    if r_index is None or pd.isna(r_index):
        return
    if not 0 <= int(r_index) < len(beat):
        raise EcgmlError(
            f"{where}: r_index {int(r_index)} lies outside its beat of {len(beat)} samples: "
            f"give the R-peak's sample index (0 to {len(beat) - 1})"
        )


def _where(root: Path, manifest: pd.DataFrame, row: int) -> str:
    return f"{root / MANIFEST} line {row + 2} ({manifest['beat_file'].iloc[row]})"


def _r_of(manifest: pd.DataFrame, row: int) -> Any:
    return manifest["r_index"].iloc[row] if "r_index" in manifest.columns else None


def check_beats(
    root: Path, manifest: pd.DataFrame, beats: Sequence[np.ndarray], limits: BeatLimits
) -> None:
    """:func:`check_beat` for every beat of a store."""
    for row, beat in enumerate(beats):
        check_beat(beat, _r_of(manifest, row), limits, _where(root, manifest, row))


def r_amplitudes(beats: Sequence[np.ndarray]) -> np.ndarray:
    """Each beat's largest deflection from its median (mV): its R (or S) amplitude."""
    return np.array([float(np.max(np.abs(b - np.median(b)))) if len(b) else 0.0 for b in beats])


def amplitude_problem(beats: Sequence[np.ndarray]) -> str | None:
    """Why the beats' median R amplitude is implausible for mV (``None``: it is plausible)."""
    if not beats:
        return None
    median = float(np.median(r_amplitudes(beats)))
    if MIN_R_MV <= median <= MAX_R_MV:
        return None
    unit, fix = ("µV", "divide them by 1000") if median > MAX_R_MV else ("V", "multiply by 1000")
    return (
        f"median R amplitude {median:.3g} mV is outside the plausible {MIN_R_MV:g}–{MAX_R_MV:g} "
        f"mV: the samples look like {unit}, not mV ({fix})"
    )


def check_amplitude(store: BeatStore) -> None:
    """Refuse a store whose beats are not in mV (training: a unit mistake learns nothing)."""
    problem = amplitude_problem(store.beats)
    if problem is not None:
        raise EcgmlError(f"beat store {store.root}: {problem}: store beats in mV")


def content_digest(
    root: Path, manifest: pd.DataFrame, limits: BeatLimits, paths: Sequence[Path] | None = None
) -> str:
    """SHA-256 over the manifest, ``beatstore.json`` and every beat file's bytes (``paths``:
    the beat files, already checked by :class:`StorePaths`)."""
    digest = hashlib.sha256()
    digest.update((root / MANIFEST).read_bytes())
    if (root / META_FILE).is_file():
        digest.update(read_capped(root / META_FILE, MAX_META_BYTES, "a small JSON file"))
    expected = f"a beat CSV of at most {limits.max_samples} samples ({limits.hint})"
    if paths is None:
        to_path = StorePaths(root)
        paths = [to_path(beat_file) for beat_file in manifest["beat_file"]]
    for path in paths:
        check_listed(path)
        digest.update(read_capped(path, limits.max_bytes, expected, BEAT_FIX))
    return digest.hexdigest()[:16]


#: Rows of a manifest read at a time by :func:`check_listed_files`.
CHUNK_ROWS = 50_000


def check_listed_files(root: Path) -> None:
    """Stream ``root/manifest.csv``'s ``beat_file`` column and refuse the first file that is
    missing or lies outside the store, naming its line, before the whole manifest is parsed:
    a huge manifest of missing files answers at its first row, in bounded memory."""
    path = root / MANIFEST
    to_path = StorePaths(root)
    for number, listed_files in enumerate(_beat_file_chunks(path)):
        for offset, listed in enumerate(listed_files):
            if not isinstance(listed, str) or not listed.strip():
                continue  # the full validation names an empty cell
            try:
                check_listed(to_path(listed.strip()))
            except EcgmlError as err:
                line = number * CHUNK_ROWS + offset + 2
                raise type(err)(f"{path} line {line}: {err}") from None


def _beat_file_chunks(path: Path) -> Iterator[list[Any]]:
    """The ``beat_file`` column in chunks of :data:`CHUNK_ROWS` (nothing when the file has no
    such column or is no CSV: :func:`read_manifest` says so in one line)."""
    try:
        for chunk in pd.read_csv(path, usecols=["beat_file"], dtype=str, chunksize=CHUNK_ROWS):
            yield chunk["beat_file"].tolist()
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        return


def beat_store_folder(root: Path) -> Path:
    """The beat store ``root`` names: ``root`` itself, or, for a folder without
    ``manifest.csv`` whose ``beats/`` holds one (a synthetic cohort or a digitization output
    folder), ``root/beats``."""
    if not (root / MANIFEST).is_file() and (root / "beats" / MANIFEST).is_file():
        return root / "beats"
    return root


def load_beat_store(
    root: Path | str,
    default_fs: float = 500.0,
    cache_dir: Path | str | None = None,
    max_beat_s: float = DEFAULT_MAX_BEAT_S,
    skip_bad_beats: bool = False,
) -> BeatStore:
    """Load a beat store, using a packed ``.npz`` cache keyed by the store's content digest.

    Beats longer than ``max_beat_s`` (at the store's ``fs``) are refused before anything is
    padded. With ``skip_bad_beats`` (prediction) a beat that cannot be used is left out and
    listed in :attr:`BeatStore.skipped` instead of failing the store; paths outside the store
    are refused either way.
    """
    root = beat_store_folder(Path(root).resolve())
    if not skip_bad_beats and (root / MANIFEST).is_file() and not (root / PACKED).exists():
        check_listed_files(root)  # a missing file answers at its row, before the full parse
    manifest = read_manifest(root)
    info = read_store_meta(root, default_fs)
    limits = BeatLimits.of(info.fs, max_beat_s)
    if is_packed(root, manifest):
        return _load_packed(root, manifest, info, limits, skip_bad_beats)
    to_path = StorePaths(root)
    paths = [to_path(beat_file) for beat_file in manifest["beat_file"]]
    if skip_bad_beats:
        return _load_skipping(root, manifest, paths, info, limits)
    digest = content_digest(root, manifest, limits, paths)
    cache_file = Path(cache_dir) / f"beats-{digest}.npz" if cache_dir else None
    packed = (
        _read_packed(cache_file, len(manifest))
        if cache_file is not None and cache_file.is_file()
        else None
    )
    cached = packed is not None
    beats = packed if packed is not None else [read_beat_csv(path, limits) for path in paths]
    check_beats(root, manifest, beats, limits)
    if cache_file is not None and not cached:
        _write_packed(cache_file, beats)
    return BeatStore(root, manifest, beats, info, digest)


def _load_packed(
    root: Path, manifest: pd.DataFrame, info: StoreMeta, limits: BeatLimits, skipping: bool
) -> BeatStore:
    """A packed store's beats, sliced from ``samples.arrow`` (no cache needed). With
    ``skipping`` (prediction) a beat that fails its checks is left out, else it stops the load."""
    samples = PackedSamples.open(root / PACKED, "beat")
    rows = samples.rows_for(manifest, "beat_id", root / MANIFEST)
    stored = [samples.signal(int(row)) for row in rows]  # a damaged file stops the load
    beats, kept, skipped = _checked_beats(
        manifest, stored.__getitem__, lambda k: _packed_where(root, manifest, k), limits, skipping
    )
    meta = manifest.iloc[kept] if skipped else manifest
    return BeatStore(root, meta, beats, info, packed_digest(root, MANIFEST), skipped)


def _checked_beats(
    manifest: pd.DataFrame,
    read: Callable[[int], np.ndarray],
    where: Callable[[int], str],
    limits: BeatLimits,
    skipping: bool,
) -> tuple[list[np.ndarray], list[int], list[SkippedBeat]]:
    """Each manifest row's beat (``read``) within ``limits``: the usable beats and their rows,
    and with ``skipping`` the others as :class:`SkippedBeat` entries (else the first stops)."""
    beats, kept, skipped = [], [], []
    for row in range(len(manifest)):
        try:
            beat = read(row)
            check_beat(beat, _r_of(manifest, row), limits, where(row))
        except EcgmlError as err:
            if not skipping:
                raise
            ids = manifest.iloc[row]
            skipped.append(SkippedBeat(row, str(ids["beat_id"]), str(ids["patient_id"]), str(err)))
            continue
        beats.append(beat)
        kept.append(row)
    return beats, kept, skipped


def _packed_where(root: Path, manifest: pd.DataFrame, row: int) -> str:
    return f"{root / MANIFEST} line {row + 2} (beat {manifest['beat_id'].iloc[row]})"


def packed_digest(root: Path, index_name: str) -> str:
    """SHA-256 over a packed store's index, ``beatstore.json`` and ``samples.arrow``."""
    digest = hashlib.sha256((root / index_name).read_bytes())
    if (root / META_FILE).is_file():
        digest.update(read_capped(root / META_FILE, MAX_META_BYTES, "a small JSON file"))
    return str(file_digest(root / PACKED, digest).hexdigest()[:16])


def _load_skipping(
    root: Path, manifest: pd.DataFrame, paths: list[Path], info: StoreMeta, limits: BeatLimits
) -> BeatStore:
    """Every usable beat; the others become :class:`SkippedBeat` entries (meta keeps its index)."""
    beats, kept, skipped = _checked_beats(
        manifest,
        lambda row: read_beat_csv(paths[row], limits),
        lambda row: _where(root, manifest, row),
        limits,
        skipping=True,
    )
    digest = hashlib.sha256((root / MANIFEST).read_bytes())
    for beat in beats:
        digest.update(beat.tobytes())
    meta = manifest.iloc[kept]
    return BeatStore(root, meta, beats, info, digest.hexdigest()[:16], skipped)


def _read_packed(path: Path, expected_beats: int) -> list[np.ndarray] | None:
    """The beats of a packed cache, or None (after a warning, the file removed) when it is
    damaged, foreign or stale: the caller rebuilds it from the CSVs. Never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as packed:
            flat, offsets = packed["flat"], packed["offsets"]
        problem = _packed_problem(flat, offsets, expected_beats)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        problem = one_line(err)
    if problem is None:
        return [flat[a:b] for a, b in itertools.pairwise(offsets)]
    log.warning("beat cache %s is unusable (%s): rebuilding it from the beat files", path, problem)
    path.unlink(missing_ok=True)
    return None


def _packed_problem(flat: np.ndarray, offsets: np.ndarray, expected_beats: int) -> str | None:
    """Why two arrays are not a packed store of ``expected_beats`` beats (None: they are)."""
    if flat.ndim != 1 or flat.dtype != np.float32:
        return f"samples are {flat.dtype} of shape {flat.shape}, not 1-D float32"
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) != expected_beats + 1:
        return f"{max(len(offsets) - 1, 0)} beats indexed, {expected_beats} expected"
    if offsets[0] != 0 or offsets[-1] != flat.size or (np.diff(offsets) < 0).any():
        return "its offsets do not index its samples"
    return None


def _write_packed(path: Path, beats: Sequence[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in beats])]).astype(np.int64)
    flat = np.concatenate(beats).astype(np.float32) if beats else np.zeros(0, np.float32)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, flat=flat, offsets=offsets)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- writing


def write_beat_store(
    root: Path | str,
    beats: Sequence[np.ndarray],
    rows: pd.DataFrame,
    fs: float,
    pre_r_ms: float | None = None,
    post_r_ms: float | None = None,
    beats_subdir: str = "beats",
    packed: bool = False,
    dtype: str = "int16",
) -> Path:
    """Write a beat store into ``root``: one CSV per beat, or with ``packed`` every beat in
    ``samples.arrow`` (:mod:`ecgml.packstore`, samples as ``dtype``) and no beat CSV.

    ``rows`` holds one row per beat with at least ``patient_id`` and ``group`` (plus any
    optional manifest columns); ``beat_id`` defaults to ``<patient_id>_<k>``. The manifest is
    written last and atomically, so an interrupted write never looks like a complete store.
    """
    root = Path(root)
    if len(beats) != len(rows):
        raise ValueError(f"{len(beats)} beats but {len(rows)} manifest rows")
    rows = rows.reset_index(drop=True).copy()
    if "beat_id" not in rows.columns:
        rows["beat_id"] = rows.groupby("patient_id").cumcount().map("{:02d}".format)
        rows["beat_id"] = rows["patient_id"].astype(str) + "_" + rows["beat_id"]
    root.mkdir(parents=True, exist_ok=True)
    if packed:
        rows[ROW_COLUMN] = pack_beats(root / PACKED, rows["beat_id"], beats, fs, dtype)
    else:
        rows.insert(0, "beat_file", _write_beat_csvs(root, beats_subdir, rows["beat_id"], beats))
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in rows.columns]
    columns += [c for c in rows.columns if c not in columns]
    meta = {"fs": float(fs), "units": "mV", "pre_r_ms": pre_r_ms, "post_r_ms": post_r_ms}
    _write_text_atomic(root / META_FILE, json.dumps(meta, indent=2) + "\n")
    _write_text_atomic(root / MANIFEST, rows[columns].to_csv(index=False))
    return root


def _write_beat_csvs(
    root: Path, subdir: str, beat_ids: Sequence[str], beats: Sequence[np.ndarray]
) -> list[str]:
    (root / subdir).mkdir(parents=True, exist_ok=True)
    beat_files = []
    for beat_id, samples in zip(beat_ids, beats, strict=True):
        rel = f"{subdir}/{beat_id}.csv"
        _write_text_atomic(root / rel, _beat_csv_text(samples))
        beat_files.append(rel)
    return beat_files


def pack_beats(
    path: Path,
    beat_ids: Sequence[str],
    beats: Sequence[np.ndarray],
    fs: float,
    dtype: str = "int16",
) -> list[int]:
    """Every beat into the packed file ``path`` (atomic); returns each beat's row."""
    with PackedWriter(path, "beat", dtype) as writer:
        pairs = zip(beat_ids, beats, strict=True)
        rows = [writer.add(beat_id, beat, fs, ()) for beat_id, beat in pairs]
        writer.commit()
    return rows


def _beat_csv_text(samples: np.ndarray) -> str:
    values = np.asarray(samples, dtype=np.float64).ravel()
    return "mv\n" + "\n".join(f"{v:.5f}" for v in values) + "\n"


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- recordings


def beat_rows(beat_set: BeatSet, labels: Mapping[str, Any]) -> pd.DataFrame:
    """Manifest rows for one recording's beats.

    ``labels`` holds ``patient_id`` and ``group`` (default ``unknown``) and optionally
    ``record_id`` (default: the patient id) and provenance (``center``, ``device``,
    ``source_image``). Beat ids are ``<record_id>_<beat_index>``.
    """
    if "patient_id" not in labels:
        raise ValueError("labels need a patient_id")
    record_id = str(labels.get("record_id", labels["patient_id"]))
    n = len(beat_set)
    rows = pd.DataFrame(
        {
            "patient_id": [str(labels["patient_id"])] * n,
            "group": [str(labels.get("group", "unknown"))] * n,
            "beat_id": [f"{record_id}_{int(i):03d}" for i in beat_set.beat_index],
            "record_id": [record_id] * n,
            "beat_index": beat_set.beat_index.astype(int),
            "r_index": [beat_set.r_offset] * n,
        }
    )
    for key in ("center", "device", "source_image"):
        if key in labels and labels[key] is not None:
            rows[key] = str(labels[key])
    for key in SERUM_BOUNDS:  # the patient's serum values (mmol/L), when known
        if key in labels and labels[key] not in (None, ""):
            rows[key] = labels[key]
    return rows


def export_beat_store(
    root: Path | str,
    recordings: Sequence[tuple[BeatSet, Mapping[str, Any]]],
    packed: bool = False,
    dtype: str = "int16",
) -> Path:
    """Write the beats of several recordings as one beat store (``manifest.csv`` last), with
    ``packed`` into ``samples.arrow`` (:func:`write_beat_store`)."""
    recordings = [(bs, labels) for bs, labels in recordings if len(bs)]
    if not recordings:
        raise ValueError("no beats to export")
    first = recordings[0][0]
    for bs, _ in recordings:
        if (bs.fs, bs.pre_r_ms, bs.post_r_ms) != (first.fs, first.pre_r_ms, first.post_r_ms):
            raise ValueError("all recordings must share fs and the beat window to share a store")
    beats = [beat for bs, _ in recordings for beat in bs.beats]
    rows = pd.concat([beat_rows(bs, labels) for bs, labels in recordings], ignore_index=True)
    return write_beat_store(
        root,
        beats,
        rows,
        fs=first.fs,
        pre_r_ms=first.pre_r_ms,
        post_r_ms=first.post_r_ms,
        packed=packed,
        dtype=dtype,
    )
