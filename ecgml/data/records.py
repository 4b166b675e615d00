"""From a record store to Lightning: every beat of each recording, and the whole strip.

Each record is cut into beats by ecgml's own R-peak detection and quality filter
(:func:`ecgml.signal.extract_beats`, the code ``ecgml.beats`` uses, on lead II when present),
and the same R-peaks cut every selected lead, so a record becomes an array
``(n_beats, n_leads, L)`` with the R-peak at one column (``r_index``); ``n_beats`` varies by
record. The strip (the selected leads over the whole recording, resampled to ``strip_fs`` and
padded/cropped to ``strip_s``) feeds the whole-strip models. Batches pad the beat axis and carry
a ``mask`` (True: a real beat). Labels and the patient-level split are those of the beat path
(:meth:`ecgml.data.tasks.TaskSpec.labels`, :func:`ecgml.data.splits.build_split`): a patient's
records all fall into one subset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from ecgml.data.datamodule import (
    ExamplesDataModule,
    ExampleTable,
    assign_splits,
    store_universe,
)
from ecgml.data.labels import LabelSummary
from ecgml.data.tasks import TaskSpec, task_spec
from ecgml.errors import EcgmlError
from ecgml.recordstore import (
    LEADS,
    RECORDS,
    Record,
    RecordStore,
    SkippedRecord,
    load_record_store,
    reason_kind,
    write_records_csv,
)
from ecgml.signal import (
    DEFAULT_POST_R_MS,
    DEFAULT_PRE_R_MS,
    extract_beats,
    extract_windows,
    prepare_strip,
    reference_beats,
)
from ecgml.synth import ensure_cohort

log = logging.getLogger(__name__)
#: Beats kept per record at most (the first ones): a 10 s strip holds 8-20.
DEFAULT_MAX_BEATS = 40
DEFAULT_STRIP_FS = 100.0
DEFAULT_STRIP_S = 10.0


def data_unit(cfg: Any) -> str:
    """The run's unit of data, ``beat`` or ``record`` (``data=records`` is always ``record``,
    also in a config stored before its ``unit`` key existed)."""
    data = cfg.data
    return "record" if str(data.get("source")) == "records" else str(data.get("unit", "beat"))


def resolve_leads(leads: Any) -> tuple[str, ...]:
    """``data.leads``: ``[II]`` (default), a list of lead names, or ``all`` (the 12)."""
    if leads is None:
        return ("II",)
    if isinstance(leads, str):
        leads = list(LEADS) if leads == "all" else [leads]
    names = tuple(str(lead) for lead in leads)
    unknown = [n for n in names if n not in LEADS]
    if unknown or not names:
        raise EcgmlError(
            f"data.leads={list(names)!r} is not valid: use all, or a list of {', '.join(LEADS)}"
        )
    return names


def resolve_record_store(data_cfg: Any) -> Path:
    """The record store of ``data=records`` (``data.path``) or of the synthetic cohort."""
    if str(data_cfg.source) == "synthetic":
        folder = ensure_cohort(data_cfg.cohort, Path(data_cfg.cache_dir))
        if not (folder / RECORDS).is_file():  # a cohort cached before records.csv existed
            patients = pd.read_csv(folder / "patients.csv", dtype={"patient_id": str})
            write_records_csv(folder, patients, (folder / "signals12").is_dir())
        return folder
    if OmegaConf.is_missing(data_cfg, "path") or not data_cfg.get("path"):
        raise EcgmlError("data=records needs data.path=/folder/with/records.csv")
    return Path(str(data_cfg.path)).expanduser().resolve()


# --------------------------------------------------------------------------- cutting


@dataclass
class RecordBeats:
    """One record's beats ``(n, n_leads, L)`` (R at column ``r_offset``) and its strip."""

    beats: np.ndarray
    strip: np.ndarray
    r_offset: int
    n_rejected: int


