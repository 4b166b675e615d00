"""Read the ECG files in worker processes: one file → its windows, resampled, staged on disk.

A worker reads one file with :func:`ecgml.ecgfile.read_ecg`, resamples it to the store's rate
(``scipy.signal.resample_poly``), cuts the first ``max_s`` seconds (or every ``max_s`` window)
and writes each window as float32 ``.npy`` into the staging folder; only the metadata travels
back. A file that cannot be used comes back with its reason; a worker that dies costs only
its own file (:func:`ecgml.outputs.engine.map_jobs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from tqdm import tqdm

from ecgml.ecgfile import EcgFileProblem, read_ecg
from ecgml.ingest.sources import Source
from ecgml.outputs.engine import map_jobs

WINDOWS = ("first", "all")


@dataclass(frozen=True)
class Cutting:
    """How a recording becomes store records: ``fs`` (Hz), ``max_s`` and ``windows``."""

    fs: float = 500.0
    max_s: float = 10.0
    windows: str = "first"


@dataclass(frozen=True)
class Piece:
    """One window of one ECG, staged at ``staging_file`` (float32, ``(n_leads, n)``)."""

    window: int
    record_id: str
    patient_id: str | None
    time: datetime | None
    leads: tuple[str, ...]
    n_samples: int
    digest: str
    staging_file: str


@dataclass
class FileResult:
    """What reading one source gave: its pieces, or the reason it gave none."""

    index: int
    pieces: list[Piece] = field(default_factory=list)
    reason: str = ""
    detail: str = ""
    record_id: str = ""


def read_all(
    sources: Sequence[Source],
    staging: Path,
    cutting: Cutting,
    n_jobs: int,
    progress: bool = True,
    engine_address: str | None = None,
) -> list[FileResult]:
    """Every source read (in ``n_jobs`` processes, or on the Dask cluster at
    ``engine_address``), results in source order."""
    jobs = list(enumerate(sources))
    func = partial(read_source, staging=staging, cutting=cutting)
    results: list[FileResult | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="ingest", unit="ECG", disable=not progress)
    try:
        for index, result in map_jobs(func, jobs, n_jobs, _died, engine_address):
            results[index] = result
            bar.update(1)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _died(job: tuple[int, Source], why: str) -> FileResult:
    index, source = job
    return FileResult(index, reason="unreadable", detail=f"{source.path.name}: {why}")


def read_source(job: tuple[int, Source], staging: Path, cutting: Cutting) -> FileResult:
    """Read one file and stage its windows (runs in a worker)."""
    index, source = job
    try:
        recording = read_ecg(source.path)
    except EcgFileProblem as problem:
        return FileResult(index, reason=problem.reason, detail=problem.detail)
    patient = source.patient_id or recording.patient_id
    time = source.time or recording.time
    signal = resample(recording.signal, recording.fs, cutting.fs)
    pieces = []
    for k, window in enumerate(cut_windows(signal, cutting)):
        name = f"{index}_{k}.npy"
        np.save(staging / name, window, allow_pickle=False)
        pieces.append(
            Piece(
                window=k,
                record_id=recording.record_id,
                patient_id=patient,
                time=time,
                leads=recording.leads,
                n_samples=window.shape[1],
                digest=hashlib.blake2b(window.tobytes(), digest_size=16).hexdigest(),
                staging_file=name,
            )
        )
    return FileResult(index, pieces, record_id=recording.record_id)


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """``signal`` (leads × samples) at ``fs_out`` Hz, as float32 (a polyphase filter)."""
    if abs(fs_in - fs_out) <= 1e-9 * fs_out:
        return signal.astype(np.float32)
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)
    return np.asarray(out, dtype=np.float32)


def cut_windows(signal: np.ndarray, cutting: Cutting) -> Iterator[np.ndarray]:
    """The first ``max_s`` seconds (``windows=first``) or every whole ``max_s`` window
    (``windows=all``); a recording shorter than ``max_s`` is one window as it is."""
    n = round(cutting.max_s * cutting.fs)
    if signal.shape[1] <= n or cutting.windows == "first":
        yield np.ascontiguousarray(signal[:, :n])
        return
    for start in range(0, signal.shape[1] - n + 1, n):
        yield np.ascontiguousarray(signal[:, start : start + n])
