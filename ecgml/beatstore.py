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
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml import GROUPS
from ecgml.errors import EcgmlError
from ecgml.signal.windows import BeatSet

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
)
VALID_GROUPS = (*GROUPS, "unknown")
PROVENANCE_COLUMNS = ("record_id", "beat_index", "r_index", "center", "device", "source_image")


@dataclass(frozen=True)
class StoreMeta:
    """Contents of ``beatstore.json`` (all optional in a user's store)."""

    fs: float = 500.0
    units: str = "mV"
    pre_r_ms: float | None = None
    post_r_ms: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class BeatStore:
    """A loaded beat store: one row of ``meta`` per beat, samples in ``beats`` (ragged)."""

    root: Path
    meta: pd.DataFrame
    beats: list[np.ndarray]
    info: StoreMeta
    digest: str

    def __len__(self) -> int:
        return len(self.beats)


# --------------------------------------------------------------------------- reading


def read_manifest(root: Path | str) -> pd.DataFrame:
    """Read and validate ``root/manifest.csv``; returns one row per beat, ``beat_id`` filled."""
    root = Path(root)
    if not root.exists():
        raise EcgmlError(f"beat store folder {root} does not exist: pass an existing folder")
    if not root.is_dir():
        raise EcgmlError(f"beat store {root} is not a folder: pass the folder holding {MANIFEST}")
    path = root / MANIFEST
    if not path.is_file():
        raise EcgmlError(
            f"{path} is missing: a beat store needs a {MANIFEST} with columns "
            f"{', '.join(REQUIRED_COLUMNS)} (see README, 'Bring your own data')"
        )
    try:
        manifest = pd.read_csv(path, dtype={"patient_id": str, "beat_id": str, "record_id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise EcgmlError(f"{path} is not a readable CSV ({err}): fix or regenerate it") from None
    return validate_manifest(manifest, path)


def validate_manifest(manifest: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Check columns, values and uniqueness; return a cleaned copy."""
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise EcgmlError(
            f"{path} lacks column(s) {', '.join(missing)}: required are "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    if manifest.empty:
        raise EcgmlError(f"{path} lists no beats: add one row per beat CSV")
    manifest = manifest.copy()
    for column in ("beat_file", "patient_id", "group"):
        blank = manifest[column].isna() | (manifest[column].astype(str).str.strip() == "")
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0]) + 2
            raise EcgmlError(f"{path} line {row}: empty '{column}': every beat needs one")
        manifest[column] = manifest[column].astype(str).str.strip()
    manifest["group"] = manifest["group"].str.lower()
    bad = sorted(set(manifest["group"]) - set(VALID_GROUPS))
    if bad:
        raise EcgmlError(
            f"{path}: unknown group value(s) {', '.join(map(repr, bad))}: use one of "
            f"{', '.join(VALID_GROUPS)}"
        )
    if "beat_id" not in manifest.columns:
        manifest["beat_id"] = manifest["beat_file"]
    manifest["beat_id"] = manifest["beat_id"].fillna(manifest["beat_file"]).astype(str)
    duplicated = manifest["beat_id"][manifest["beat_id"].duplicated()]
    if not duplicated.empty:
        raise EcgmlError(
            f"{path}: beat_id {duplicated.iloc[0]!r} appears more than once: "
            "beat ids must be unique"
        )
    if "r_index" in manifest.columns:
        r_index = pd.to_numeric(manifest["r_index"], errors="coerce")
        if (r_index.isna() & manifest["r_index"].notna()).any():
            raise EcgmlError(f"{path}: column r_index must hold whole sample indices")
        manifest["r_index"] = r_index.astype("Int64")
    return manifest.reset_index(drop=True)


def read_store_meta(root: Path, default_fs: float) -> StoreMeta:
    """Read ``beatstore.json`` when present, else defaults with ``default_fs``."""
    path = root / META_FILE
    if not path.is_file():
        return StoreMeta(fs=float(default_fs))
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EcgmlError(f"{path} is not valid JSON ({err}): fix or delete it") from None
    fs = raw.pop("fs", default_fs)
    if not isinstance(fs, int | float) or fs <= 0:
        raise EcgmlError(f"{path}: fs must be a positive number of Hz, got {fs!r}")
    units = str(raw.pop("units", "mV"))
    if units.lower() != "mv":
        raise EcgmlError(f"{path}: units {units!r} are not supported: store beats in mV")
    return StoreMeta(
        fs=float(fs),
        units="mV",
        pre_r_ms=raw.pop("pre_r_ms", None),
        post_r_ms=raw.pop("post_r_ms", None),
        extra=raw,
    )


def read_beat_csv(path: Path) -> np.ndarray:
    """One beat: one numeric column of samples (one header line allowed), finite values only."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EcgmlError(f"beat file {path} is listed in the manifest but missing") from None
    except (UnicodeDecodeError, OSError) as err:
        raise EcgmlError(f"beat file {path} cannot be read as text ({err})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and not _is_number(lines[0].split(",")[-1]):
        lines = lines[1:]
    if not lines:
        raise EcgmlError(f"beat file {path} holds no samples: one numeric column of mV expected")
    try:
        values = np.array([float(line.split(",")[-1]) for line in lines], dtype=np.float32)
    except ValueError:
        raise EcgmlError(
            f"beat file {path} has non-numeric values: one numeric column of mV expected"
        ) from None
    if not np.all(np.isfinite(values)):
        raise EcgmlError(f"beat file {path} has NaN or infinite samples: clean or drop the beat")
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def content_digest(root: Path, manifest: pd.DataFrame) -> str:
    """SHA-256 over the manifest, ``beatstore.json`` and every beat file's bytes."""
    digest = hashlib.sha256()
    digest.update((root / MANIFEST).read_bytes())
    if (root / META_FILE).is_file():
        digest.update((root / META_FILE).read_bytes())
    for beat_file in manifest["beat_file"]:
        path = root / beat_file
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            raise EcgmlError(f"beat file {path} is listed in the manifest but missing") from None
    return digest.hexdigest()[:16]


def load_beat_store(
    root: Path | str, default_fs: float = 500.0, cache_dir: Path | str | None = None
) -> BeatStore:
    """Load a beat store, using a packed ``.npz`` cache keyed by the store's content digest."""
    root = Path(root).resolve()
    manifest = read_manifest(root)
    info = read_store_meta(root, default_fs)
    digest = content_digest(root, manifest)
    cache_file = Path(cache_dir) / f"beats-{digest}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        beats = _read_packed(cache_file)
        if len(beats) == len(manifest):
            return BeatStore(root, manifest, beats, info, digest)
    beats = [read_beat_csv(root / beat_file) for beat_file in manifest["beat_file"]]
    if cache_file is not None:
        _write_packed(cache_file, beats)
    return BeatStore(root, manifest, beats, info, digest)


def _read_packed(path: Path) -> list[np.ndarray]:
    with np.load(path) as packed:
        flat, offsets = packed["flat"], packed["offsets"]
    return [flat[a:b] for a, b in itertools.pairwise(offsets)]


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
) -> Path:
    """Write a beat store into ``root``.

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
    (root / beats_subdir).mkdir(parents=True, exist_ok=True)
    beat_files = []
    for beat_id, samples in zip(rows["beat_id"], beats, strict=True):
        rel = f"{beats_subdir}/{beat_id}.csv"
        _write_text_atomic(root / rel, _beat_csv_text(samples))
        beat_files.append(rel)
    rows.insert(0, "beat_file", beat_files)
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in rows.columns]
    columns += [c for c in rows.columns if c not in columns]
    meta = {"fs": float(fs), "units": "mV", "pre_r_ms": pre_r_ms, "post_r_ms": post_r_ms}
    _write_text_atomic(root / META_FILE, json.dumps(meta, indent=2) + "\n")
    _write_text_atomic(root / MANIFEST, rows[columns].to_csv(index=False))
    return root


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
    return rows


def export_beat_store(
    root: Path | str, recordings: Sequence[tuple[BeatSet, Mapping[str, Any]]]
) -> Path:
    """Write the beats of several recordings as one beat store (``manifest.csv`` last)."""
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
        root, beats, rows, fs=first.fs, pre_r_ms=first.pre_r_ms, post_r_ms=first.post_r_ms
    )
