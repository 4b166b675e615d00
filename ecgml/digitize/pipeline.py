"""Image → calibrated lead-II signal → beats, one image at a time (pure: no files written)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.grid import Calibration, calibration_from_dpi, detect_grid
from ecgml.digitize.image import DEFAULT_MAX_PIXELS, estimate_skew, load_image, rotate
from ecgml.digitize.pulse import calibration_from_pulses, find_pulses
from ecgml.digitize.trace import (
    column_values,
    find_contours,
    isoelectric_row,
    remove_background,
    select_trace,
    to_signal,
    trace_mask,
)
from ecgml.signal import BeatSet, extract_beats

LAYOUTS = ("strip", "page")
#: Without a grid, guess px/mm for the background kernel from a 10 s strip's typical width.
GUESS_STRIP_MM = 280.0
MIN_SKEW_DEG = 0.05


@dataclass
class Digitized:
    """A digitized trace: ``signal`` in mV at ``fs`` (t=0 at the trace's left end)."""

    signal: np.ndarray
    fs: float
    calibration: Calibration
    skew_deg: float
    baseline_row: float
    columns: tuple[int, int]


def straighten(image: np.ndarray) -> tuple[np.ndarray, float, Calibration | None]:
    """Deskew and find the grid: ``(image, rotation undone (deg), grid calibration or None)``.

    The skew estimate leans on the grid lines; when the rotated image shows no grid, the
    original is kept (a trace alone is no reliable reference for the angle).
    """
    angle = estimate_skew(image)
    if abs(angle) >= MIN_SKEW_DEG:
        rotated = rotate(image, -angle)
        grid = detect_grid(rotated)
        if grid is not None:
            return rotated, angle, grid
    return image, 0.0, detect_grid(image)


def digitize_image(
    image: np.ndarray, layout: str = "strip", fs: float = 500.0, dpi: float | None = None
) -> Digitized:
    """Lead-II trace of a BGR image (``layout="page"``: the 3×4 page's bottom rhythm strip)."""
    if layout not in LAYOUTS:
        raise DigitizeError(f"unknown layout {layout!r}: use strip or page")
    if image.ndim != 3 or min(image.shape[:2]) < 32:
        raise DigitizeError(f"image of shape {image.shape} is too small to hold an ECG")
    image, skew, grid = straighten(image)
    guess_ppm = grid.px_per_mm_x if grid else image.shape[1] / GUESS_STRIP_MM
    mask = remove_background(image, guess_ppm)
    contours = find_contours(mask)
    if not contours:
        raise DigitizeError("no ECG trace found (blank image)")
    boxes = [b for _, b in contours]
    pulses = find_pulses(mask, boxes, 0.1 * image.shape[1])
    calibration = grid or calibration_from_pulses(pulses)
    if calibration is None and dpi:
        calibration = calibration_from_dpi(float(dpi))
    if calibration is None:
        raise DigitizeError(
            "no grid and no 1 mV calibration pulse found, and no dpi= given: pass dpi=<scan "
            "resolution> to calibrate"
        )
    chosen = select_trace(contours, layout, calibration.px_per_mm_x, [p.box for p in pulses])
    width_s = max(b.w for _, b in chosen) / calibration.px_per_s
    if width_s < 0.5:
        raise DigitizeError(f"no ECG trace found (the longest line spans only {width_s:.2f} s)")
    crop, row0 = trace_mask(mask, chosen)
    y, columns = column_values(crop)
    y += row0
    baseline = isoelectric_row(y)
    signal = to_signal(y, calibration, fs, baseline)
    return Digitized(
        signal, float(fs), calibration, skew, baseline, (int(columns[0]), int(columns[-1]))
    )


@dataclass
class ImageResult:
    """What :func:`process_image` returns for one image (status ``ok`` or ``failed``)."""

    image_file: str
    status: str
    error: str = ""
    seconds: float = 0.0
    digitized: Digitized | None = None
    beats: BeatSet | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_beats(self) -> int:
        return len(self.beats) if self.beats is not None else 0


def process_image(
    path: Path | str,
    layout: str = "strip",
    fs: float = 500.0,
    dpi: float | None = None,
    beat_options: dict[str, Any] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageResult:
    """Load, digitize and cut beats from one image; never raises (errors become ``failed``).

    Images (or PDF renders) over ``max_pixels`` fail unread (see :func:`load_image`).
    """
    path = Path(path)
    start = time.perf_counter()
    try:
        digitized = digitize_image(load_image(path, max_pixels=max_pixels), layout, fs, dpi)
        beats = extract_beats(digitized.signal, fs, **(beat_options or {}))
        if len(beats) == 0:
            raise DigitizeError(
                f"no beat could be cut from the trace ({len(digitized.signal) / fs:.1f} s long, "
                f"{len(beats.rejected)} R-peaks rejected)"
            )
        status, error = "ok", ""
    except DigitizeError as err:
        digitized, beats, status, error = None, None, "failed", str(err)
    except Exception as err:  # one bad image must never stop the others
        digitized, beats, status = None, None, "failed"
        error = f"internal error: {type(err).__name__}: {err}"
        tb = traceback.format_exc(limit=3)
        return ImageResult(
            path.name, status, error, time.perf_counter() - start, info={"traceback": tb}
        )
    return ImageResult(path.name, status, error, time.perf_counter() - start, digitized, beats)
