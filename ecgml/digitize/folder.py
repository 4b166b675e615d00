"""A folder of images → ``signals/``, a beat store and ``report.csv`` (docs/contracts.md).

Images are processed in a process pool (:func:`~ecgml.digitize.pipeline.process_image` is
pure); everything is written into a temporary sibling folder that is moved into place at the
end, so an interrupted run never leaves an output that looks complete (:mod:`ecgml.outputs`: the
marker that lets ``overwrite=true`` replace only ecgml's own output, leftover cleanup).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ecgml import TWELVE_LEADS
from ecgml.beatstore import VALID_GROUPS, export_beat_store
from ecgml.digitize.image import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from ecgml.digitize.leads import page_leads
from ecgml.digitize.pipeline import LAYOUTS, ImageResult, process_image
from ecgml.errors import EcgmlError
from ecgml.outputs import (
    check_replaceable,
    move_into_place,
    new_temp,
    refuse_overlap,
    storage_error,
    workers,
)
from ecgml.outputs.engine import check_address, check_reachable, map_jobs
from ecgml.packstore import PACKED, ROW_COLUMN, PackedWriter
from ecgml.recordstore import save_records_table

log = logging.getLogger("ecgml.digitize")

LABELS_FILE = "images.csv"
REPORT_FILE = "report.csv"
REPORT_COLUMNS = (
    "image_file",
    "status",
    "error",
    "n_beats",
    "seconds",
    "layout",
    "leads",
    "leads_left_out",
    "calibration",
)
LEAD_ORDER = TWELVE_LEADS
LABEL_COLUMNS = ("patient_id", "group", "center", "device", "layout", "potassium", "sodium")
CREATED_BY = "ecgml.digitize"
#: One image to process: its path and layout.
Job = tuple[Path, str]
WORKER_DIED = (
    "the worker process died while reading this image (out of memory or a decoder crash): "
    "check the file, or lower max_image_pixels"
)


def list_images(input_dir: Path) -> list[Path]:
    """Image files directly in ``input_dir`` (sorted by name)."""
    if not input_dir.is_dir():
        raise EcgmlError(
            f"input_dir {input_dir} is not an existing folder: pass a folder of images"
        )
    images = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise EcgmlError(
            f"input_dir {input_dir} holds no {'/'.join(IMAGE_SUFFIXES)} files: point it at "
            "the images"
        )
    return images


def read_labels(input_dir: Path, images: Sequence[Path], default_layout: str) -> pd.DataFrame:
    """One row per image: patient_id, group, center, device, layout (images.csv, else defaults)."""
    labels = pd.DataFrame(
        {
            "image_file": [p.name for p in images],
            "patient_id": [p.stem for p in images],
            "group": "unknown",
            "layout": default_layout,
        }
    ).set_index("image_file")
    path = input_dir / LABELS_FILE
    if not path.is_file():
        return labels
    try:
        given = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise EcgmlError(f"{path} is not a readable CSV ({err}): fix or remove it") from None
    if "image_file" not in given.columns:
        raise EcgmlError(f"{path} lacks the column image_file: columns are {_expected()}")
    given["image_file"] = given["image_file"].str.strip().map(lambda s: Path(s).name)
    given = given.drop_duplicates("image_file", keep="last").set_index("image_file")
    for column in LABEL_COLUMNS:
        if column not in given.columns:
            continue
        values = given[column].str.strip()
        if column == "group":
            values = values.str.lower()
            bad = sorted(set(values[values != ""]) - set(VALID_GROUPS))
            if bad:
                raise EcgmlError(
                    f"{path}: unknown group value(s) {', '.join(map(repr, bad))}: use one of "
                    f"{', '.join(VALID_GROUPS)}"
                )
        if column == "layout":
            bad = sorted(set(values[values != ""]) - set(LAYOUTS))
            if bad:
                raise EcgmlError(
                    f"{path}: unknown layout(s) {', '.join(bad)}: use one of {', '.join(LAYOUTS)}"
                )
        present = values[(values != "") & values.index.isin(labels.index)]
        if column not in labels.columns:
            labels[column] = None
        labels.loc[present.index, column] = present
    return labels


def _expected() -> str:
    return "image_file, patient_id, group (optional center, device, layout, potassium, sodium)"


def run_images(
    jobs: Sequence[Job],
    fs: float,
    dpi: float | None,
    beat_options: dict[str, Any],
    n_jobs: int,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    engine_address: str | None = None,
) -> list[ImageResult]:
    """Process images (path, layout) in ``n_jobs`` processes, or on the Dask cluster at
    ``engine_address``; results in input order."""
    func = partial(_process_job, fs=fs, dpi=dpi, beat_options=beat_options, max_pixels=max_pixels)
    bar = tqdm(total=len(jobs), desc="digitize", unit="image", disable=not progress)
    results: dict[int, ImageResult] = {}
    try:
        for index, result in map_jobs(func, jobs, n_jobs, _image_failed, engine_address):
            results[index] = result
            bar.update(1)
    finally:
        bar.close()
    return [results[k] for k in range(len(jobs))]


def _process_job(
    job: Job, fs: float, dpi: float | None, beat_options: dict, max_pixels: int
) -> ImageResult:
    path, layout = job
    return process_image(path, layout, fs, dpi, beat_options, max_pixels)


def _image_failed(job: Job, why: str) -> ImageResult:
    """The result of an image whose worker died or raised (the run goes on)."""
    path = job[0]
    if why == workers.WORKER_DIED:
        log.warning("%s: %s", path.name, WORKER_DIED)
        return ImageResult(path.name, "failed", WORKER_DIED)
    return ImageResult(path.name, "failed", why)


def write_outputs(
    tmp: Path, results: Sequence[ImageResult], labels: pd.DataFrame, fs: float
) -> pd.DataFrame:
    """signals/, leads/, the beat store (``beats/``, packed), the record store (records.csv and
    its packed samples: one record per digitized image, with every lead that spans its strip:
    :func:`record_leads`) and report.csv into ``tmp``; returns the report."""
    (tmp / "signals").mkdir(parents=True)
    (tmp / "leads").mkdir()
    recordings, records = [], []
    for result in results:
        if result.status != "ok" or result.digitized is None or result.beats is None:
            continue
        stem = Path(result.image_file).stem
        signal = result.digitized.signal
        frame = pd.DataFrame({"time_s": np.arange(signal.size) / fs, "mv": signal})
        frame.to_csv(tmp / "signals" / f"{stem}.csv", index=False, float_format="%.5f")
        write_leads(tmp / "leads" / f"{stem}.csv", result.digitized.leads, fs)
        row = labels.loc[result.image_file]
        meta = {
            "patient_id": row["patient_id"],
            "group": row["group"],
            "record_id": stem,
            "source_image": result.image_file,
        }
        for key in ("center", "device", "potassium", "sodium"):
            if key in row.index and isinstance(row[key], str) and row[key]:
                meta[key] = row[key]
        recordings.append((result.beats, meta))
        leads = record_leads(signal, result.digitized.leads, fs)
        records.append((stem, record_file(tmp, stem, leads, fs), leads))
    if recordings:
        export_beat_store(tmp / "beats", recordings, packed=True, dtype="float32")
        table = records_rows([meta for _, meta in recordings], [file for _, file, _ in records])
        table[ROW_COLUMN] = pd.array(pack_records(tmp / PACKED, records, fs), dtype="Int64")
        save_records_table(tmp, table)
    report = pd.DataFrame(
        [
            (r.image_file, r.status, r.error, r.n_beats, round(r.seconds, 4), *_lead_cells(r))
            for r in results
        ],
        columns=list(REPORT_COLUMNS),
    )
    report.to_csv(tmp / REPORT_FILE, index=False)
    return report


def records_rows(metas: Sequence[dict[str, Any]], record_files: Sequence[str]) -> pd.DataFrame:
    """``records.csv`` rows: each image's record file, with the labels and provenance of its
    beats."""
    table = pd.DataFrame(list(metas))
    table.insert(0, "record_file", list(record_files))
    return table


def record_leads(
    signal: np.ndarray, leads: dict[str, np.ndarray], fs: float
) -> dict[str, np.ndarray]:
    """An image's record for the record store, lead name → samples in standard order: lead II
    alone, or every lead that spans the whole strip (a 12×1 page: all twelve; 6×2: the six
    beside II; the same rule as ``ecgml.predict``, :func:`~ecgml.digitize.leads.page_leads`)."""
    spanning = page_leads(signal, leads, fs)
    if set(spanning) <= {"II"}:
        return {"II": signal}
    return {name: spanning[name] for name in sorted(spanning, key=_lead_rank)}


def record_file(tmp: Path, stem: str, leads: dict[str, np.ndarray], fs: float) -> str:
    """The record's CSV (``record_file``): ``signals/<stem>.csv`` for lead II alone (written
    already), else ``records/<stem>.csv`` with ``time_s`` and one column per lead."""
    if list(leads) == ["II"]:
        return f"signals/{stem}.csv"
    (tmp / "records").mkdir(exist_ok=True)
    n = len(next(iter(leads.values())))
    columns = {"time_s": np.arange(n) / fs, **leads}
    pd.DataFrame(columns).to_csv(tmp / "records" / f"{stem}.csv", index=False, float_format="%.5f")
    return f"records/{stem}.csv"


def pack_records(
    path: Path, records: Sequence[tuple[str, str, dict[str, np.ndarray]]], fs: float
) -> list[int | None]:
    """Each record's samples into the record store's ``samples.arrow`` (float32, the values its
    CSV holds: rounded to 0.01 µV); returns each one's ``packed_row``. A record with a gap it
    could not fill is left to its CSV (no ``packed_row``: training skips it with the reason)."""
    rows: list[int | None] = []
    with PackedWriter(path, "record", "float32") as writer:
        for stem, _, leads in records:
            matrix = np.round(np.vstack(list(leads.values())).astype(np.float64), 5)
            if np.isfinite(matrix).all():
                rows.append(writer.add(stem, matrix, fs, list(leads)))
            else:
                rows.append(None)
        writer.commit()
    return rows


def write_leads(path: Path, leads: dict[str, np.ndarray], fs: float) -> None:
    """``time_s`` plus one column per lead (standard order) on the page's time axis; a lead is
    empty outside its window."""
    n = max((v.size for v in leads.values()), default=0)
    columns: dict[str, np.ndarray] = {"time_s": np.arange(n) / fs}
    for name in sorted(leads, key=_lead_rank):
        values = np.full(n, np.nan, np.float32)
        values[: leads[name].size] = leads[name]
        columns[name] = values
    pd.DataFrame(columns).to_csv(path, index=False, float_format="%.5f")


def _lead_rank(name: str) -> tuple[int, str]:
    return (LEAD_ORDER.index(name) if name in LEAD_ORDER else len(LEAD_ORDER), name)


def _lead_cells(result: ImageResult) -> tuple[str, str, str, str]:
    """report.csv's layout, leads (``;``-separated), leads left out (``lead: reason``) and
    calibration (grid, pulse or dpi) of one image (empty for a failed image)."""
    d = result.digitized
    if d is None:
        return "", "", "", ""
    left_out = "; ".join(f"{name}: {why}" for name, why in d.left_out.items())
    return d.layout, ";".join(sorted(d.leads, key=_lead_rank)), left_out, d.calibration.source


def _duplicate_stems(images: Sequence[Path]) -> set[str]:
    seen: set[str] = set()
    duplicates = set()
    for path in images:
        if path.stem in seen:
            duplicates.add(path.name)
        seen.add(path.stem)
    return duplicates


def check_paths(input_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is, holds or lies inside the input (symlinks followed)."""
    refuse_overlap(output_dir, "output_dir", input_dir, "input_dir")


