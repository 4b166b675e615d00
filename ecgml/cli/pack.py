"""``python -m ecgml.pack store=DIR``: a CSV beat or record store's samples packed into
``DIR/samples.arrow`` (:mod:`ecgml.packstore`), its index gaining ``packed_row``.

The store is read strictly first (a bad beat stops with its line, exit 2); a record that cannot
be read keeps its CSV row unpacked and is skipped at training with its reason, as before. The
packed file is renamed into place first and the index last, each through a temporary: an
interrupted pack leaves an index without ``packed_row``, which reads its CSV files as before.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm import tqdm

from ecgml.beatstore import MANIFEST, load_beat_store, read_manifest
from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.outputs import init_worker
from ecgml.outputs.engine import check_address, check_reachable, executor, local_workers
from ecgml.outputs.files import storage_error
from ecgml.packstore import PACKED, ROW_COLUMN, PackedWriter
from ecgml.recordstore import (
    RECORDS,
    RecordProblem,
    read_record_csv,
    read_records_table,
    record_path,
)

log = logging.getLogger("ecgml.pack")


@dataclass(frozen=True)
class Packed:
    """What one store's packing did."""

    folder: Path
    unit: str
    rows: int
    left: int  # rows left unpacked (records whose CSV could not be read)
    csv_bytes: int
    packed_bytes: int

    def line(self) -> str:
        share = 100.0 * self.packed_bytes / max(self.csv_bytes, 1)
        left = f", {self.left} unreadable left to their CSV" if self.left else ""
        return (
            f"packed {self.rows} {self.unit}s of {self.folder} into {self.folder / PACKED} "
            f"({self.packed_bytes / 1e6:.1f} MB, {share:.0f}% of their CSV bytes{left})"
        )


#: How one kind of store is packed: ``(folder, config) -> Packed`` (None: already packed).
Packer = Callable[[Path, DictConfig], "Packed | None"]


def stores_in(root: Path) -> list[tuple[Path, Packer]]:
    """The stores ``store=DIR`` names, each with its packer: its own ``records.csv`` /
    ``manifest.csv``, and a cohort folder's ``beats/`` beat store."""
    found: list[tuple[Path, Packer]] = []
    if (root / RECORDS).is_file():
        found.append((root, _pack_records_as_configured))
    for folder in (root, root / "beats"):
        if (folder / MANIFEST).is_file():
            if folder == root and found:  # one samples.arrow per folder: the records' here
                log.warning(
                    "%s: a beat store beside a record store keeps its CSV files (both would "
                    "pack into %s); digitize again to get it as a packed beats/ store",
                    root / MANIFEST,
                    root / PACKED,
                )
                continue
            found.append((folder, _pack_beats_as_configured))
    return found


def _pack_records_as_configured(folder: Path, cfg: DictConfig) -> Packed | None:
    workers = local_workers(cfg.get("n_jobs"))
    address = check_address(cfg.get("engine", {}).get("address"))
    check_reachable(address)
    return pack_record_store(folder, str(cfg.dtype), workers, address)


def _pack_beats_as_configured(folder: Path, cfg: DictConfig) -> Packed | None:
    return pack_beat_store(folder, str(cfg.dtype), float(cfg.fs), float(cfg.max_beat_s))


def pack_beat_store(folder: Path, dtype: str, fs: float, max_beat_s: float) -> Packed | None:
    """Pack a CSV beat store (None: already packed)."""
    if ROW_COLUMN in read_manifest(folder).columns and (folder / PACKED).is_file():
        return None
    store = load_beat_store(folder, default_fs=fs, max_beat_s=max_beat_s)
    paths = [folder / name for name in store.meta["beat_file"]]
    with PackedWriter(folder / PACKED, "beat", dtype) as writer:
        beats = tqdm(store.beats, desc="packing beats", unit="beat", disable=None)
        rows = [
            writer.add(bid, b, store.info.fs, ())
            for bid, b in zip(store.meta["beat_id"], beats, strict=True)
        ]
        writer.commit()
    _rewrite_index(folder / MANIFEST, rows)
    return Packed(folder, "beat", len(rows), 0, _bytes(paths), (folder / PACKED).stat().st_size)


def pack_record_store(
    folder: Path, dtype: str, n_jobs: int = 1, address: str | None = None
) -> Packed | None:
    """Pack a CSV record store (None: already packed); its CSVs are parsed by ``n_jobs``
    local processes or the Dask cluster at ``address``, in order."""
    table = read_records_table(folder)
    if ROW_COLUMN in table.columns and (folder / PACKED).is_file():
        return None
    paths = [record_path(folder, name) for name in table["record_file"]]  # outside: fatal
    rows: list[int | None] = []
    read: list[Path] = []
    with ExitStack() as stack:
        writer = stack.enter_context(PackedWriter(folder / PACKED, "record", dtype))
        parsed = _parsed(paths, n_jobs, address, stack)
        bar = tqdm(total=len(paths), desc="packing records", unit="record", disable=None)
        stack.enter_context(bar)
        for item, path, result in zip(table.itertuples(index=False), paths, parsed, strict=True):
            bar.update(1)
            if isinstance(result, str):
                log.warning("record %s left to its CSV: %s", item.record_id, result)
                rows.append(None)
                continue
            fs, leads, signal = result
            rows.append(writer.add(str(item.record_id), signal, fs, leads))
            read.append(path)
        writer.commit()
    _rewrite_index(folder / RECORDS, rows)
    left = sum(row is None for row in rows)
    size = (folder / PACKED).stat().st_size
    return Packed(folder, "record", len(rows) - left, left, _bytes(read), size)


#: What parsing one record CSV gives: its ``(fs, leads, signal)``, or why it cannot be used.
Parsed = tuple[float, tuple[str, ...], np.ndarray] | str


def parse_record(path: Path) -> Parsed:
    try:
        return read_record_csv(path)
    except RecordProblem as problem:
        return str(problem)


def _parsed(
    paths: list[Path], n_jobs: int, address: str | None, stack: ExitStack
) -> Iterator[Parsed]:
    if n_jobs <= 1 and address is None:
        return map(parse_record, paths)
    pool = stack.enter_context(executor(n_jobs, address, init_worker))
    return pool.map(parse_record, paths, chunksize=32)


def _rewrite_index(path: Path, rows: list[int] | list[int | None]) -> None:
    """``path`` with a ``packed_row`` column, every other cell as written (atomic)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table[ROW_COLUMN] = pd.array(rows, dtype="Int64")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise storage_error(err, path) or EcgmlError(f"cannot write {path}: {err}") from None


def _bytes(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths)


def pack(cfg: DictConfig) -> list[Packed]:
    """Pack every store ``store=DIR`` names; print one line per store."""
    if not cfg.store:
        raise EcgmlError("no store: pass store=DIR (a folder with manifest.csv or records.csv)")
    root = Path(str(cfg.store)).expanduser().resolve()
    if str(cfg.dtype) not in ("int16", "float32"):
        raise EcgmlError(f"dtype={cfg.dtype!r} is not a packed sample type: use int16 or float32")
    stores = stores_in(root) if root.is_dir() else []
    if not stores:
        raise EcgmlError(
            f"{root} holds neither {MANIFEST} nor {RECORDS}: pass a beat or record store folder"
        )
    done = []
    for folder, pack_store in stores:
        result = pack_store(folder, cfg)
        if result is None:
            print(f"{folder} is already packed ({folder / PACKED})")
            continue
        print(result.line())
        done.append(result)
    return done


main = hydra_entry("pack")(pack)
