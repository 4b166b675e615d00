"""The packed samples of a beat or record store: ``DIR/samples.arrow`` beside its index.

One Arrow IPC file (Feather v2, uncompressed) holds every example's samples once, in binary:
one row per beat or record with its ``id``, ``fs``, ``leads`` (``;``-joined) and ``mv`` (the
leads' samples one after another). Samples are whole microvolts in ``int16`` (a documented
quantization of at most 0.5 µV, lossless for any ECG digitized at 1 µV or coarser: MIMIC-IV-ECG
stores 5 µV steps) unless a sample lies beyond ±32.767 mV, when the whole file is ``float32`` mV.
The file is memory-mapped: opening it reads no sample, and an example's samples are a slice of
the mapped buffer, so a store larger than memory trains, and worker processes share the pages.

Why Arrow IPC (``experiments/pack_formats.py``, 8,820 lead-II 10 s records): 13 % of the CSV
bytes, opened in milliseconds and read at ~150,000 random records/s; Parquet with zstd is
smaller (8.5 %) but decodes a whole row group per read (~60 random records/s), too slow for a
shuffled loader; ``.npy`` is as fast but carries neither ids nor metadata.

The index (``manifest.csv`` / ``records.csv``) names each example's row in its
``packed_row`` column, and that row's ``id`` must equal the index row's id: a subset or a
reordering of the index still reads, a mismatch is one line naming both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

from ecgml.errors import EcgmlError
from ecgml.outputs.files import storage_error

PACKED = "samples.arrow"
ROW_COLUMN = "packed_row"
#: Version of the packed layout written here; a file with a larger one is refused.
FORMAT_VERSION = 1
#: One ``int16`` step in mV (1 µV), and the largest magnitude it holds.
INT16_STEP_MV = 0.001
INT16_LIMIT_MV = 32767 * INT16_STEP_MV
#: Samples buffered per record batch (~8 MB as int16).
BATCH_VALUES = 1 << 22
UNITS = ("beat", "record")
REPACK = "rebuild it with `python -m ecgml.pack store={root}` from the CSV files"


def packed_path(root: Path) -> Path:
    return Path(root) / PACKED


def is_packed(root: Path, index: pd.DataFrame) -> bool:
    """A store reads its samples from ``samples.arrow`` when the file exists and the index has a
    ``packed_row`` column (an index without it, e.g. one restored after a failed pack, reads
    its CSV files)."""
    return ROW_COLUMN in index.columns and packed_path(root).exists()


# --------------------------------------------------------------------------- writing


def _schema(dtype: str, unit: str) -> pa.Schema:
    values = pa.int16() if dtype == "int16" else pa.float32()
    fields = [
        pa.field("id", pa.string()),
        pa.field("fs", pa.float64()),
        pa.field("leads", pa.string()),
        pa.field("mv", pa.list_(values)),
    ]
    scale = INT16_STEP_MV if dtype == "int16" else 1.0
    meta = {"ecgml.format": str(FORMAT_VERSION), "ecgml.unit": unit, "ecgml.scale_mv": repr(scale)}
    return pa.schema(fields, metadata=meta)


class PackedWriter:
    """Streams examples into ``samples.arrow`` through a hidden temporary in the same folder,
    renamed into place by :meth:`commit` (an interrupted or failed write leaves the previous
    file, if any, untouched and no temporary). ``dtype`` ``int16`` (µV) switches the whole file
    to ``float32`` at the first sample beyond ±32.767 mV."""

    def __init__(self, path: Path, unit: str, dtype: str = "int16") -> None:
        if unit not in UNITS or dtype not in ("int16", "float32"):
            raise ValueError(f"unit {unit!r} / dtype {dtype!r}")
        self.path = Path(path)
        self.unit = unit
        self.dtype = dtype
        self.rows = 0
        self._pending: list[tuple[str, float, str, np.ndarray]] = []
        self._pending_values = 0
        self._tmp = self._new_tmp()
        self._writer = self._open(self._tmp)

    def _new_tmp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")

    def _open(self, tmp: Path) -> ipc.RecordBatchFileWriter:
        with self._storage(tmp):
            return ipc.new_file(str(tmp), _schema(self.dtype, self.unit))

    def __enter__(self) -> PackedWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            self.abort()

    def add(self, item_id: str, signal: np.ndarray, fs: float, leads: Sequence[str]) -> int:
        """Append one example (``(n,)`` or ``(n_leads, n)`` mV, finite); returns its row."""
        values = np.asarray(signal, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{item_id}: NaN or infinite samples cannot be packed")
        if self.dtype == "int16" and values.size and np.abs(values).max() > INT16_LIMIT_MV:
            self._switch_to_float32()
        self._pending.append((str(item_id), float(fs), ";".join(leads), values))
        self._pending_values += values.size
        if self._pending_values >= BATCH_VALUES:
            self._flush()
        self.rows += 1
        return self.rows - 1

    def _encode(self, values: np.ndarray) -> np.ndarray:
        if self.dtype == "int16":
            return np.rint(values / INT16_STEP_MV).astype(np.int16)
        return values.astype(np.float32)

    def _flush(self) -> None:
        if not self._pending:
            return
        ids, fs, leads, arrays = zip(*self._pending, strict=True)
        lengths = [len(a) for a in arrays]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        flat = self._encode(np.concatenate(arrays)) if arrays else np.zeros(0)
        mv = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        batch = pa.record_batch(
            [pa.array(ids, pa.string()), pa.array(fs, pa.float64()), pa.array(leads), mv],
            schema=_schema(self.dtype, self.unit),
        )
        with self._storage(self._tmp):
            self._writer.write_batch(batch)
        self._pending, self._pending_values = [], 0

    def _switch_to_float32(self) -> None:
        """Rewrite what was written as float32 mV and go on in float32."""
        self._writer.close()
        old, self.dtype = self._tmp, "float32"
        self._tmp = self._new_tmp()
        self._writer = self._open(self._tmp)
        with pa.memory_map(str(old)) as source:
            reader = ipc.open_file(source)
            for k in range(reader.num_record_batches):
                batch = reader.get_batch(k)
                mv = batch.column("mv")
                values = mv.values.to_numpy().astype(np.float32) * np.float32(INT16_STEP_MV)
                column = pa.ListArray.from_arrays(mv.offsets, pa.array(values))
                arrays = [batch.column("id"), batch.column("fs"), batch.column("leads"), column]
                with self._storage(self._tmp):
                    self._writer.write_batch(
                        pa.record_batch(arrays, schema=_schema("float32", self.unit))
                    )
        old.unlink(missing_ok=True)

    def commit(self) -> Path:
        """Write the rest, close and rename into place; returns the final path."""
        try:
            self._flush()
            with self._storage(self._tmp):
                self._writer.close()
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(OSError, pa.ArrowException):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def _storage(self, where: Path) -> _StorageErrors:
        return _StorageErrors(self, where)


class _StorageErrors:
    """Turns a full disk (or another storage error) while packing into one line, after the
    temporary is removed."""

    def __init__(self, writer: PackedWriter, where: Path) -> None:
        self.writer, self.where = writer, where

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: Any, _tb: Any) -> None:
        if isinstance(err, OSError):
            known = storage_error(err, self.writer.path)
            self.where.unlink(missing_ok=True)
            if known is not None:
                raise known from None
            raise EcgmlError(f"cannot write {self.writer.path}: {err.strerror or err}") from None


# --------------------------------------------------------------------------- reading


@dataclass
class PackedSamples:
    """A memory-mapped ``samples.arrow``: :meth:`signal` slices one example's samples."""

    path: Path
    unit: str
    ids: np.ndarray
    fs: np.ndarray
    leads: list[str]
    scale: float
    _values: list[np.ndarray]
    _offsets: list[np.ndarray]
    _batch: np.ndarray
    _position: np.ndarray

    @classmethod
    def open(cls, path: Path, unit: str) -> PackedSamples:
        """Open and check the file's structure (its rows, offsets and format version); a
        missing, truncated, corrupted, foreign or newer file is one line naming it."""
        path = Path(path)
        try:
            return cls._open(path, unit)
        except EcgmlError:
            raise
        except FileNotFoundError:
            raise EcgmlError(f"{path} is missing: {REPACK.format(root=path.parent)}") from None
        except (OSError, pa.ArrowException, ValueError, KeyError, IndexError, TypeError) as err:
            raise EcgmlError(
                f"{path} is not a readable packed store ({_one_line(err)}): it is truncated or "
                f"corrupted; {REPACK.format(root=path.parent)}, or restore the folder"
            ) from None

    @classmethod
    def _open(cls, path: Path, unit: str) -> PackedSamples:
        reader = ipc.open_file(pa.memory_map(str(path)))
        _check_schema(path, reader.schema, unit)
        batches = [reader.get_batch(k) for k in range(reader.num_record_batches)]
        for batch in batches:  # offsets, lengths and text: never index out of a buffer
            batch.validate(full=True)
        scale = float((reader.schema.metadata or {}).get(b"ecgml.scale_mv", b"1"))
        if scale not in (1.0, INT16_STEP_MV):
            raise ValueError(f"unknown sample scale {scale!r}")
        values = [b.column("mv").values.to_numpy(zero_copy_only=True) for b in batches]
        offsets = [_checked_offsets(path, b.column("mv")) for b in batches]
        counts = [batch.num_rows for batch in batches]

        def column(name: str) -> list[np.ndarray]:
            return [b.column(name).to_numpy(zero_copy_only=False) for b in batches]

        return cls(
            path=path,
            unit=unit,
            ids=np.concatenate(column("id")) if batches else np.zeros(0, dtype=object),
            fs=np.concatenate(column("fs")) if batches else np.zeros(0),
            leads=[name or "" for b in batches for name in b.column("leads").to_pylist()],
            scale=scale,
            _values=values,
            _offsets=offsets,
            _batch=np.repeat(np.arange(len(counts)), counts),
            _position=np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, str]:
        """Pickled (e.g. into a DataLoader worker) as its path: the worker maps the file."""
        return {"path": str(self.path), "unit": self.unit}

    def __setstate__(self, state: dict[str, str]) -> None:
        self.__dict__.update(PackedSamples.open(Path(state["path"]), state["unit"]).__dict__)

    def lead_names(self, row: int) -> tuple[str, ...]:
        return tuple(self.leads[row].split(";")) if self.leads[row] else ()

    def signal(self, row: int) -> np.ndarray:
        """Row ``row``'s samples in mV, float32: ``(n,)`` for a beat (no lead names),
        ``(n_leads, n)`` for a record."""
        batch, position = int(self._batch[row]), int(self._position[row])
        start, stop = self._offsets[batch][position : position + 2]
        raw = self._values[batch][start:stop]
        values = raw.astype(np.float32)
        if self.scale != 1.0:
            values *= np.float32(self.scale)
        elif not np.isfinite(values).all():  # float32 files only: int16 is always finite
            raise EcgmlError(
                f"{self.path} row {row} ({self.ids[row]}) holds NaN or infinite samples: the "
                f"file is corrupted; {REPACK.format(root=self.path.parent)}"
            )
        n_leads = len(self.lead_names(row))
        if not n_leads:  # a beat: one lead, named by its store
            return values
        if values.size % n_leads:
            raise EcgmlError(
                f"{self.path} row {row}: {values.size} samples do not split into {n_leads} "
                f"leads: {REPACK.format(root=self.path.parent)}"
            )
        return values.reshape(n_leads, -1)

    def rows_for(self, index: pd.DataFrame, id_column: str, index_path: Path) -> np.ndarray:
        """Each index row's ``packed_row``, checked: a whole number naming a row of this file
        that holds the same id. A mismatch is one line naming the index line and both ids."""
        rows = pd.to_numeric(index[ROW_COLUMN], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(rows) | (np.mod(rows, 1) != 0) | (rows < 0) | (rows >= len(self))
        lines = np.asarray(index.index, dtype=np.int64) + 2  # the file's line of each row
        if bad.any():
            line = int(np.flatnonzero(bad)[0])
            raise EcgmlError(
                f"{index_path} line {lines[line]}: {ROW_COLUMN} {index[ROW_COLUMN].iloc[line]!r} "
                f"is not a row of {self.path} ({len(self)} rows): the index and the packed "
                f"samples disagree; {REPACK.format(root=self.path.parent)}"
            )
        whole = rows.astype(np.int64)
        wrong = self.ids[whole] != index[id_column].astype(str).to_numpy()
        if wrong.any():
            line = int(np.flatnonzero(wrong)[0])
            raise EcgmlError(
                f"{index_path} line {lines[line]}: {id_column} {index[id_column].iloc[line]!r} but "
                f"{self.path} row {whole[line]} holds {self.ids[whole[line]]!r}: the index and "
                f"the packed samples disagree; {REPACK.format(root=self.path.parent)}"
            )
        return whole


def _check_schema(path: Path, schema: pa.Schema, unit: str) -> None:
    meta = schema.metadata or {}
    version = meta.get(b"ecgml.format")
    types = [str(field.type) for field in schema]
    expected = [["string"], ["double"], ["string"], ["list<item: int16>", "list<item: float>"]]
    if (
        version is None
        or schema.names != ["id", "fs", "leads", "mv"]
        or not all(t in allowed for t, allowed in zip(types, expected, strict=True))
    ):
        raise EcgmlError(
            f"{path} is not an ecgml packed store (columns {schema.names}): "
            f"{REPACK.format(root=path.parent)}"
        )
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise EcgmlError(
            f"{path} was written by a newer ecgml (packed format {version.decode(errors='replace')}"
            f", this ecgml reads up to {FORMAT_VERSION}): upgrade ecgml to read it"
        )
    written = meta.get(b"ecgml.unit", b"").decode(errors="replace")
    if written != unit:
        raise EcgmlError(
            f"{path} packs {written or 'unknown'}s, not {unit}s: it belongs to another store"
        )


def _checked_offsets(path: Path, mv: pa.ListArray) -> np.ndarray:
    offsets = mv.offsets.to_numpy()
    if (
        len(offsets) != len(mv) + 1
        or (len(offsets) and (offsets[0] < 0 or offsets[-1] > len(mv.values)))
        or (np.diff(offsets) < 0).any()
    ):
        raise EcgmlError(
            f"{path} has offsets that do not index its samples: it is corrupted; "
            f"{REPACK.format(root=path.parent)}"
        )
    return offsets


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def file_digest(path: Path, digest: Any | None = None) -> Any:
    """``digest`` (a new SHA-256 when None) updated with ``path``'s bytes, read in chunks."""
    digest = digest or hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest
