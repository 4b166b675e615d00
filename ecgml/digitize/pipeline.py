"""Image → calibrated lead-II signal → beats, one image at a time (pure: no files written)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.grid import Calibration, calibration_from_dpi, detect_grid
from ecgml.digitize.image import DEFAULT_MAX_PIXELS, estimate_skew, load_image, rotate
from ecgml.digitize.leads import (
    Row,
    blank_boxes,
    decide_layout,
    find_rows,
    read_leads,
    row_peaks,
)
from ecgml.digitize.pulse import Pulse, calibration_from_pulses, find_pulses
from ecgml.digitize.rectify import find_sheet, flatten_lighting, rectify
from ecgml.digitize.trace import (
    COLUMN_STEP,
    column_values,
    find_contours,
    isoelectric_row,
    remove_background,
    select_trace,
    to_signal,
    trace_mask,
)
from ecgml.signal import BeatSet, extract_beats

LAYOUTS = ("auto", "strip", "page", "3x4", "6x2", "12x1")
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
    #: Photo → rectified-sheet homography when the image was a photo of a sheet, else None.
    homography: np.ndarray | None = None
    layout: str = "strip"
    #: Every lead found, mV at ``fs`` on the page's time axis (NaN outside its window).
    leads: dict[str, np.ndarray] = field(default_factory=dict)
    #: Leads of the layout that could not be read, with the reason.
    left_out: dict[str, str] = field(default_factory=dict)


def straighten(
    image: np.ndarray, square: bool = True
) -> tuple[np.ndarray, float, Calibration | None]:
    """Deskew and find the grid: ``(image, rotation undone (deg), grid calibration or None)``.

    The skew estimate leans on the grid lines; when the rotated image shows no grid, the
    original is kept (a trace alone is no reliable reference for the angle).
    """
    straight, angle, grid, _ = _straighten(image, square)
    return straight, angle, grid


def _straighten(
    image: np.ndarray, square: bool = True
) -> tuple[np.ndarray, float, Calibration | None, np.ndarray | None]:
    """:func:`straighten`, plus max(B, G, R) of the image returned when it was computed on the
    way (one colour conversion serves the grid and the ink mask)."""
    angle = estimate_skew(image)
    if abs(angle) >= MIN_SKEW_DEG:
        rotated = rotate(image, -angle)
        grid = detect_grid(rotated, square)
        if grid is not None:
            return rotated, angle, grid, None
    if image.ndim != 3:
        return image, 0.0, detect_grid(image, square), None
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    return image, 0.0, detect_grid(image, square, hsv), cv2.extractChannel(hsv, 2)


def unwarp(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A photo of a sheet on a darker background → the sheet, upright and evenly lit, plus
    the homography used; any other image comes back as it is (and None)."""
    sheet = find_sheet(image)
    if sheet is None:
        return image, None
    rectified, homography = rectify(image, sheet)
    return flatten_lighting(rectified), homography


def digitize_image(
    image: np.ndarray, layout: str = "auto", fs: float = 500.0, dpi: float | None = None
) -> Digitized:
    """Lead II (``signal``) and every lead found (``leads``) of a BGR image.

    ``layout``: ``auto`` decides from the image; ``strip`` (one lead-II strip), ``page`` (the
    3×4 page's bottom rhythm strip is lead II, as before), ``3x4``, ``6x2``, ``12x1``.
    """
    if layout not in LAYOUTS:
        raise DigitizeError(f"unknown layout {layout!r}: use {', '.join(LAYOUTS)}")
    if image.ndim != 3 or min(image.shape[:2]) < 32:
        raise DigitizeError(f"image of shape {image.shape} is too small to hold an ECG")
    image, homography = unwarp(image)
    image, skew, grid, value = _straighten(image, square=homography is None)
    mask, contours, pulses, calibration = calibrate(image, grid, dpi, value)
    rows: list[Row] | None = None
    if layout == "auto":
        boxes = [p.box for p in pulses]
        traces = blank_boxes(mask, boxes)
        found = row_peaks(traces, calibration, [(c, b) for c, b in contours if b not in boxes])
        if found[0].size == 1:  # one row of trace: a strip, read as always
            layout = "strip"
        else:
            rows = find_rows(traces, calibration, found)
            layout = decide_layout(rows, mask, calibration)  # a strip is read as always
    if layout in ("strip", "page"):
        digitized = _lead_ii_trace(mask, contours, pulses, calibration, layout, fs)
        digitized.leads = {"II": digitized.signal}
        if layout == "page":
            _add_page_leads(digitized, mask, pulses, calibration, fs)
    else:
        if rows is None:
            rows = find_rows(blank_boxes(mask, [p.box for p in pulses]), calibration)
        page = read_leads(rows, layout, mask, calibration, fs)
        if page.lead_ii is None or page.lead_ii.size < 2:
            raise DigitizeError(f"lead II not found on the {layout} page")
        digitized = Digitized(page.lead_ii, float(fs), calibration, skew, 0.0, (0, 0))
        digitized.leads, digitized.left_out = page.leads, page.left_out
    digitized.layout, digitized.skew_deg, digitized.homography = layout, skew, homography
    return digitized


