"""From a calibrated image to the trace: background removal, contours, one value per column.

The study's recipe: threshold away the background, find contours (Suzuki border following,
``cv2.findContours``), keep the longest one as the waveform. Here the longest contour seeds
the trace and collinear pieces (a trace broken by a crease or noise) are chained to it; text,
labels and the calibration pulse stay out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.grid import GAIN_MM_MV, PAPER_SPEED_MM_S, Calibration
from ecgml.digitize.image import ink_channel

#: Ink is darker than this share of the local paper brightness.
INK_RATIO = 0.55
#: Pieces of trace further apart than this (mm) are not chained.
MAX_CHAIN_GAP_MM = 6.0
#: Narrower pieces are specks of noise or grid, not trace.
MIN_PIECE_MM = 1.5
#: At most this share of the trace's columns may be gaps (interpolated).
MAX_GAP_SHARE = 0.3


@dataclass(frozen=True)
class Box:
    """A contour's bounding box (pixels)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x_end(self) -> int:
        return self.x + self.w

    @property
    def y_end(self) -> int:
        return self.y + self.h


def remove_background(
    image: np.ndarray, px_per_mm: float | None = None, value: np.ndarray | None = None
) -> np.ndarray:
    """Binary mask (uint8 0/255) of the ink: pixels much darker than the local paper.

    Works on max(B, G, R), where coloured grid lines look like paper; the local paper level
    is the brightness around each pixel (a grey dilation wider than the trace), so uneven
    lighting and shadows are divided out (adaptive threshold). ``value``: max(B, G, R) when
    the caller has it already.
    """
    value = ink_channel(image) if value is None else value
    size = max(7, round(1.5 * px_per_mm) if px_per_mm else 15) | 1
    paper = cv2.dilate(value, cv2.getStructuringElement(cv2.MORPH_RECT, (size, size)))
    paper = cv2.blur(paper, (size, size))
    level = cv2.convertScaleAbs(paper, alpha=INK_RATIO)
    return cv2.compare(value, level, cv2.CMP_LT)


