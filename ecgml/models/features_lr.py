"""``model=features_lr``: the physiologist's baseline every CNN must beat.

NeuroKit2 delineates each beat (DWT method), the intervals and amplitudes that electrolytes
change become features (T amplitude and width, QRS width, PR, QT and Bazett QTc, ST level,
U/T ratio, R amplitude), and a scikit-learn logistic regression (median imputation, scaling,
balanced classes) is fitted on the training patients. This module is the model and its features
only; :class:`ecgml.pipeline.fitters.SklearnFitter` fits it inside the one run lifecycle.

A single beat is too short for NeuroKit2's segmentation (it wants ≥ 4 s), so each beat is tiled
into a pseudo-record and the middle copy's waves are read.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from ecgml.beatstore import PROVENANCE_COLUMNS
from ecgml.data.datamodule import BeatTable
from ecgml.signal import WAVES, DelineationError, delineate_record

log = logging.getLogger("ecgml.features_lr")
FEATURES = (
    "t_amplitude",
    "t_width_ms",
    "qrs_width_ms",
    "pr_ms",
    "qt_ms",
    "qtc_ms",
    "st_level",
    "u_t_ratio",
    "r_amplitude",
)
CHUNK = 40  # beats delineated per NeuroKit2 call


def delineate_beats(beats: np.ndarray, r_index: int, fs: float) -> list[dict[str, float]]:
    """Wave positions (samples within each beat) for a chunk of equal-length beats.

    The beats are laid end to end as one pseudo-record (padded with a copy at each end and to
    NeuroKit2's 4 s minimum) and delineated in one call; NaN where a wave was not found.
    """
    n = len(beats[0])
    pad = max(1, int(np.ceil((4.5 * fs / n - len(beats)) / 2)))
    padded = [beats[0]] * pad + list(beats) + [beats[-1]] * pad
    record = np.concatenate(padded).astype(float)
    rpeaks = np.arange(len(padded)) * n + r_index
    try:
        waves = delineate_record(record, rpeaks, fs)
    except DelineationError:
        waves = pd.DataFrame(np.nan, index=range(len(padded)), columns=list(WAVES))
    positions = (pad + np.arange(len(beats)))[:, None] * n
    inner = waves.iloc[pad : pad + len(beats)].to_numpy() - positions
    return [dict(zip(WAVES, row, strict=True)) for row in inner]


def _at(beat: np.ndarray, index: float) -> float:
    if not np.isfinite(index) or not 0 <= index < len(beat):
        return np.nan
    return float(beat[int(index)])


def beat_features(
    beat: np.ndarray, waves: dict[str, float], r_index: int, fs: float, rr_ms: float = np.nan
) -> dict[str, float]:
    """The baseline's features of one delineated beat (amplitudes as the beat, intervals ms)."""
    w = waves
    ms = 1000.0 / fs
    r_on = w["R_Onsets"] if np.isfinite(w["R_Onsets"]) else r_index - 0.04 * fs
    lo = int(w["P_Offsets"]) if np.isfinite(w["P_Offsets"]) else int(r_on - 0.03 * fs)
    segment = beat[max(lo, 0) : max(int(r_on), 1)]
    baseline = float(np.median(segment)) if len(segment) else float(np.median(beat))
    t_amplitude = _at(beat, w["T_Peaks"]) - baseline
    qt_ms = (w["T_Offsets"] - r_on) * ms
    u_start = w["T_Offsets"] if np.isfinite(w["T_Offsets"]) else np.nan
    u_window = beat[int(u_start) : int(u_start + 0.2 * fs)] if np.isfinite(u_start) else beat[:0]
    u_amplitude = float(u_window.max()) - baseline if len(u_window) else np.nan
    return {
        "t_amplitude": t_amplitude,
        "t_width_ms": (w["T_Offsets"] - w["T_Onsets"]) * ms,
        "qrs_width_ms": (w["R_Offsets"] - w["R_Onsets"]) * ms,
        "pr_ms": (r_on - w["P_Onsets"]) * ms,
        "qt_ms": qt_ms,
        "qtc_ms": qt_ms / np.sqrt(rr_ms / 1000.0) if np.isfinite(rr_ms) else np.nan,
        "st_level": _at(beat, w["R_Offsets"] + 0.06 * fs) - baseline,
        "u_t_ratio": u_amplitude / t_amplitude if abs(t_amplitude) > 1e-3 else np.nan,
        "r_amplitude": _at(beat, r_index) - baseline,
    }


def rr_intervals_ms(meta: pd.DataFrame, fs: float) -> np.ndarray:
    """RR per beat from neighbouring beats of the same record (``record_r_index``), else the
    patient's median, else NaN (then QTc is imputed)."""
    if not {"record_r_index", "record_id", "beat_index"} <= set(meta.columns):
        return np.full(len(meta), np.nan)
    frame = meta[["patient_id", "record_id", "beat_index", "record_r_index"]].copy()
    frame = frame.sort_values(["record_id", "beat_index"])
    step = frame.groupby("record_id")["beat_index"].diff()
    gap = frame.groupby("record_id")["record_r_index"].diff()
    frame["rr"] = np.where(step > 0, gap / step, np.nan) * 1000.0 / fs
    frame["rr"] = frame["rr"].fillna(frame.groupby("patient_id")["rr"].transform("median"))
    return frame["rr"].reindex(meta.index).to_numpy(dtype=float)


def feature_matrix(table: BeatTable, cache_dir: Path | None) -> pd.DataFrame:
    """Features of every beat in ``table`` (cached by data digest and beat length)."""
    r_index = table.r_index if table.r_index is not None else int(np.argmax(table.x[0]))
    key = hashlib.sha256(f"{table.digest}-{table.x.shape}-{r_index}".encode()).hexdigest()[:16]
    cached = cache_dir / f"features-{key}.csv" if cache_dir else None
    if cached is not None and cached.is_file():
        return pd.read_csv(cached)
    rr = rr_intervals_ms(table.meta, table.fs)
    waves: list[dict[str, float]] = []
    for start in tqdm(range(0, len(table.x), CHUNK), desc="delineating beats", unit="chunk"):
        waves += delineate_beats(table.x[start : start + CHUNK], r_index, table.fs)
    rows = [
        beat_features(beat, waves[i], r_index, table.fs, rr[i]) for i, beat in enumerate(table.x)
    ]
    features = pd.DataFrame(rows, columns=list(FEATURES))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        features.to_csv(cached, index=False)
    return features


def build_classifier(hparams: dict[str, Any]) -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(
            C=float(hparams.get("C", 1.0)),
            class_weight=hparams.get("class_weight", "balanced"),
            max_iter=int(hparams.get("max_iter", 1000)),
        ),
    )


def prediction_frame(table: BeatTable, y_prob: np.ndarray) -> pd.DataFrame:
    """Validation and test beats with their probabilities: the same columns as
    :meth:`~ecgml.data.datamodule.BeatDataModule.prediction_frame` (the evaluation's input)."""
    columns = ["patient_id", "beat_id", "split", "y", "group"]
    columns += [c for c in PROVENANCE_COLUMNS if c in table.meta.columns]
    frame = table.meta[columns].rename(columns={"y": "y_true"}).assign(y_prob=y_prob)
    return frame[frame["split"].isin(["val", "test"])].reset_index(drop=True)
