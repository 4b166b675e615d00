"""Building the synthetic cohort folder (patients, signals, images, beat store, cohort.json).

The folder is built in a hidden temporary sibling and renamed into place at the end, so an
interrupted build never leaves a folder that looks complete (``cohort.json`` is its marker);
the next build removes such leftovers, and ``overwrite=true`` replaces only a folder ecgml
wrote (:mod:`ecgml.outputs`). Pool workers die with the parent (:mod:`ecgml.outputs`).
Per-patient random streams are spawned from the cohort seed, so the result does not depend on
``n_jobs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ecgml.beatstore import write_beat_store
from ecgml.errors import EcgmlError
from ecgml.outputs import check_replaceable, init_worker, move_into_place, new_temp
from ecgml.outputs.engine import check_reachable, executor
from ecgml.packstore import PACKED, ROW_COLUMN, PackedWriter
from ecgml.recordstore import records_table, save_records_table
from ecgml.schemas import plain_dict
from ecgml.signal import extract_windows
from ecgml.synth.physiology import sample_patient
from ecgml.synth.render import TWELVE_LEADS, render_ecg
from ecgml.synth.validate import validate_cohort_config
from ecgml.synth.waveform import synthesize

log = logging.getLogger("ecgml.synth")

#: Bump when the generator's output changes for the same config (invalidates cached cohorts).
GENERATOR_VERSION = 3  # 3: serum K/Na per patient, effects coupled to them
COHORT_JSON = "cohort.json"
CREATED_BY = "ecgml.synth"
#: Below this many patients a process pool costs more than it saves.
MIN_PATIENTS_FOR_POOL = 40


@dataclass(frozen=True)
class PatientTask:
    """What a worker needs to build one patient (picklable)."""

    patient_id: str
    group: str
    center: str
    device: str
    seed: np.random.SeedSequence
    cfg: dict[str, Any]
    out: str


# --------------------------------------------------------------------------- config


def cohort_config(cohort_cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A plain, resolved, validated copy of the generator config."""
    if isinstance(cohort_cfg, DictConfig):
        cfg = plain_dict(cohort_cfg)
    else:
        cfg = json.loads(json.dumps(dict(cohort_cfg), default=_jsonable))
    assert isinstance(cfg, dict)
    validate_cohort_config(cfg)
    return cfg