def digitize_folder(
    input_dir: Path | str,
    output_dir: Path | str,
    layout: str = "auto",
    fs: float = 500.0,
    dpi: float | None = None,
    n_jobs: int | None = 1,
    overwrite: bool = False,
    beat_options: dict[str, Any] | None = None,
    progress: bool = True,
    max_image_pixels: int = DEFAULT_MAX_PIXELS,
    engine_address: str | None = None,
) -> pd.DataFrame:
    """Digitize every image in ``input_dir`` into ``output_dir`` (on ``n_jobs`` local processes,
    or on the Dask cluster at ``engine_address``); returns the report.

    Raises :class:`EcgmlError` for bad arguments, and (after writing the report) when no image
    could be digitized.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if layout not in LAYOUTS:
        raise EcgmlError(f"layout={layout!r} is not known: use one of {', '.join(LAYOUTS)}")
    if not fs or fs <= 0:
        raise EcgmlError(f"fs={fs!r} must be a positive sampling rate in Hz (e.g. 500)")
    if dpi is not None and dpi <= 0:
        raise EcgmlError(f"dpi={dpi!r} must be a positive scan resolution (e.g. 300)")
    if n_jobs is not None and n_jobs < 1:
        raise EcgmlError(f"n_jobs={n_jobs!r} must be a positive number of processes (or null)")
    if max_image_pixels < 1:
        raise EcgmlError(f"max_image_pixels={max_image_pixels!r} must be ≥ 1 (e.g. 50000000)")
    engine_address = check_address(engine_address)
    check_reachable(engine_address)
    images = list_images(input_dir)
    check_paths(input_dir, output_dir)
    labels = read_labels(input_dir, images, layout)
    target = output_dir.resolve()
    check_replaceable(target, overwrite, "output_dir")
    tmp = new_temp(target, CREATED_BY)
    try:
        duplicates = _duplicate_stems(images)
        jobs = [(p, str(labels.loc[p.name, "layout"])) for p in images if p.name not in duplicates]
        workers = n_jobs or os.cpu_count() or 1
        results = run_images(
            jobs,
            float(fs),
            dpi,
            beat_options or {},
            workers,
            progress,
            max_image_pixels,
            engine_address,
        )
        results += [
            ImageResult(name, "failed", "another image has the same file name stem: rename it")
            for name in sorted(duplicates)
        ]
        order = {p.name: k for k, p in enumerate(images)}
        results.sort(key=lambda r: order[r.image_file])
        report = write_outputs(tmp, results, labels, float(fs))
        move_into_place(tmp, target)
    except OSError as err:  # a full disk: one line, and the temporary folder goes below
        known = storage_error(err, output_dir)
        if known is None:
            raise
        raise known from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    n_ok = int((report["status"] == "ok").sum())
    log.info("digitized %d of %d images into %s", n_ok, len(report), output_dir)
    print(
        f"{n_ok} of {len(report)} images digitized, {int(report['n_beats'].sum())} beats -> "
        f"{output_dir}"
    )
    if n_ok == 0:
        first = report["error"].iloc[0]
        raise EcgmlError(
            f"no image could be digitized (first error: {first}): see {output_dir / REPORT_FILE}"
        )
    return report


def digitize_folder_from_config(cfg: DictConfig) -> pd.DataFrame:
    """The CLI's config → :func:`digitize_folder`."""
    for key in ("input_dir", "output_dir"):
        if not cfg.get(key):
            raise EcgmlError(f"no {key}: pass {key}=FOLDER")
    beats = OmegaConf.to_container(cfg.beats, resolve=True) if cfg.get("beats") else {}
    assert isinstance(beats, dict)
    return digitize_folder(
        input_dir=str(cfg.input_dir),
        output_dir=str(cfg.output_dir),
        layout=str(cfg.layout),
        fs=_number(cfg.fs, "fs"),
        dpi=None if cfg.get("dpi") is None else _number(cfg.dpi, "dpi"),
        n_jobs=None if cfg.get("n_jobs") is None else _whole(cfg.n_jobs, "n_jobs"),
        overwrite=bool(cfg.overwrite),
        beat_options={str(k): v for k, v in beats.items()},
        progress=bool(cfg.get("progress", True)),
        max_image_pixels=_whole(
            cfg.get("max_image_pixels", DEFAULT_MAX_PIXELS), "max_image_pixels"
        ),
        engine_address=cfg.get("engine", {}).get("address"),
    )


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EcgmlError(f"{name}={value!r} is not a number") from None


def _whole(value: Any, name: str) -> int:
    number = _number(value, name)
    if not math.isfinite(number):
        raise EcgmlError(f"{name}={value!r} must be a finite whole number")
    return int(number)
