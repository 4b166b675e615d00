"""The 1 mV × 200 ms calibration pulse: find it, calibrate from it, keep it out of the trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgml.digitize.grid import Calibration
from ecgml.digitize.image import ink_channel
from ecgml.digitize.trace import Box

PULSE_MV = 1.0
PULSE_S = 0.2
#: Pulse width / height in pixels on square paper: 5 mm / 10 mm.
PULSE_ASPECT = 0.5
MIN_PULSE_HEIGHT_PX = 8
#: Pixels are square (scanners, renders) when the pulse's two scales agree this closely.
SQUARE_TOLERANCE = 0.03


@dataclass(frozen=True)
class Pulse:
    box: Box
    width_px: float  # between the centres of the rising and falling strokes
    height_px: float  # between the centres of the base line and the top line

    @property
    def calibration(self) -> Calibration:
        return Calibration(self.width_px / 5.0, self.height_px / 10.0, "pulse")


def measure_pulse(mask: np.ndarray, box: Box) -> Pulse | None:
    """The pulse's width and height when the ink in ``box`` is a rectangular step, else None.

    A pulse is two vertical strokes of the box's height joined by a flat top line, standing on
    a base line; its width is about half its height (5 mm vs 10 mm).
    """
    if box.h < MIN_PULSE_HEIGHT_PX or box.w < 3:
        return None
    crop = mask[box.y : box.y_end, box.x : box.x_end] > 0
    present = crop.any(axis=0)
    run = crop.sum(axis=0)
    strokes = np.flatnonzero(run >= 0.7 * box.h)
    if strokes.size < 2:
        return None
    split = np.flatnonzero(np.diff(strokes) > 1)
    if split.size != 1:  # exactly two groups of tall columns
        return None
    left, right = strokes[: split[0] + 1].mean(), strokes[split[0] + 1 :].mean()
    rows = np.arange(crop.shape[0])[:, None]
    top = np.argmax(crop, axis=0)
    centre = (crop * rows).sum(axis=0) / np.maximum(run, 1)
    inner = np.arange(int(np.ceil(left)) + 1, int(np.floor(right)))
    inner = inner[np.asarray(present)[inner] & (run[inner] < 0.5 * box.h)]
    outer = np.flatnonzero(present & (run < 0.5 * box.h))
    outer = outer[(outer < left) | (outer > right)]
    if inner.size < 2 or outer.size < 2:
        return None
    if np.ptp(top[inner]) > 0.15 * box.h:  # the top must be flat
        return None
    width = right - left
    height = float(np.median(centre[outer]) - np.median(centre[inner]))
    if height < MIN_PULSE_HEIGHT_PX or not 0.6 <= width / height / PULSE_ASPECT <= 1.6:
        return None
    return Pulse(box, float(width), height)


def find_pulses(
    mask: np.ndarray, boxes: list[Box], max_width_px: float, image: np.ndarray | None = None
) -> list[Pulse]:
    """Every calibration pulse among the contours' boxes (narrower than ``max_width_px``).

    With ``image`` each pulse is re-measured on the ink's gray levels (sub-pixel stroke
    centres): on a grid-less image the pulse is the only ruler, and a 0.3 % error in its width
    already shifts the end of a 10 s trace by 30 ms.
    """
    pulses = []
    for box in boxes:
        if box.w <= max_width_px and box.h >= box.w * 0.5:
            pulse = measure_pulse(mask, box)
            if pulse is not None:
                pulses.append(pulse if image is None else refine_pulse(image, pulse))
    return pulses


def refine_pulse(image: np.ndarray, pulse: Pulse) -> Pulse:
    """The pulse's width and height from darkness-weighted centroids of its strokes and lines."""
    box, pad = pulse.box, 4  # the box is the mask's extent: blurred line edges lie outside
    y0 = max(box.y - pad, 0)
    dark = 255.0 - ink_channel(image[y0 : box.y_end + pad, box.x : box.x_end]).astype(np.float64)
    h = dark.shape[0]
    columns = dark[int(0.3 * h) : int(0.7 * h)].sum(axis=0)
    half = columns.size // 2
    left = _centroid(columns, 0, half)
    right = _centroid(columns, half, columns.size)
    if left is None or right is None or right - left < 5:
        return pulse
    lo, hi = round(left), round(right)
    rows_top = dark[:, lo + 2 : hi - 1].sum(axis=1)
    rows_base = np.concatenate([dark[:, : max(lo - 2, 1)], dark[:, hi + 3 :]], axis=1).sum(axis=1)
    top = _centroid(rows_top, 0, h // 2)
    base = _centroid(rows_base, h // 2, h)
    width = right - left
    height = (base - top) if top is not None and base is not None else pulse.height_px
    if not 0.8 < width / pulse.width_px < 1.25 or not 0.8 < height / pulse.height_px < 1.25:
        return pulse
    return Pulse(box, float(width), float(height))


def _centroid(profile: np.ndarray, lo: int, hi: int, reach: int = 4) -> float | None:
    """Sub-pixel centre of the strongest peak of ``profile[lo:hi]`` (background removed)."""
    if hi - lo < 3:
        return None
    k = lo + int(np.argmax(profile[lo:hi]))
    a, b = max(k - reach, 0), min(k + reach + 1, profile.size)
    weights = np.clip(profile[a:b] - np.median(profile[lo:hi]), 0, None)
    if weights.sum() <= 0:
        return None
    return float((np.arange(a, b) * weights).sum() / weights.sum())


def calibration_from_pulses(pulses: list[Pulse]) -> Calibration | None:
    """Median calibration over the pulses found (None when there are none)."""
    if not pulses:
        return None
    x = float(np.median([p.calibration.px_per_mm_x for p in pulses]))
    y = float(np.median([p.calibration.px_per_mm_y for p in pulses]))
    if abs(x / y - 1) < SQUARE_TOLERANCE:  # square pixels: pool the 5 mm and 10 mm rulers
        x = y = (x * 5.0 + y * 10.0) / 15.0
    return Calibration(x, y, "pulse")