def cut_record(
    record: Record,
    leads: tuple[str, ...],
    baseline: str = "none",
    strip_fs: float = DEFAULT_STRIP_FS,
    strip_s: float = DEFAULT_STRIP_S,
    max_beats: int = DEFAULT_MAX_BEATS,
) -> RecordBeats:
    """Beats of ``record`` at ecgml's R-peaks (detected on lead II when the record has it, else
    on the first selected lead), interference beats rejected; ``ValueError`` when none is left."""
    detect_on = "II" if "II" in record.leads else leads[0]
    found = extract_beats(record.lead(detect_on), record.fs)
    if len(found) == 0:
        raise ValueError(f"no detectable beats ({len(found.rejected)} rejected)")
    r = found.r_indices[:max_beats]
    per_lead = []
    for name in leads:
        windows, kept = extract_windows(
            record.lead(name), r, record.fs, DEFAULT_PRE_R_MS, DEFAULT_POST_R_MS
        )
        assert len(kept) == len(r)  # same R-peaks, same signal length: every window fits
        if baseline != "none":
            windows = np.stack(
                reference_beats(list(windows), [found.r_offset] * len(r), record.fs, baseline)
            )
        per_lead.append(windows)
    beats = np.stack(per_lead, axis=1).astype(np.float32)
    return RecordBeats(
        beats, make_strip(record, leads, strip_fs, strip_s), found.r_offset, len(found.rejected)
    )


def make_strip(
    record: Record, leads: tuple[str, ...], strip_fs: float, strip_s: float
) -> np.ndarray:
    """The selected leads ``(n_leads, round(strip_s * strip_fs))`` at ``strip_fs``, each minus its
    median (the recorder's offset), zero-padded or cropped at the end (:func:`prepare_strip`,
    which ``ecgml.predict`` applies to a served strip model's input too)."""
    width = round(strip_s * strip_fs)
    return np.stack(
        [prepare_strip(record.lead(name), record.fs, strip_fs, width) for name in leads]
    )


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class InputLayout:
    """What one input of a record model is: its length and rate, the R-peak's column (none: a
    strip, start-aligned) and the unit its logged model declares."""

    seq_len: int
    fs: float
    r_index: int | None
    unit: str


@dataclass
class RecordTable(ExampleTable):
    """Per record: beats ``(n_beats, n_leads, L)`` and a strip ``(n_leads, S)``, with one
    ``meta`` row each (record_id, patient_id, group, targets, split, n_beats)."""

    beats: list[np.ndarray]
    strips: np.ndarray
    meta: pd.DataFrame
    fs: float
    leads: tuple[str, ...]
    r_index: int
    strip_fs: float
    summary: LabelSummary
    splits: pd.DataFrame
    task: TaskSpec
    digest: str = ""
    skipped: list[SkippedRecord] = field(default_factory=list)

    @property
    def seq_len(self) -> int:
        return int(self.beats[0].shape[-1])

    @property
    def strip_len(self) -> int:
        return int(self.strips.shape[-1])

    @property
    def n_leads(self) -> int:
        return len(self.leads)

    def layout(self, strip: bool) -> InputLayout:
        """How a model reads this table's records: its strips (a whole-strip model:
        start-aligned at ``strip_fs``, no baseline removal) or its beats (a set model)."""
        if strip:
            return InputLayout(self.strip_len, self.strip_fs, None, "strip")
        return InputLayout(self.seq_len, self.fs, self.r_index, "record")

    def skip_reasons(self) -> dict[str, int]:
        """How many records were skipped for each kind of reason (the run's tags)."""
        counts: dict[str, int] = {}
        for item in self.skipped:
            kind = reason_kind(item.reason)
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def cut_store(
    store: RecordStore,
    leads: tuple[str, ...],
    data_cfg: Any,
    sink: Callable[[RecordBeats], None] | None = None,
) -> tuple[pd.DataFrame, list[RecordBeats], list[SkippedRecord]]:
    """Every record of ``store`` cut into beats; records without beats skipped with a reason.
    With ``sink``, each cut record goes to it as it is made and the returned list is empty (a
    store larger than memory is cut into a file)."""
    options = record_options(data_cfg)
    rows, counts, cut, skipped = [], [], [], list(store.skipped)
    for k, record in enumerate(store.records):
        try:
            item = cut_record(record, leads, str(data_cfg.get("baseline", "none")), **options)
        except ValueError as err:
            row = int(store.meta["source_row"].iloc[k])
            skipped.append(SkippedRecord(row, record.record_id, record.patient_id, str(err)))
            log.warning("record %s skipped: %s", record.record_id, err)
            continue
        rows.append(k)
        counts.append((len(item.beats), item.n_rejected))
        if sink is None:
            cut.append(item)
        else:
            sink(item)
    if not rows:
        first = min(skipped, key=lambda s: s.row)
        raise EcgmlError(
            f"{store.root / RECORDS}: none of its records is usable (line {first.row + 2}, "
            f"{first.record_id}: {first.reason}): fix the record files"
        )
    meta = store.meta.iloc[rows].reset_index(drop=True)
    meta["n_beats"] = [n for n, _ in counts]
    meta["n_rejected_beats"] = [n for _, n in counts]
    return meta, cut, sorted(skipped, key=lambda s: s.row)


