"""A folder of images → ``signals/``, a beat store and ``report.csv`` (docs/contracts.md).

Images are processed in a process pool (:func:`~ecgml.digitize.pipeline.process_image` is
pure); everything is written into a temporary sibling folder that is moved into place at the
end, so an interrupted run never leaves an output that looks complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ecgml.beatstore import VALID_GROUPS, export_beat_store
from ecgml.digitize.image import IMAGE_SUFFIXES
from ecgml.digitize.pipeline import LAYOUTS, ImageResult, process_image
from ecgml.errors import EcgmlError

log = logging.getLogger("ecgml.digitize")

LABELS_FILE = "images.csv"
REPORT_FILE = "report.csv"
REPORT_COLUMNS = ("image_file", "status", "error", "n_beats", "seconds")
LABEL_COLUMNS = ("patient_id", "group", "center", "device", "layout")


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
                raise EcgmlError(f"{path}: unknown layout(s) {', '.join(bad)}: use strip or page")
        present = values[(values != "") & values.index.isin(labels.index)]
        if column not in labels.columns:
            labels[column] = None
        labels.loc[present.index, column] = present
    return labels


def _expected() -> str:
    return "image_file, patient_id, group (optional center, device, layout)"


def run_images(
    jobs: Sequence[tuple[Path, str]],
    fs: float,
    dpi: float | None,
    beat_options: dict[str, Any],
    n_jobs: int,
    progress: bool = True,
) -> list[ImageResult]:
    """Process images (path, layout) in a pool of ``n_jobs`` processes, in input order."""
    bar = tqdm(total=len(jobs), desc="digitize", unit="image", disable=not progress)
    results = []
    try:
        for result in _map(jobs, fs, dpi, beat_options, n_jobs):
            results.append(result)
            bar.update(1)
    finally:
        bar.close()
    return results


def _process_job(
    job: tuple[Path, str], fs: float, dpi: float | None, beat_options: dict
) -> ImageResult:
    path, layout = job
    return process_image(path, layout, fs, dpi, beat_options)


def _map(
    jobs: Sequence[tuple[Path, str]], fs: float, dpi: float | None, beat_options: dict, n_jobs: int
) -> Iterator[ImageResult]:
    func = partial(_process_job, fs=fs, dpi=dpi, beat_options=beat_options)
    if n_jobs <= 1 or len(jobs) <= 1:
        yield from map(func, jobs)
        return
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(jobs))) as pool:
        yield from pool.map(func, jobs, chunksize=max(1, len(jobs) // (8 * n_jobs)))


def write_outputs(
    tmp: Path, results: Sequence[ImageResult], labels: pd.DataFrame, fs: float
) -> pd.DataFrame:
    """signals/, the beat store and report.csv into ``tmp``; returns the report."""
    (tmp / "signals").mkdir(parents=True)
    recordings = []
    for result in results:
        if result.status != "ok" or result.digitized is None or result.beats is None:
            continue
        stem = Path(result.image_file).stem
        signal = result.digitized.signal
        frame = pd.DataFrame({"time_s": np.arange(signal.size) / fs, "mv": signal})
        frame.to_csv(tmp / "signals" / f"{stem}.csv", index=False, float_format="%.5f")
        row = labels.loc[result.image_file]
        meta = {
            "patient_id": row["patient_id"],
            "group": row["group"],
            "record_id": stem,
            "source_image": result.image_file,
        }
        for key in ("center", "device"):
            if key in row.index and isinstance(row[key], str) and row[key]:
                meta[key] = row[key]
        recordings.append((result.beats, meta))
    if recordings:
        export_beat_store(tmp, recordings)
    report = pd.DataFrame(
        [(r.image_file, r.status, r.error, r.n_beats, round(r.seconds, 4)) for r in results],
        columns=list(REPORT_COLUMNS),
    )
    report.to_csv(tmp / REPORT_FILE, index=False)
    return report


def _duplicate_stems(images: Sequence[Path]) -> set[str]:
    seen: set[str] = set()
    duplicates = set()
    for path in images:
        if path.stem in seen:
            duplicates.add(path.name)
        seen.add(path.stem)
    return duplicates


def prepare_output(output_dir: Path, overwrite: bool) -> Path:
    """Check the output folder and return a fresh temporary sibling to write into."""
    if output_dir.exists() and not output_dir.is_dir():
        raise EcgmlError(f"output_dir {output_dir} is a file: pass a folder path")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise EcgmlError(
            f"output_dir {output_dir} is not empty: pass a new folder or overwrite=true"
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def move_into_place(tmp: Path, output_dir: Path) -> None:
    """Swap the finished temporary folder in (old contents go only once the new are there)."""
    trash = None
    if output_dir.exists():
        trash = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output_dir, trash)
    os.replace(tmp, output_dir)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def digitize_folder(
    input_dir: Path | str,
    output_dir: Path | str,
    layout: str = "strip",
    fs: float = 500.0,
    dpi: float | None = None,
    n_jobs: int | None = 1,
    overwrite: bool = False,
    beat_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Digitize every image in ``input_dir`` into ``output_dir``; returns the report.

    Raises :class:`EcgmlError` for bad arguments, and (after writing the report) when no image
    could be digitized.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if layout not in LAYOUTS:
        raise EcgmlError(f"layout={layout!r} is not known: use strip or page")
    if not fs or fs <= 0:
        raise EcgmlError(f"fs={fs!r} must be a positive sampling rate in Hz (e.g. 500)")
    if dpi is not None and dpi <= 0:
        raise EcgmlError(f"dpi={dpi!r} must be a positive scan resolution (e.g. 300)")
    if n_jobs is not None and n_jobs < 1:
        raise EcgmlError(f"n_jobs={n_jobs!r} must be a positive number of processes (or null)")
    images = list_images(input_dir)
    labels = read_labels(input_dir, images, layout)
    tmp = prepare_output(output_dir, overwrite)
    try:
        duplicates = _duplicate_stems(images)
        jobs = [(p, str(labels.loc[p.name, "layout"])) for p in images if p.name not in duplicates]
        workers = n_jobs or os.cpu_count() or 1
        results = run_images(jobs, float(fs), dpi, beat_options or {}, workers, progress)
        results += [
            ImageResult(name, "failed", "another image has the same file name stem: rename it")
            for name in sorted(duplicates)
        ]
        order = {p.name: k for k, p in enumerate(images)}
        results.sort(key=lambda r: order[r.image_file])
        report = write_outputs(tmp, results, labels, float(fs))
        move_into_place(tmp, output_dir)
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
        n_jobs=None if cfg.get("n_jobs") is None else int(_number(cfg.n_jobs, "n_jobs")),
        overwrite=bool(cfg.overwrite),
        beat_options={str(k): v for k, v in beats.items()},
        progress=bool(cfg.get("progress", True)),
    )


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EcgmlError(f"{name}={value!r} is not a number") from None
