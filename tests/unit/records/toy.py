"""Toy recordings for the record-store tests: Gaussian P-QRS-T beats, optionally tall T waves on
some beats only (the "effect"), written as record CSVs and a ``records.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

FS = 500.0


def ecg(
    rng: np.random.Generator,
    seconds: float = 10.0,
    fs: float = FS,
    heart_rate: float = 72.0,
    effect_beats: Sequence[int] = (),
    t_gain: float = 3.0,
) -> np.ndarray:
    """Lead II (mV): P, QRS, T Gaussians per beat; beats in ``effect_beats`` get a T ``t_gain``
    times taller (0-based beat numbers)."""
    n = round(seconds * fs)
    t = np.arange(n) / fs
    signal = np.zeros(n)
    rr = 60.0 / heart_rate
    r_times = np.arange(0.35, seconds - 0.1, rr)
    effect = set(effect_beats)
    for k, r in enumerate(r_times):
        t_amp = 0.25 * (t_gain if k in effect else 1.0)
        for offset, width, amp in (
            (-0.16, 0.025, 0.12),
            (-0.02, 0.008, -0.1),
            (0.0, 0.01, 1.2),
            (0.025, 0.008, -0.2),
            (0.28, 0.045, t_amp),
        ):
            signal += amp * np.exp(-0.5 * ((t - r - offset) / width) ** 2)
    return signal + rng.normal(0, 0.005, n)


def write_record(path: Path, signal: np.ndarray, fs: float = FS, leads: dict | None = None) -> None:
    """A record CSV: ``time_s,mv`` or, with ``leads``, ``time_s`` + one column per lead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    time = np.arange(len(signal)) / fs
    columns = {"time_s": time, **(leads or {"mv": signal})}
    pd.DataFrame(columns).to_csv(path, index=False, float_format="%.6f")


def write_store(root: Path, rows: list[dict]) -> Path:
    """``root/records.csv`` from ``rows`` (record_file, patient_id, group, …)."""
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "records.csv", index=False)
    return root


def effect_store(
    root: Path,
    n_positive: int,
    n_negative: int,
    effect_beats: Sequence[int] = (2, 5, 8),
    records_per_patient: int = 1,
    seed: int = 0,
    twelve_lead: bool = False,
) -> Path:
    """Positives: tall T on ``effect_beats`` only; negatives: none. Heart rate varies.
    ``twelve_lead``: every record holds the 12 leads (:func:`twelve_views` of lead II)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_positive + n_negative):
        positive = i < n_positive
        for r in range(records_per_patient):
            name = f"signals/P{i:03d}_{r}.csv"
            signal = ecg(
                rng,
                heart_rate=float(rng.uniform(60, 90)),
                effect_beats=effect_beats if positive else (),
            )
            write_record(root / name, signal, leads=twelve_views(signal) if twelve_lead else None)
            rows.append(
                {
                    "record_file": name,
                    "patient_id": f"P{i:03d}",
                    "group": "hyperkalemia" if positive else "normal",
                    "record_id": f"P{i:03d}_{r}",
                    "center": f"C{i % 3}",
                }
            )
    return write_store(root, rows)


def twelve_views(ii: np.ndarray) -> dict[str, np.ndarray]:
    """Twelve leads from lead II: each scaled (some inverted) and offset, odd leads lagged 14 ms,
    so no lead is a plain copy of another."""
    from ecgml import TWELVE_LEADS

    gains = np.linspace(-1.0, 1.4, len(TWELVE_LEADS))
    lagged = np.roll(ii, 7)
    return {
        name: ii if name == "II" else gains[k] * (ii if k % 2 else lagged) + 0.05 * k
        for k, name in enumerate(TWELVE_LEADS)
    }