#: Bump when cutting changes for the same record and options (invalidates cached cuts).
CUT_VERSION = 2  # 2: raw float32 files, written while cutting


def cached_cut(
    store: RecordStore, leads: tuple[str, ...], data_cfg: Any
) -> tuple[pd.DataFrame, list[RecordBeats], list[SkippedRecord]]:
    """:func:`cut_store`, cached in ``data.cache_dir`` for a packed store (keyed by its digest,
    the leads and the cutting options): the R-peaks of every record are found once, not on
    every run or sweep trial. A damaged cache file is rebuilt; a CSV store is cut every time."""
    cache_dir = data_cfg.get("cache_dir")
    if not store.digest or not cache_dir:
        return cut_store(store, leads, data_cfg)
    settings = {
        "store": store.digest,
        "leads": list(leads),
        "baseline": str(data_cfg.get("baseline", "none")),
        "version": CUT_VERSION,
        **record_options(data_cfg),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(str(cache_dir)) / f"cuts-{key}"
    cached = _read_cuts(folder, store)
    if cached is not None:
        return cached
    written = _cut_into(folder, store, leads, data_cfg)
    if written is not None:
        return written
    return cut_store(store, leads, data_cfg)  # the cache could not be written: cut in memory


class _CutWriter:
    """Appends each cut record's beats and strip to raw float32 files as it is made."""

    def __init__(self, folder: Path) -> None:
        self.beats = (folder / "beats.f32").open("wb")
        self.strips = (folder / "strips.f32").open("wb")
        self.beat_shape: tuple[int, ...] = ()
        self.strip_shape: tuple[int, ...] = ()
        self.r_offsets: list[int] = []

    def __call__(self, item: RecordBeats) -> None:
        self.beat_shape, self.strip_shape = item.beats.shape[1:], item.strip.shape
        self.beats.write(np.ascontiguousarray(item.beats, dtype=np.float32).tobytes())
        self.strips.write(np.ascontiguousarray(item.strip, dtype=np.float32).tobytes())
        self.r_offsets.append(item.r_offset)

    def close(self) -> None:
        self.beats.close()
        self.strips.close()


def _cut_into(
    folder: Path, store: RecordStore, leads: tuple[str, ...], data_cfg: Any
) -> tuple[pd.DataFrame, list[RecordBeats], list[SkippedRecord]] | None:
    """Cut every record straight into the cache ``folder`` (a temporary folder renamed into
    place), then read it back memory-mapped: the beats are never all in memory. None when the
    cache cannot be written (the caller cuts in memory)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = _CutWriter(tmp)
        try:
            meta, _, skipped = cut_store(store, leads, data_cfg, sink=writer)
        finally:
            writer.close()
        position = pd.Series(np.arange(len(store.meta)), index=store.meta["record_id"])
        texts = [f"{item.record_id}\t{item.patient_id}\t{item.reason}" for item in skipped]
        np.savez(
            tmp / "index.npz",
            rows=position.loc[meta["record_id"]].to_numpy(np.int64),
            n_beats=meta["n_beats"].to_numpy(np.int64),
            n_rejected=meta["n_rejected_beats"].to_numpy(np.int64),
            r_offsets=np.array(writer.r_offsets, np.int64),
            beat_shape=np.array(writer.beat_shape, np.int64),
            strip_shape=np.array(writer.strip_shape, np.int64),
            skipped_rows=np.array([item.row for item in skipped], np.int64),
            skipped_text=np.array(texts, str),
        )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as err:  # a cache that cannot be written only costs the next run its time
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("cut beats not cached in %s (%s)", folder.parent, err.strerror or err)
        return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _read_cuts(folder, store, quiet=True)


def _read_cuts(
    folder: Path, store: RecordStore, quiet: bool = False
) -> tuple[pd.DataFrame, list[RecordBeats], list[SkippedRecord]] | None:
    """The cached cut records, their beats and strips memory-mapped (None: no usable cache);
    ``quiet``: the skipped records were just reported by the cut."""
    if not folder.is_dir():
        return None
    try:
        with np.load(folder / "index.npz", allow_pickle=False) as saved:
            index = {name: saved[name] for name in saved.files}
        rows, counts = index["rows"], index["n_beats"]
        shape = tuple(int(v) for v in index["beat_shape"])
        strip_shape = tuple(int(v) for v in index["strip_shape"])
        ends = np.concatenate([[0], np.cumsum(counts * int(np.prod(shape)))])
        beats = np.memmap(folder / "beats.f32", dtype=np.float32, mode="r")
        flat_strips = np.memmap(folder / "strips.f32", dtype=np.float32, mode="r")
        if (
            ends[-1] != beats.size
            or flat_strips.size != len(rows) * int(np.prod(strip_shape))
            or len(rows) != len(counts)
            or rows.max(initial=0) >= len(store.meta)
        ):
            raise ValueError("its arrays do not fit together")
        strips = flat_strips.reshape(len(rows), *strip_shape)
        cut = [
            RecordBeats(beats[ends[k] : ends[k + 1]].reshape(-1, *shape), strips[k], int(r), int(n))
            for k, (r, n) in enumerate(zip(index["r_offsets"], index["n_rejected"], strict=True))
        ]
        skipped = [
            SkippedRecord(int(row), *text.split("\t", 2))
            for row, text in zip(index["skipped_rows"], index["skipped_text"], strict=True)
        ]
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as err:
        log.warning("cut beats cache %s is unusable (%s): cutting again", folder, err)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    meta = store.meta.iloc[rows].reset_index(drop=True)
    meta["n_beats"] = counts
    meta["n_rejected_beats"] = index["n_rejected"]
    read_already = {item.row for item in store.skipped}  # load_record_store said these
    for item in skipped:
        if not quiet and item.row not in read_already:
            log.warning("record %s skipped: %s", item.record_id, item.reason)
    return meta, cut, skipped


def record_options(data_cfg: Any) -> dict[str, Any]:
    return {
        "strip_fs": float(data_cfg.get("strip_fs", DEFAULT_STRIP_FS) or DEFAULT_STRIP_FS),
        "strip_s": float(data_cfg.get("strip_s", DEFAULT_STRIP_S) or DEFAULT_STRIP_S),
        "max_beats": int(data_cfg.get("max_beats", DEFAULT_MAX_BEATS) or DEFAULT_MAX_BEATS),
    }


def train_beats(data_cfg: Any) -> int | None:
    """``data.train_beats``: beats drawn per training record and epoch (null: all of them)."""
    value = data_cfg.get("train_beats")
    return int(value) if value else None


def build_record_table(
    store: RecordStore, disorder_cfg: Any, split_cfg: Any, data_cfg: Any, task: TaskSpec
) -> RecordTable:
    """Cut, label and split the records of ``store`` for ``task`` (patient-level split)."""
    leads = resolve_leads(data_cfg.get("leads"))
    meta, cut, skipped = cached_cut(store, leads, data_cfg)
    meta["beat_id"] = meta["record_id"]  # the labels/split helpers key rows by beat_id
    selected, summary = task.labels(meta, disorder_cfg, str(store.root / RECORDS))
    splits = assign_splits(selected, split_cfg, store_universe(meta))
    selected = selected.merge(splits[["patient_id", "split"]], on="patient_id", how="left")
    position = pd.Series(np.arange(len(meta)), index=meta["record_id"])
    keep = position.loc[selected["record_id"]].to_numpy()
    cut = [cut[k] for k in keep]
    log.info(
        "%d records from %d patients (%s), %d skipped, %.1f beats per record, leads %s",
        len(selected),
        summary.n_patients,
        task.name,
        len(skipped),
        float(selected["n_beats"].mean()),
        ",".join(leads),
    )
    return RecordTable(
        beats=[item.beats for item in cut],
        strips=np.stack([item.strip for item in cut]),
        meta=selected,
        fs=store.fs,
        leads=leads,
        r_index=cut[0].r_offset,
        strip_fs=record_options(data_cfg)["strip_fs"],
        summary=summary,
        splits=splits,
        task=task,
        digest=f"records-{len(selected)}",
        skipped=skipped,
    )


def load_record_table(cfg: Any, store: RecordStore | None = None) -> RecordTable:
    """The configured record store, cut, labelled and split (one line, exit 2, when unusable)."""
    leads = resolve_leads(cfg.data.get("leads"))
    store = store or load_record_store(resolve_record_store(cfg.data), leads)
    return build_record_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))


# --------------------------------------------------------------------------- batches


class RecordDataset(Dataset):
    """``(beats (n, C, L), strip (C, S), target)`` per record. The beats may be memory-mapped
    (a cached cut): each item copies only what it returns."""

    def __init__(
        self,
        beats: list[np.ndarray],
        strips: np.ndarray,
        y: np.ndarray,
        sample_beats: int | None = None,
        seed: int = 0,
    ) -> None:
        self.beats = beats
        self.strips = strips
        self.y = torch.from_numpy(np.asarray(y, dtype=np.float32))
        self.sample_beats = sample_beats
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        beats = self.beats[index]
        k = self.sample_beats
        if k and len(beats) > k:  # training: a random subset of the record's beats each time
            keep = torch.randperm(len(beats), generator=self.generator)[:k].sort().values
            beats = beats[keep.numpy()]
        chosen = torch.from_numpy(np.array(beats, dtype=np.float32))
        strip = torch.from_numpy(np.array(self.strips[index], dtype=np.float32))
        return chosen, strip, self.y[index]


def collate_records(
    items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({"beats": (B, N, C, L), "mask": (B, N), "strip": (B, C, S)}, y)``: beats zero-padded
    at the end to the batch's largest count, ``mask`` True on real beats."""
    n_max = max(len(b) for b, _, _ in items)
    first = items[0][0]
    beats = torch.zeros((len(items), n_max, *first.shape[1:]), dtype=first.dtype)
    mask = torch.zeros((len(items), n_max), dtype=torch.bool)
    for k, (b, _, _) in enumerate(items):
        beats[k, : len(b)] = b
        mask[k, : len(b)] = True
    strips = torch.stack([s for _, s, _ in items])
    y = torch.stack([t for _, _, t in items])
    return {"beats": beats, "mask": mask, "strip": strips}, y


class RecordDataModule(ExamplesDataModule):
    """Loaders over a :class:`RecordTable`: every beat of a record (a random draw of
    ``train_beats`` per training record and epoch) and its strip."""

    table: RecordTable
    collate = staticmethod(collate_records)

    def __init__(
        self,
        table: RecordTable,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        train_beats: int | None = None,
    ) -> None:
        super().__init__(table, batch_size, num_workers, seed)
        #: Beats drawn per training record and epoch (None: all); evaluation reads all.
        self.train_beats = train_beats

    def dataset(self, split: str) -> RecordDataset:
        rows = self.table.rows(split)
        beats = [self.table.beats[k] for k in rows]
        sample = self.train_beats if split == "train" else None
        targets = self.targets(self.table.meta.iloc[rows])
        return RecordDataset(beats, self.table.strips[rows], targets, sample, self.seed)

    def prediction_frame(self, split: str) -> pd.DataFrame:
        """``predictions.csv``'s first columns: one row per record (``beat_id`` = record_id,
        so :func:`ecgml.evaluation.evaluate_with_config` reads records as its rows)."""
        meta = self.table.meta.iloc[self.table.rows(split)].reset_index(drop=True)
        extra = [c for c in ("center", "device", "source_image") if c in meta.columns]
        frame = meta[["patient_id", "record_id", "split", "group", "n_beats", *extra]].copy()
        frame.insert(1, "beat_id", meta["record_id"].to_numpy())
        return frame.assign(**self.table.task.true_columns(meta))