def calibrate(
    image: np.ndarray,
    grid: Calibration | None,
    dpi: float | None,
    value: np.ndarray | None = None,
) -> tuple[np.ndarray, list, list[Pulse], Calibration]:
    """Ink mask, contours, calibration pulses and the calibration: grid, else the 1 mV pulse
    (its 200 ms width and 10 mm height), else ``dpi`` at 25 mm/s and 10 mm/mV."""
    guess_ppm = grid.px_per_mm_x if grid else image.shape[1] / GUESS_STRIP_MM
    mask, contours, pulses = _ink(image, guess_ppm, value)
    from_pulses = calibration_from_pulses(pulses)
    if grid and from_pulses and abs(grid.px_per_mm_y / from_pulses.px_per_mm_y - 1) > 0.25:
        # Evenly spaced trace rows on a grid-less page can pose as a coarse grid; the printed
        # 1 mV pulses then disagree by a large factor, and they win.
        grid = None
        mask, contours, pulses = _ink(image, from_pulses.px_per_mm_x, value)
        from_pulses = calibration_from_pulses(pulses) or from_pulses
    calibration = grid or from_pulses
    if calibration is None and dpi:
        calibration = calibration_from_dpi(float(dpi))
    if calibration is None:
        raise DigitizeError(
            "no grid and no 1 mV calibration pulse found, and no dpi= given: pass dpi=<scan "
            "resolution> to calibrate"
        )
    return mask, contours, pulses, calibration


def _ink(
    image: np.ndarray, px_per_mm: float, value: np.ndarray | None = None
) -> tuple[np.ndarray, list, list[Pulse]]:
    """Ink mask, its contours (longest first) and the calibration pulses among them."""
    mask = remove_background(image, px_per_mm, value)
    contours = find_contours(mask)
    if not contours:
        raise DigitizeError("no ECG trace found (blank image)")
    pulses = find_pulses(mask, [b for _, b in contours], 0.1 * image.shape[1], image)
    return mask, contours, pulses


def _lead_ii_trace(
    mask: np.ndarray,
    contours: list,
    pulses: list[Pulse],
    calibration: Calibration,
    layout: str,
    fs: float,
) -> Digitized:
    """The lead-II strip (or a page's bottom rhythm strip) as before the all-leads reader."""
    chosen = select_trace(contours, layout, calibration.px_per_mm_x, [p.box for p in pulses])
    width_s = max(b.w for _, b in chosen) / calibration.px_per_s
    if width_s < 0.5:
        raise DigitizeError(f"no ECG trace found (the longest line spans only {width_s:.2f} s)")
    crop, row0 = trace_mask(mask, chosen)
    y, columns = column_values(crop, COLUMN_STEP)
    y += row0
    baseline = isoelectric_row(y)
    signal = to_signal(y, calibration, fs, baseline, columns)
    return Digitized(
        signal, float(fs), calibration, 0.0, baseline, (int(columns[0]), int(columns[-1]))
    )


def _add_page_leads(
    digitized: Digitized,
    mask: np.ndarray,
    pulses: list[Pulse],
    calibration: Calibration,
    fs: float,
) -> None:
    """A ``page``'s twelve leads beside its lead-II rhythm strip (best effort: a page whose
    leads cannot be read keeps lead II and names the reason)."""
    try:
        rows = find_rows(blank_boxes(mask, [p.box for p in pulses]), calibration)
        page = read_leads(rows, "3x4", mask, calibration, fs)
    except DigitizeError as err:
        digitized.left_out = {"other leads": str(err)}
        return
    digitized.leads, digitized.left_out = page.leads, page.left_out


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
    layout: str = "auto",
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
