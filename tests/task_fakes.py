"""A small four-group beat store with serum values, for the multi-label and regression tasks.

Each disorder changes a different part of the beat, so a working model separates all three:
hyperkalemia a taller T, hypokalemia a flatter T plus a U wave, hyponatremia a wider QRS. The T
amplitude follows serum potassium for every patient (``T = 0.25 + 0.12·(K − 4.25)`` mV), so a
regression that reads the T wave recovers K.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.beatstore import write_beat_store
from tests.fakes import FS, PRE, gaussian

GROUP_SIZES = {"normal": 40, "hyperkalemia": 24, "hypokalemia": 24, "hyponatremia": 24}


def serum_values(rng: np.random.Generator, group: str) -> tuple[float, float]:
    """(K, Na) in mmol/L for a patient of ``group``."""
    k = {"hyperkalemia": rng.uniform(5.3, 7.0), "hypokalemia": rng.uniform(2.6, 3.3)}.get(
        group, rng.uniform(3.6, 4.9)
    )
    na = rng.uniform(122, 133) if group == "hyponatremia" else rng.uniform(136, 144)
    return float(k), float(na)


def task_beat(rng: np.random.Generator, group: str, k: float, shape: np.ndarray) -> np.ndarray:
    t = np.arange(-PRE, POST_SAMPLES, dtype=float)
    p_amp, qrs_w, t_pos, t_w = shape
    qrs_w = qrs_w + (3.0 if group == "hyponatremia" else 0.0)
    t_amp = 0.25 + 0.12 * (k - 4.25)
    u_amp = 0.12 if group == "hypokalemia" else 0.0
    beat = (
        gaussian(t, -30, 5, p_amp)
        + gaussian(t, 0, qrs_w, 1.2)
        + gaussian(t, t_pos, t_w, t_amp)
        + gaussian(t, t_pos + 35, 8, u_amp)
    )
    return (beat + rng.normal(0, 0.01, beat.shape)).astype(np.float32)


POST_SAMPLES = 130


def write_task_store(
    root: Path,
    sizes: dict[str, int] | None = None,
    beats_per_patient: int = 3,
    seed: int = 0,
    serum: bool = True,
) -> Path:
    """The store described in the module docstring (``potassium``/``sodium`` columns when
    ``serum``)."""
    rng = np.random.default_rng(seed)
    groups = [g for g, n in (sizes or GROUP_SIZES).items() for _ in range(n)]
    beats, rows = [], []
    for index, group in enumerate(rng.permutation(groups)):
        shape = np.array(
            [rng.uniform(0.05, 0.2), rng.uniform(3, 5), rng.uniform(55, 75), rng.uniform(10, 16)]
        )
        k, na = serum_values(rng, str(group))
        for b in range(beats_per_patient):
            beats.append(task_beat(rng, str(group), k, shape))
            row = {
                "patient_id": f"P{index:03d}",
                "group": group,
                "record_id": f"P{index:03d}",
                "beat_index": b,
                "r_index": PRE,
                "center": f"C{index % 3}",
            }
            if serum:
                row.update({"potassium": round(k, 2), "sodium": round(na, 1)})
            rows.append(row)
    return write_beat_store(root, beats, pd.DataFrame(rows), fs=FS, pre_r_ms=200, post_r_ms=520)
