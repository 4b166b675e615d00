"""Small beat stores made on the fly for tests (no data files needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.beatstore import write_beat_store

FS = 250.0
PRE, POST = 50, 100  # samples before/after R at 250 Hz


def gaussian(t: np.ndarray, center: float, width: float, amplitude: float) -> np.ndarray:
    return amplitude * np.exp(-0.5 * ((t - center) / width) ** 2)


def toy_beat(rng: np.random.Generator, t_amplitude: float, shape: np.ndarray) -> np.ndarray:
    """A P-QRS-T beat (R at sample PRE) with patient ``shape`` and some beat noise."""
    t = np.arange(-PRE, POST, dtype=float)
    p_amp, qrs_w, t_pos, t_w = shape
    beat = (
        gaussian(t, -30, 5, p_amp)
        + gaussian(t, 0, qrs_w, 1.2)
        + gaussian(t, t_pos, t_w, t_amplitude)
    )
    return (beat + rng.normal(0, 0.01, beat.shape)).astype(np.float32)


def write_toy_store(
    root: Path,
    n_positive: int = 20,
    n_negative: int = 30,
    beats_per_patient: int = 3,
    positive: str = "hyperkalemia",
    effect: float = 0.3,
    seed: int = 0,
    random_labels: bool = False,
    beat_sd: float = 0.01,
) -> Path:
    """A beat store where positives have a taller T wave (``effect`` mV).

    With ``random_labels`` every patient gets a distinct morphology and a label drawn at random,
    unrelated to the beats: only memorizing patients could "predict" it (the leakage test).
    """
    rng = np.random.default_rng(seed)
    groups = [positive] * n_positive + ["normal"] * n_negative
    if random_labels:
        groups = list(rng.permutation(groups))
    beats, rows = [], []
    for k, group in enumerate(groups):
        shape = np.array(
            [rng.uniform(0.05, 0.25), rng.uniform(2, 6), rng.uniform(50, 80), rng.uniform(8, 20)]
        )
        t_amp = (
            rng.uniform(0.1, 0.5) if random_labels else 0.25 + (effect if group != "normal" else 0)
        )
        if not random_labels:
            t_amp += rng.normal(0, 0.05)
        for b in range(beats_per_patient):
            beat = toy_beat(rng, t_amp, shape)
            beat += rng.normal(0, beat_sd, beat.shape).astype(np.float32)
            beats.append(beat)
            rows.append(
                {
                    "patient_id": f"P{k:03d}",
                    "group": group,
                    "record_id": f"P{k:03d}",
                    "beat_index": b,
                    "r_index": PRE,
                    "center": f"C{k % 3}",
                    "device": "A" if k % 2 else "B",
                }
            )
    return write_beat_store(root, beats, pd.DataFrame(rows), fs=FS, pre_r_ms=200, post_r_ms=400)
