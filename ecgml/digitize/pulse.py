"""The 1 mV × 200 ms calibration pulse: find it, calibrate from it, keep it out of the trace."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgml.digitize.grid import Calibration
from ecgml.digitize.trace import Box

PULSE_MV = 1.0
PULSE_S = 0.2
#: Pulse width / height in pixels on square paper: 5 mm / 10 mm.
PULSE_ASPECT = 0.5
MIN_PULSE_HEIGHT_PX = 8


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
    inner = inner[present[inner] & (run[inner] < 0.5 * box.h)]
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


def find_pulses(mask: np.ndarray, boxes: list[Box], max_width_px: float) -> list[Pulse]:
    """Every calibration pulse among the contours' boxes (narrower than ``max_width_px``)."""
    pulses = []
    for box in boxes:
        if box.w <= max_width_px and box.h >= box.w * 0.5:
            pulse = measure_pulse(mask, box)
            if pulse is not None:
                pulses.append(pulse)
    return pulses


def calibration_from_pulses(pulses: list[Pulse]) -> Calibration | None:
    """Median calibration over the pulses found (None when there are none)."""
    if not pulses:
        return None
    return Calibration(
        float(np.median([p.calibration.px_per_mm_x for p in pulses])),
        float(np.median([p.calibration.px_per_mm_y for p in pulses])),
        "pulse",
    )