def _jsonable(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"cohort config value {value!r} is not JSON-serialisable")


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Cache key of a (validated) generator config, including the generator version."""
    payload = json.dumps({"v": GENERATOR_VERSION, "cfg": cfg}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def group_counts(cfg: Mapping[str, Any]) -> dict[str, int]:
    """Patients per group after ``scale`` (a non-zero group keeps at least one patient)."""
    scale = float(cfg["scale"])
    counts = {}
    for group, count in cfg["groups"].items():
        scaled = round(int(count) * scale)
        counts[group] = max(scaled, 1) if int(count) > 0 and scale > 0 else scaled
    return counts


# --------------------------------------------------------------------------- planning


def plan_patients(cfg: dict[str, Any], out: Path) -> list[PatientTask]:
    """Shuffled patient list with ids, centres, devices and independent random streams."""
    rng = np.random.default_rng(int(cfg["seed"]))
    counts = group_counts(cfg)
    groups = np.array([g for g, n in counts.items() for _ in range(n)], dtype=object)
    rng.shuffle(groups)
    n_centers = int(cfg["centers"])
    device_names = list(cfg["devices"])
    shares = np.array([float(cfg["devices"][d]["share"]) for d in device_names])
    center_device = rng.choice(device_names, size=n_centers, p=shares / shares.sum())
    center_weights = rng.dirichlet(np.full(n_centers, 2.0))
    centers = rng.choice(n_centers, size=len(groups), p=center_weights)
    seeds = np.random.SeedSequence(int(cfg["seed"])).spawn(len(groups))
    width = max(4, len(str(len(groups))))
    return [
        PatientTask(
            patient_id=f"P{i + 1:0{width}d}",
            group=str(group),
            center=f"C{centers[i] + 1:02d}",
            device=str(center_device[centers[i]]),
            seed=seeds[i],
            cfg=cfg,
            out=str(out),
        )
        for i, group in enumerate(groups)
    ]


# --------------------------------------------------------------------------- one patient


def build_patient(task: PatientTask) -> dict[str, Any]:
    """Generate, write (signal, image) and cut beats for one patient; return table rows."""
    cv2.setNumThreads(1)
    cfg, out = task.cfg, Path(task.out)
    rng = np.random.default_rng(task.seed)
    patient = sample_patient(rng, cfg, task.patient_id, task.group, task.center, task.device)
    leads = TWELVE_LEADS if cfg["twelve_lead"] else ("II",)
    fs, duration = float(cfg["fs"]), float(cfg["duration_s"])
    recording = synthesize(
        patient, fs, duration, rng, leads=leads, amp_jitter=float(cfg["beat"]["amplitude_jitter"])
    )
    if writes_signal_csvs(cfg):
        _write_signal(out / "signals" / f"{task.patient_id}.csv", recording.lead_ii, fs)
        if cfg["twelve_lead"]:
            _write_twelve_lead(out / "signals12" / f"{task.patient_id}.csv", recording.leads, fs)
    beats, beat_rows = _select_beats(cfg, task, recording.lead_ii, recording.r_indices, rng)
    if cfg.get("serum") is not None:  # the patient's serum values on every beat (mmol/L)
        for row in beat_rows:
            row["potassium"] = patient.potassium_mmol_l
            row["sodium"] = patient.sodium_mmol_l
    image_row = None
    if cfg["images"]:
        image_row = _render_patient(cfg, task, recording.leads, fs, rng)
        for row in beat_rows:
            row["source_image"] = f"images/{image_row['image_file']}"
    row = patient.row()
    row["n_beats"] = len(beat_rows)
    stored = TWELVE_LEADS if cfg["twelve_lead"] else ("II",)
    signal = [recording.leads[k] if cfg["twelve_lead"] else recording.lead_ii for k in stored]
    record = (task.patient_id, as_written(np.stack(signal)), fs, stored)
    beats = [as_written(beat) for beat in beats]
    return {
        "patient": row,
        "beats": beats,
        "beat_rows": beat_rows,
        "image": image_row,
        "record": record,
    }


def writes_signal_csvs(cfg: Mapping[str, Any]) -> bool:
    """Whether the cohort holds its recordings as signal CSVs too (always with images: they are
    the images' ground truth)."""
    return bool(cfg.get("signal_csvs", True)) or bool(cfg["images"])


def as_written(samples: np.ndarray) -> np.ndarray:
    """``samples`` as the cohort's CSVs hold them (mV to 0.01 µV), so the packed stores and the
    signal CSVs agree bit for bit once read as float32."""
    return np.rint(np.asarray(samples, dtype=np.float64) * 1e5) / 1e5


def _write_signal(path: Path, samples: np.ndarray, fs: float) -> None:
    t = np.arange(len(samples)) / fs
    lines = "\n".join(f"{a:.4f},{b:.5f}" for a, b in zip(t, samples, strict=True))
    path.write_text("time_s,mv\n" + lines + "\n")


def _write_twelve_lead(path: Path, leads: Mapping[str, np.ndarray], fs: float) -> None:
    n = len(leads["II"])
    frame = pd.DataFrame({"time_s": np.arange(n) / fs, **{k: leads[k] for k in TWELVE_LEADS}})
    frame.to_csv(path, index=False, float_format="%.5f")


def _select_beats(
    cfg: Mapping[str, Any],
    task: PatientTask,
    lead_ii: np.ndarray,
    r_indices: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Keep ``beats_per_patient`` beats at random among the recording's complete windows."""
    fs = float(cfg["fs"])
    pre_ms, post_ms = float(cfg["pre_r_ms"]), float(cfg["post_r_ms"])
    windows, kept = extract_windows(lead_ii, r_indices, fs, pre_ms, post_ms)
    low, high = (int(v) for v in cfg["beats_per_patient"])
    n_keep = min(int(rng.integers(low, high + 1)), len(kept))
    chosen = np.sort(rng.choice(len(kept), size=n_keep, replace=False))
    all_r = list(r_indices)
    pre = round(pre_ms * fs / 1000.0)
    rows = [
        {
            "patient_id": task.patient_id,
            "group": task.group,
            "record_id": task.patient_id,
            "beat_index": all_r.index(int(kept[k])),
            "r_index": pre,
            "center": task.center,
            "device": task.device,
            "source_image": "",
            "record_r_index": int(kept[k]),
        }
        for k in chosen
    ]
    return [windows[k] for k in chosen], rows


def draw_render_options(render_cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Layout, DPI, grid colour and distortions for one image, drawn from the render knobs."""
    layouts = render_cfg["layouts"]
    grids = render_cfg["grid_colors"]
    distortions: dict[str, Any] = {}
    for name, spec in render_cfg["distortions"].items():
        if rng.random() >= float(spec["p"]):
            continue
        low, high = spec["range"]
        if name in ("creases", "stains", "jpeg_quality"):
            distortions[name] = int(rng.integers(int(low), int(high) + 1))
        else:
            distortions[name] = round(float(rng.uniform(float(low), float(high))), 4)
    dpi_low, dpi_high = render_cfg["dpi"]
    return {
        "layout": str(_weighted_choice(rng, layouts)),
        "dpi": int(rng.integers(int(dpi_low), int(dpi_high) + 1)),
        "grid_color": str(_weighted_choice(rng, grids)),
        "distortions": distortions,
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def _weighted_choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = list(weights)
    p = np.array([float(weights[n]) for n in names])
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _render_patient(
    cfg: Mapping[str, Any],
    task: PatientTask,
    leads: Mapping[str, np.ndarray],
    fs: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    options = draw_render_options(cfg["render"], rng)
    image, truth = render_ecg(leads, fs, title=task.patient_id, **options)
    is_jpeg = "jpeg_quality" in options["distortions"]
    name = f"{task.patient_id}.{'jpg' if is_jpeg else 'png'}"
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(options["distortions"]["jpeg_quality"])]
        if is_jpeg
        else [
            cv2.IMWRITE_PNG_COMPRESSION,
            int(cfg["render"]["png_compression"]),
            cv2.IMWRITE_PNG_FILTER,
            cv2.IMWRITE_PNG_FILTER_NONE,  # 3× faster than adaptive filtering, files ~2× larger
        ]
    )
    cv2.imwrite(str(Path(task.out) / "images" / name), image, params)
    return {
        "image_file": name,
        "patient_id": task.patient_id,
        "group": task.group,
        "center": task.center,
        "device": task.device,
        "layout": truth["layout"],
        "dpi": truth["dpi"],
        "grid_color": truth["grid_color"],
        "px_per_mm_x": truth["px_per_mm_x"],
        "px_per_mm_y": truth["px_per_mm_y"],
        "px_per_s": truth["px_per_s"],
        "px_per_mv": truth["px_per_mv"],
        "t0_col": truth["t0_col"],
        "zero_mv_row": truth["zero_mv_row"],
        "image_width": truth["image_width"],
        "image_height": truth["image_height"],
        "calibration_pulse": truth["calibration_pulse"],
        "distortions": json.dumps(truth["distortions"], sort_keys=True),
        "homography": json.dumps(np.round(truth["homography"], 8).tolist()),
        "panels": json.dumps(truth["panels"]),
        "signal_file": f"../signals/{task.patient_id}.csv",
    }


# --------------------------------------------------------------------------- the folder


def build_cohort(
    cohort_cfg: Mapping[str, Any] | DictConfig,
    out: Path | str,
    overwrite: bool = False,
    n_jobs: int | None = None,
    progress: bool = True,
    engine_address: str | None = None,
) -> Path:
    """Build the cohort folder at ``out`` (atomically); reuse it when it holds this cohort.
    ``engine_address``: a Dask scheduler whose workers build the patients (null: ``n_jobs``
    local processes); the cohort is the same either way."""
    cfg = cohort_config(cohort_cfg)
    out = Path(out).absolute()
    digest = config_hash(cfg)
    existing = read_cohort_json(out)
    if existing is not None and existing.get("config_hash") == digest and not overwrite:
        log.info("%s already holds this cohort (%s): reusing it", out, digest)
        return out
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        what = "a different cohort" if existing is not None else "other files"
        raise EcgmlError(
            f"output folder {out} already holds {what}: pass overwrite=true to replace it, "
            "or choose another out=DIR"
        )
    _check_replaceable(out, overwrite)
    check_reachable(engine_address)
    tmp = new_temp(out, CREATED_BY)
    try:
        _build_into(cfg, digest, tmp, n_jobs, progress, engine_address)
        _move_into_place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _build_into(
    cfg: dict[str, Any],
    digest: str,
    folder: Path,
    n_jobs: int | None,
    progress: bool,
    address: str | None = None,
) -> None:
    csvs = writes_signal_csvs(cfg)
    subfolders = ["signals"] * csvs + ["images"] * bool(cfg["images"])
    subfolders += ["signals12"] * (csvs and bool(cfg["twelve_lead"]))
    for sub in subfolders:  # workers write only into these (never re-create a removed folder)
        (folder / sub).mkdir(parents=True, exist_ok=True)
    tasks = plan_patients(cfg, folder)
    with PackedWriter(folder / PACKED, "record", "float32") as records:

        def add_record(result: dict[str, Any]) -> None:
            records.add(*result.pop("record"))

        results = _run_tasks(tasks, n_jobs, progress, add_record, address)
        records.commit()
    patients = pd.DataFrame([r["patient"] for r in results])
    patients = patients[_patient_columns(patients)]
    patients.to_csv(folder / "patients.csv", index=False, float_format="%.6g")
    table = records_table(patients, "signals12" if cfg["twelve_lead"] else "signals")
    if not csvs:  # the packed store only
        table = table.drop(columns="record_file")
    save_records_table(folder, table.assign(**{ROW_COLUMN: range(len(table))}))
    if cfg["images"]:
        images = pd.DataFrame([r["image"] for r in results])
        images.to_csv(folder / "images" / "images.csv", index=False, float_format="%.6g")
    beats = [b for r in results for b in r["beats"]]
    rows = pd.DataFrame([row for r in results for row in r["beat_rows"]])
    if not cfg["images"]:
        rows = rows.drop(columns="source_image")
    write_beat_store(
        folder / "beats",
        beats,
        rows,
        float(cfg["fs"]),
        cfg["pre_r_ms"],
        cfg["post_r_ms"],
        packed=True,
        dtype="float32",  # the values the CSVs would hold, bit for bit
    )
    meta = {
        "created_by": "ecgml.synth",
        "generator_version": GENERATOR_VERSION,
        "config_hash": digest,
        "seed": int(cfg["seed"]),
        "n_patients": len(patients),
        "n_beats": len(beats),
        "group_counts": patients["group"].value_counts().sort_index().to_dict(),
        "config": cfg,
    }
    (folder / COHORT_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _patient_columns(patients: pd.DataFrame) -> list[str]:
    first = ["patient_id", "group", "center", "device", "heart_rate", "severity"]
    first += ["potassium_mmol_l", "sodium_mmol_l", "serum_multiplier", "signs"]
    first = [c for c in first if c in patients.columns]
    return first + [c for c in patients.columns if c not in first]


def _run_tasks(
    tasks: list[PatientTask],
    n_jobs: int | None,
    progress: bool,
    consume: Callable[[dict[str, Any]], Any],
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Every patient built, in order; ``consume`` sees each result as it arrives (and may take
    its bulky parts out of it, so they never pile up). ``address``: a Dask scheduler whose
    workers build them (:mod:`ecgml.outputs.engine`); else local processes."""
    workers = _worker_count(n_jobs, len(tasks))
    bar = tqdm(total=len(tasks), desc="synth cohort", unit="patient", disable=not progress)
    with bar:
        if workers <= 1 and address is None:
            results = []
            for task in tasks:
                results.append(build_patient(task))
                consume(results[-1])
                bar.update()
            return results
        results = []
        with executor(workers, address, init_worker) as pool:
            chunk = max(1, min(16, math.ceil(len(tasks) / (4 * workers))))
            for result in pool.map(build_patient, tasks, chunksize=chunk):
                results.append(result)
                consume(result)
                bar.update()
        return results


def _worker_count(n_jobs: int | None, n_tasks: int) -> int:
    if n_tasks < MIN_PATIENTS_FOR_POOL:
        return 1
    if n_jobs is None or n_jobs <= 0:
        n_jobs = min(os.cpu_count() or 1, 8)
    return max(1, min(int(n_jobs), n_tasks))


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished build onto ``out``, checked again: it may have changed meanwhile."""
    _check_replaceable(out, overwrite)
    move_into_place(tmp, out)


def _check_replaceable(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` holding files, unless ``overwrite`` and ecgml wrote them."""
    existing = read_cohort_json(out)
    owned = existing is not None and existing.get("created_by") == CREATED_BY
    check_replaceable(out, overwrite, "output folder", owned=owned)


def read_cohort_json(folder: Path) -> dict[str, Any] | None:
    """The folder's ``cohort.json`` (the completeness marker), or None."""
    path = Path(folder) / COHORT_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def ensure_cohort(
    cohort_cfg: Mapping[str, Any] | DictConfig,
    cache_dir: Path | str,
    n_jobs: int | None = None,
    progress: bool = True,
) -> Path:
    """Return ``cache_dir/cohort-<hash>``, building it first unless a complete one exists.

    The beat store is ``<folder>/beats``. Safe against concurrent callers: each builds in its
    own temporary folder and the first rename wins.
    """
    cfg = cohort_config(cohort_cfg)
    folder = Path(cache_dir).absolute() / f"cohort-{config_hash(cfg)}"
    if _is_complete(folder):
        return folder
    log.info("building synthetic cohort into %s", folder)
    tmp = new_temp(folder, CREATED_BY)
    try:
        _build_into(cfg, config_hash(cfg), tmp, n_jobs, progress)
        if _is_complete(folder):
            return folder
        if folder.exists():  # an incomplete leftover from an older, non-atomic writer
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not _is_complete(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _is_complete(folder: Path) -> bool:
    return (folder / COHORT_JSON).is_file() and (folder / "beats" / "manifest.csv").is_file()
