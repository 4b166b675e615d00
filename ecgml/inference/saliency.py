"""One overlay PNG per input: its median beat with each model's saliency (Captum Saliency)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import uniform_filter1d

from ecgml.explain import compute_attributions
from ecgml.explain.figures import saliency_band
from ecgml.inference.inputs import BeatInput
from ecgml.inference.preprocess import prepare_beats
from ecgml.modelfile.loaded import LoadedModel

CMAP = "magma_r"
SMOOTH_MS = 20.0


def median_beat(entry: BeatInput, model: LoadedModel) -> np.ndarray:
    """The sample-wise median of the entry's beats as prepared for ``model``."""
    return np.median(prepare_beats(entry.beats, entry.r_indices, entry.fs, model), axis=0)


def beat_saliency(beat: np.ndarray, model: LoadedModel, smooth_ms: float = SMOOTH_MS) -> np.ndarray:
    """|d output / d input| for one prepared beat (ecgml.explain's Captum Saliency), smoothed
    over ``smooth_ms`` and scaled to a peak of 1."""
    attribution = compute_attributions(
        model.model, beat[None, :].astype(np.float32), {"method": "saliency"}, model.fs, False
    )[0]
    width = max(1, round(smooth_ms * model.fs / 1000.0))
    attribution = uniform_filter1d(attribution, width, mode="nearest")
    peak = float(np.max(attribution))
    return attribution / peak if peak > 0 else attribution


def write_overlay(
    entry: BeatInput,
    result: Mapping[str, Any],
    models: Mapping[str, LoadedModel],
    path: Path,
    dpi: int = 110,
) -> Path:
    """Median beat per model (its own alignment) with the saliency as a coloured band."""
    fig = Figure(figsize=(8, 2.4 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False, sharex=True)[:, 0]
    image = None
    for ax, (disorder, model) in zip(axes, models.items(), strict=True):
        beat = median_beat(entry, model)
        saliency = beat_saliency(beat, model)
        origin = model.r_index if model.r_index is not None else 0
        t_ms = (np.arange(model.seq_len) - origin) * 1000.0 / model.fs
        lo, hi = float(beat.min()), float(beat.max())
        pad = 0.15 * max(hi - lo, 1e-3)
        y_range = (lo - pad, hi + 2 * pad)
        image = saliency_band(ax, t_ms, saliency, y_range)
        ax.plot(t_ms, beat, color="k", lw=1.2, zorder=2)
        ax.set_ylim(*y_range)
        ax.set_ylabel("mV")
        p = result["probabilities"][disorder]
        verdict = "positive" if result["decisions"][disorder] else "negative"
        ax.set_title(
            f"{disorder}: p={p:.3f} (threshold {model.threshold:.3f}, {verdict})", fontsize=9
        )
    aligned = all(m.r_index is not None for m in models.values())
    axes[-1].set_xlabel("ms from R-peak" if aligned else "ms from the beat's start")
    title = f"{Path(entry.input).name} · patient {entry.patient_id}"
    fig.suptitle(f"{title} · median of {entry.n_beats} beat(s)", fontsize=10)
    if image is not None:
        label = f"saliency (relative, {SMOOTH_MS:g} ms smoothing)"
        fig.colorbar(image, ax=list(axes), label=label, shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # the colorbar's label is never clipped
    return path