def find_contours(mask: np.ndarray) -> list[tuple[np.ndarray, Box]]:
    """External contours (Suzuki border following) with their bounding boxes, longest first."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    boxed = [(c, Box(*cv2.boundingRect(c))) for c in contours]
    return sorted(boxed, key=lambda cb: cb[1].w, reverse=True)


def select_trace(
    contours: list[tuple[np.ndarray, Box]],
    layout: str,
    px_per_mm: float,
    exclude: list[Box] | None = None,
) -> list[tuple[np.ndarray, Box]]:
    """The contours that make up the lead-II trace.

    Seed: the widest contour (``strip``) or the lowest contour at least half as wide as the
    widest (``page``: the rhythm strip is the bottom row). Then pieces in the same band that
    extend it sideways are chained on (text and labels add no new columns; ``exclude``
    removes e.g. the calibration pulse).
    """
    exclude = exclude or []
    candidates = [(c, b) for c, b in contours if b not in exclude]
    if not candidates:
        raise DigitizeError("no ECG trace found (the image holds no dark line)")
    widest = candidates[0][1].w
    if layout == "page":
        wide = [(c, b) for c, b in candidates if b.w >= 0.5 * widest]
        seed = max(wide, key=lambda cb: cb[1].y + cb[1].h / 2)
    else:
        seed = candidates[0]
    chosen = [seed]
    band_lo, band_hi = seed[1].y - 2 * px_per_mm, seed[1].y_end + 2 * px_per_mm
    covered = np.zeros(max(b.x_end for _, b in candidates) + 1, dtype=bool)
    covered[seed[1].x : seed[1].x_end] = True
    lo, hi = seed[1].x, seed[1].x_end
    max_gap = MAX_CHAIN_GAP_MM * px_per_mm
    pieces = sorted(candidates[1:], key=lambda cb: abs(cb[1].x + cb[1].w / 2 - (lo + hi) / 2))
    for contour, box in pieces:
        if _looks_like_pulse(box, seed[1], px_per_mm):
            continue
        centre = box.y + box.h / 2
        if not band_lo <= centre <= band_hi or box.w < MIN_PIECE_MM * px_per_mm:
            continue
        if box.x > hi + max_gap or box.x_end < lo - max_gap:
            continue
        if covered[box.x : box.x_end].mean() > 0.5:
            continue
        chosen.append((contour, box))
        covered[box.x : box.x_end] = True
        lo, hi = min(lo, box.x), max(hi, box.x_end)
    return chosen


def _looks_like_pulse(box: Box, seed: Box, px_per_mm: float) -> bool:
    """A calibration pulse the shape test missed: ~10 mm tall, narrow, left of the trace."""
    return (
        box.x_end <= seed.x + px_per_mm
        and 7.0 <= box.h / px_per_mm <= 13.0
        and box.w / px_per_mm <= 16.0
    )


def trace_mask(mask: np.ndarray, chosen: list[tuple[np.ndarray, Box]]) -> tuple[np.ndarray, int]:
    """The ink pixels inside the chosen contours (loops filled by the contour, then re-masked),
    cropped to the rows they span; returns ``(crop, first row)``."""
    y0 = min(b.y for _, b in chosen)
    y1 = max(b.y_end for _, b in chosen)
    region = np.zeros((y1 - y0, mask.shape[1]), dtype=np.uint8)
    cv2.drawContours(region, [c for c, _ in chosen], -1, 255, cv2.FILLED, offset=(0, -y0))
    return cv2.bitwise_and(mask[y0:y1], region), y0


def column_values(trace: np.ndarray, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The trace as a row value (float, sub-pixel) every ``step`` columns, and those columns.

    Flat stretches give the ink's centre in each column. Where the waveform runs steeply (a
    QRS crosses many rows within one column) one value per column loses the shape, so those
    stretches are read per *row* instead: each row's ink run within the stroke gives the
    column the curve crosses it at; the apex and nadir lose half the line's thickness (the ink
    run of its flattest columns) so peaks keep their height. All points are then interpolated
    onto the grid of ``step`` (:data:`COLUMN_STEP`: finer than a column, so an apex between two
    columns keeps its height). Columns without ink inside the trace are interpolated too (gaps).
    """
    has_ink = trace.any(axis=0)
    cols = np.flatnonzero(has_ink)
    if cols.size < 2:
        raise DigitizeError("no ECG trace found (the trace is empty after cleaning)")
    first, last = cols[0], cols[-1] + 1
    sub = trace[:, first:last] > 0
    present = sub.any(axis=0)
    if 1 - present.mean() > MAX_GAP_SHARE:
        raise DigitizeError(
            f"the trace is too fragmented ({100 * (1 - present.mean()):.0f}% of it missing)"
        )
    count = sub.sum(axis=0)
    top = np.argmax(sub, axis=0)
    bottom = sub.shape[0] - 1 - np.argmax(sub[::-1], axis=0)
    run = np.where(present, bottom - top + 1, 0)
    thickness = float(np.median(run[present]))
    line = float(np.percentile(run[present], LINE_PERCENTILE))
    rows = np.arange(sub.shape[0], dtype=np.float64)
    centre = (rows @ sub) / np.maximum(count, 1)
    steep = _dilate_1d(run > STEEP_RUN_FACTOR * thickness + 1)
    flat = present & ~steep
    xs, ys = [np.flatnonzero(flat).astype(np.float64)], [centre[flat]]
    for a, b in _runs(steep):
        x_pts, y_pts = _stroke_points(sub[:, a:b], line)
        xs.append(x_pts + a)
        ys.append(y_pts)
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    x_unique, inverse = np.unique(x_all, return_inverse=True)  # a vertical stroke: its mean
    y_unique = np.bincount(inverse, weights=y_all) / np.bincount(inverse)
    grid = np.arange(0.0, sub.shape[1] - 1 + 1e-9, step)
    return np.interp(grid, x_unique, y_unique), first + grid


STEEP_RUN_FACTOR = 1.5
#: Sub-column grid the trace is read on (columns): the stroke points carry sub-column x, and a
#: grid of whole columns would cut a sharp apex lying between two of them.
COLUMN_STEP = 0.25
#: The line's own thickness: this percentile of the columns' ink runs (the flattest ones).
LINE_PERCENTILE = 10


def _dilate_1d(flags: np.ndarray) -> np.ndarray:
    out = flags.copy()
    out[1:] |= flags[:-1]
    out[:-1] |= flags[1:]
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _stroke_points(block: np.ndarray, thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Curve points of a steep stretch from every horizontal ink run, per row.

    A run about one stroke wide is crossed by the curve at its centre. Near a sharp apex the
    up- and down-strokes merge into one wide run: the curve then crosses it half a stroke in
    from each end (two points). ``thickness``: the line's (the ink run of its flattest
    columns). One stroke's width: :func:`_stroke_width`.
    """
    rows_with_ink = np.flatnonzero(block.any(axis=1))
    if rows_with_ink.size == 0:
        return np.zeros(0), np.zeros(0)
    r0, r1 = rows_with_ink[0], rows_with_ink[-1] + 1
    part = block[r0:r1].astype(np.int8)
    edges = np.diff(np.pad(part, ((0, 0), (1, 1))), axis=1)
    start_r, start_c = np.nonzero(edges == 1)
    _, stop_c = np.nonzero(edges == -1)
    width = (stop_c - start_c).astype(np.float64)
    stroke = _stroke_width(start_r, width, thickness)
    merged = width > max(1.2 * stroke, stroke + 1.0)  # at least a pixel wider than one stroke
    x = np.where(merged, start_c + stroke / 2.0 - 0.5, (start_c + stop_c - 1) / 2.0)
    x_second = stop_c[merged] - stroke / 2.0 - 0.5
    y = (start_r + r0).astype(np.float64)
    x, y = np.concatenate([x, x_second]), np.concatenate([y, y[merged]])
    centres = (start_c + stop_c - 1) / 2.0
    half = (thickness - 1) / 2.0
    last = r1 - r0 - 1
    keep = np.ones(x.size, dtype=bool)
    extra_x, extra_y = [], []
    # An apex (nadir) is a lone run in the top (bottom) row: that row is the line's edge, not
    # the waveform's extreme, and the extreme owns its column (other points there would pull
    # the peak down). Several runs there are strokes leaving the stretch, not an extreme.
    for row, extreme_y, near in (
        (0, r0 + half, y - r0 < 2 * half),
        (last, r1 - 1 - half, y - r0 > last - 2 * half),
    ):
        in_row = centres[start_r == row]
        if in_row.size == 1:
            keep &= ~near & (np.abs(x - in_row[0]) > 0.5)
            extra_x.append(float(in_row[0]))
            extra_y.append(extreme_y)
    return np.concatenate([x[keep], extra_x]), np.concatenate([y[keep], extra_y])


def _stroke_width(rows: np.ndarray, width: np.ndarray, thickness: float) -> float:
    """One steep stroke's run width (px) from the runs of a steep stretch (their rows and
    widths): measured in the rows where the strokes run apart (two or more runs), else the
    smaller of the runs' median and the line's thickness. Merged or blurred runs widen the
    median, and the vertical runs behind ``thickness`` widen where no column is flat."""
    bound = min(float(np.median(width)), thickness)
    apart = np.bincount(rows)[rows] >= 2
    if apart.sum() >= 3:
        bound = min(bound, float(np.median(width[apart])))
    return max(bound, 1.0)


def isoelectric_row(y: np.ndarray, bin_px: float = 1.0) -> float:
    """The baseline: the row the trace spends most time on (TP/PR segments), sub-pixel."""
    lo = float(np.floor(y.min()))
    counts = np.bincount(np.floor((y - lo) / bin_px).astype(np.int64))
    smooth = np.convolve(counts, [1, 2, 3, 2, 1], mode="same")
    k = int(np.argmax(smooth))
    window = (y >= lo + (k - 2) * bin_px) & (y < lo + (k + 3) * bin_px)
    return float(np.median(y[window]))


def to_signal(
    y: np.ndarray,
    calibration: Calibration,
    fs: float,
    baseline_row: float,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """Rows at ``columns`` (default: one per column) → millivolts sampled uniformly at ``fs``
    (t=0 at the first column)."""
    mv = (baseline_row - y) / (calibration.px_per_mm_y * GAIN_MM_MV)
    x = np.arange(y.size, dtype=np.float64) if columns is None else columns - columns[0]
    t_cols = x / (calibration.px_per_mm_x * PAPER_SPEED_MM_S)
    t = np.arange(0.0, t_cols[-1] + 1e-9, 1.0 / fs)
    return np.interp(t, t_cols, mv).astype(np.float32)
