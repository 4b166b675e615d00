"""Every lead of a page: trace rows, the layout, each lead's window on the page's time axis.

Rows are found from where the wide traces run (a histogram of their per-column heights);
each row is read in its own band (between the midpoints to its neighbours), so a tall QRS of
the row above cannot join it. The layout follows from the row count and, where it is
ambiguous (six rows: ``6x2`` or ``3x4`` with three rhythm strips), from the printed lead
labels, matched as templates. Lead identity is the standard position, confirmed or corrected
by a printed label where one is found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ecgml import TWELVE_LEADS
from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.grid import GAIN_MM_MV, PAPER_SPEED_MM_S, Calibration
from ecgml.digitize.trace import (
    COLUMN_STEP,
    MIN_PIECE_MM,
    Box,
    column_values,
    find_contours,
    isoelectric_row,
    trace_mask,
)

PAGE_ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
LAYOUT_ROWS: dict[str, tuple[tuple[str, ...], ...]] = {
    "strip": (("II",),),
    "3x4": PAGE_ROWS,
    "6x2": (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6")),
    "12x1": tuple((name,) for name in TWELVE_LEADS),
}
#: The usual rhythm strips under a 3×4 page, in order.
RHYTHM_LEADS = ("II", "V1", "V5")
PAGE_LAYOUTS = ("3x4", "6x2", "12x1")
#: A trace row is at least this wide a share of the widest one.
MIN_ROW_SHARE = 0.4
#: Rows lie at least this far apart (mm).
MIN_ROW_PITCH_MM = 12.0
#: Every this many columns is enough to find where the rows run.
ROW_SCAN_STEP = 4
#: Samples trimmed at a lead change (the printed tick), seconds.
TICK_TRIM_S = 0.012
#: A lead whose window holds less of its trace than this share is left out (a rhythm strip
#: or a 12×1 row, alone in its row, is kept while it shows this much of the page).
MIN_COVERAGE = 0.85
MIN_STRIP_COVERAGE = 0.3
#: Label templates: the renderer's Hershey font at 0.11 × px/mm; match score to trust one.
LABEL_SCALE = 0.11
LABEL_MIN_SCORE = 0.6
OVERRULE_SCORE = 0.8
#: aVR/aVL/aVF label scores that tell 6x2 from 3x4 + 3 rhythm strips.
LAYOUT_MIN_SCORE = 0.4
LAYOUT_MARGIN = 0.1
#: A label this sure is erased before the traces are read.
ERASE_SCORE = 0.5
#: A page is this long when its traces are cut off by the image edge (standard 10 s).
STANDARD_PAGE_S = 10.0


@dataclass
class Row:
    """One trace row: rows ``y`` at ``columns`` (every :data:`COLUMN_STEP`) and the band it was
    read in."""

    y: np.ndarray
    columns: np.ndarray
    band: tuple[int, int]
    touches_edge: bool


@dataclass
class PageLeads:
    """What :func:`read_leads` returns: the layout, each lead in mV on the shared time axis
    (t = 0 at the traces' left edge, NaN outside the lead's window), the leads left out with
    the reason, and the lead-II signal (rhythm strip where there is one)."""

    layout: str
    leads: dict[str, np.ndarray]
    left_out: dict[str, str] = field(default_factory=dict)
    lead_ii: np.ndarray | None = None


def row_peaks(
    mask: np.ndarray, calibration: Calibration, contours: list | None = None
) -> tuple[np.ndarray, list]:
    """The baseline row of each trace row (where the wide traces run most) and the contours
    (``contours``: the mask's, longest first, when the caller has them)."""
    ppm = calibration.px_per_mm_y
    contours = find_contours(mask) if contours is None else contours
    if not contours:
        raise DigitizeError("no ECG trace found (blank image)")
    heights, columns = _run_centres(mask)
    smooth = gaussian_filter1d(heights, sigma=2.0 * ppm)
    pitch = max(1, MIN_ROW_PITCH_MM * ppm)
    # A flat trace (aVL) piles up far higher than one with wander: keep low, distinct peaks;
    # a band that holds no wide trace (header text, labels) is dropped by find_rows.
    top = smooth.max()
    peaks, _ = find_peaks(smooth, distance=pitch, height=0.04 * top, prominence=0.04 * top)
    if peaks.size == 0:
        raise DigitizeError("no ECG trace found (no row of trace)")
    return peaks[_wide_peaks(peaks, columns, pitch)], contours


def _run_centres(mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Histogram over image rows of the centres of the vertical ink runs (every few columns;
    where traces touch, each column still holds one run per trace), and the centres' rows and
    columns."""
    sub = (mask[:, ::ROW_SCAN_STEP] > 0).astype(np.int8)
    edges = np.diff(np.pad(sub, ((1, 1), (0, 0))), axis=0).T  # columns first: runs in order
    cols, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    centres = np.round((starts + stops - 1) / 2.0).astype(np.int64)
    histogram = np.bincount(centres, minlength=mask.shape[0])[: mask.shape[0]]
    return histogram.astype(np.float64), [centres, cols]


def _wide_peaks(peaks: np.ndarray, found: list[np.ndarray], pitch: float) -> np.ndarray:
    """Which peaks are trace rows: ink across at least MIN_ROW_SHARE of the widest row's
    columns (header text and labels are narrow)."""
    centres, cols = found
    spans = []
    for peak in peaks:
        near = np.abs(centres - peak) <= pitch / 2
        spans.append(np.unique(cols[near]).size)
    spans_arr = np.array(spans)
    return spans_arr >= MIN_ROW_SHARE * spans_arr.max()


def find_rows(
    mask: np.ndarray, calibration: Calibration, found: tuple[np.ndarray, list] | None = None
) -> list[Row]:
    """The trace rows of a page, top to bottom (see the module docstring)."""
    peaks, contours = found or row_peaks(mask, calibration)
    mask = erase_labels(mask, peaks, contours, calibration)
    edges = [0, *((peaks[:-1] + peaks[1:]) // 2).tolist(), mask.shape[0]]
    owned = _assign(contours, peaks, edges)
    rows = []
    for k in range(peaks.size):
        band = (int(edges[k]), int(edges[k + 1]))
        row_ink, y0 = _row_mask(mask, *owned[k], band)
        row = _read_row(row_ink, y0, band, calibration)
        if row is not None:
            rows.append(row)
    if not rows:
        raise DigitizeError("no ECG trace found (no row of trace)")
    full = max(r.columns.size for r in rows)
    return [r for r in rows if r.columns.size >= MIN_ROW_SHARE * full]


def erase_labels(
    mask: np.ndarray, peaks: np.ndarray, contours: list, calibration: Calibration
) -> np.ndarray:
    """The mask without the printed lead labels at the lead starts: a label the trace runs
    through would bend it. Only the names a standard layout prints at each row and start are
    tried, and only names with a letter (bars like "II" match QRS strokes too)."""
    widest = contours[0][1].w
    x_left = min(b.x for _, b in contours if b.w >= 0.2 * widest)
    out = mask.copy()
    for k, peak in enumerate(peaks):
        row = Row(np.array([float(peak)]), np.array([x_left]), (0, mask.shape[0]), False)
        for start, names in _expected_labels(k, peaks.size).items():
            hit = _best_label(mask, row, x_left + start * calibration.px_per_s, names, calibration)
            if hit is not None:
                template, (hx, hy) = hit
                dx, dy = max(0, -hx), max(0, -hy)  # a label at the image's edge
                template = template[dy:, dx:]
                hx, hy = hx + dx, hy + dy
                h, w = template.shape
                region = out[hy : hy + h, hx : hx + w]
                region[template[: region.shape[0], : region.shape[1]] > 0] = 0
    return out


def _expected_labels(row: int, n_rows: int) -> dict[float, set[str]]:
    """Label names a standard layout prints on ``row`` of ``n_rows``, by lead start (s)."""
    found: dict[float, set[str]] = {}
    if n_rows > 6:
        if row < len(TWELVE_LEADS):
            found[0.0] = {TWELVE_LEADS[row]}
    else:
        if row < 3:
            for k, name in enumerate(PAGE_ROWS[row]):
                found.setdefault(2.5 * k, set()).add(name)
        elif row - 3 < len(RHYTHM_LEADS):
            found.setdefault(0.0, set()).add(RHYTHM_LEADS[row - 3])
        if row < 6:
            for k, name in enumerate(LAYOUT_ROWS["6x2"][row]):
                found.setdefault(5.0 * k, set()).add(name)
    return {
        t: {n for n in names if any(c.isalpha() and c not in "I" for c in n)}
        for t, names in found.items()
    }


def _best_label(
    mask: np.ndarray, row: Row, x_start: float, names: set[str], calibration: Calibration
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The best-matching label among ``names`` near a lead start: (dilated template, top-left)."""
    best: tuple[float, str, tuple[int, int]] | None = None
    for name in sorted(names):
        score, at = _label_match(mask, row, x_start, name, calibration)
        if score >= ERASE_SCORE and (best is None or score > best[0]):
            best = (score, name, at)
    if best is None:
        return None
    template = _label_template(best[1], round(calibration.px_per_mm_y, 1))
    grow = max(1, round(0.15 * calibration.px_per_mm_y))  # anti-aliased edges, match offset
    padded = cv2.copyMakeBorder(template, grow, grow, grow, grow, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    return cv2.dilate(padded, kernel), (best[2][0] - grow, best[2][1] - grow)


def _assign(contours: list, peaks: np.ndarray, edges: list[int]) -> list[tuple[list, list]]:
    """Per row: the contours wholly its own and those it shares with another row (clipped)."""
    owned: list[tuple[list, list]] = [([], []) for _ in range(peaks.size)]
    for contour, box in contours:
        reached = np.flatnonzero((peaks >= box.y) & (peaks < box.y_end))
        if reached.size >= 2:
            for shared in reached:
                owned[shared][1].append(box)
            continue
        if reached.size == 1:
            k = int(reached[0])
        else:  # a label, a speck: the band its centre lies in
            k = int(np.searchsorted(edges, box.y + box.h / 2, side="right")) - 1
            k = min(max(k, 0), peaks.size - 1)
        owned[k][0].append((contour, box))
    return owned


def _row_mask(
    mask: np.ndarray, own: list, shared: list, band: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """The ink of one row and its first image row: whole contours that reach only its
    baseline (a tall R wave may cross the midpoint to the next row), and the band's part of
    contours that join rows."""
    y0 = min([band[0], *(b.y for _, b in own)])
    y1 = max([band[1], *(b.y_end for _, b in own)])
    keep = np.zeros((y1 - y0, mask.shape[1]), np.uint8)
    if own:
        cv2.drawContours(keep, [c for c, _ in own], -1, 255, cv2.FILLED, offset=(0, -y0))
    for box in shared:
        keep[band[0] - y0 : band[1] - y0, box.x : box.x_end] = 255
    return cv2.bitwise_and(mask[y0:y1], keep), y0


def _read_row(
    mask: np.ndarray, y0: int, band: tuple[int, int], calibration: Calibration
) -> Row | None:
    """The trace of one row (``mask``, starting at image row ``y0``, holds only its ink), or
    None when it holds no trace."""
    contours = find_contours(mask)
    if not contours or contours[0][1].w < 1.0 * calibration.px_per_s:
        return None
    chosen = _row_pieces(contours, calibration.px_per_mm_x)
    crop, row0 = trace_mask(mask, chosen)
    try:
        y, columns = column_values(crop, COLUMN_STEP)
    except DigitizeError:
        return None
    edge = columns[0] <= 1 or columns[-1] >= mask.shape[1] - 2
    return Row(y + row0 + y0, columns, band, bool(edge))


def _row_pieces(contours: list, px_per_mm: float) -> list:
    """The row's trace: widest pieces first, each kept while it adds columns of its own. The
    row holds only its own ink, so two leads that do not touch (a flat aVL, then V5) both
    count; a label over the trace adds no columns and stays out."""
    covered = np.zeros(max(b.x_end for _, b in contours) + 1, dtype=bool)
    chosen = []
    for contour, box in contours:  # longest first
        if box.w < MIN_PIECE_MM * px_per_mm:
            break
        if covered[box.x : box.x_end].mean() > 0.5:
            continue
        chosen.append((contour, box))
        covered[box.x : box.x_end] = True
    return chosen


def decide_layout(rows: list[Row], mask: np.ndarray, calibration: Calibration) -> str:
    """``strip``, ``3x4``, ``6x2`` or ``12x1`` from the rows (and labels where needed)."""
    n = len(rows)
    if n == 1:
        return "strip"
    if n == 12:
        return "12x1"
    if n in (4, 5):
        return "3x4"
    if n == 6:
        return _six_rows(rows, mask, calibration)
    raise DigitizeError(
        f"ambiguous layout: {n} trace rows match none of strip (1), 3x4 (4-6), 6x2 (6), "
        "12x1 (12): pass layout="
    )


def trace_left(rows: list[Row]) -> int:
    """The traces' left edge (t = 0): the rows' median start, so that one row that picked up
    a crease or a stray line does not move the page's time axis."""
    return int(np.median([int(r.columns[0]) for r in rows]))


def _six_rows(rows: list[Row], mask: np.ndarray, calibration: Calibration) -> str:
    """6x2 or 3x4 with three rhythm strips: where are aVR, aVL, aVF printed? In the second
    column of rows 1-3 (3x4) or at the start of rows 4-6 (6x2)."""
    x_left = trace_left(rows)
    second = x_left + 2.5 * calibration.px_per_s
    names = ("aVR", "aVL", "aVF")
    as_3x4 = max(_label_score(mask, rows[k], second, n, calibration) for k, n in enumerate(names))
    as_6x2 = max(
        _label_score(mask, rows[3 + k], x_left, n, calibration) for k, n in enumerate(names)
    )
    if max(as_3x4, as_6x2) >= LAYOUT_MIN_SCORE and abs(as_3x4 - as_6x2) >= LAYOUT_MARGIN:
        return "3x4" if as_3x4 > as_6x2 else "6x2"
    raise DigitizeError(
        "ambiguous layout: 6 trace rows but no lead labels to tell 6x2 from 3x4 with 3 "
        "rhythm strips: pass layout=6x2 or layout=3x4"
    )


def read_leads(
    rows: list[Row], layout: str, mask: np.ndarray, calibration: Calibration, fs: float
) -> PageLeads:
    """Each lead of ``layout`` from the rows, on the page's shared time axis at ``fs``."""
    lead_rows = LAYOUT_ROWS[layout]
    n_rhythm = len(rows) - len(lead_rows)
    if n_rhythm < 0 or (layout != "3x4" and n_rhythm) or n_rhythm > len(RHYTHM_LEADS):
        raise DigitizeError(
            f"layout {layout} needs {len(lead_rows)} trace rows"
            f"{' (+1-3 rhythm strips)' if layout == '3x4' else ''}, found {len(rows)}"
        )
    x_left = trace_left(rows)
    x_right = int(np.median([int(r.columns[-1]) + 1 for r in rows]))
    duration = (x_right - x_left) / calibration.px_per_s
    if any(r.touches_edge for r in rows) and duration < STANDARD_PAGE_S:
        duration = STANDARD_PAGE_S
    t = np.arange(round(duration * fs) + 1) / fs
    out = PageLeads(layout, {})
    for k, row in enumerate(rows):
        names = lead_rows[k] if k < len(lead_rows) else (RHYTHM_LEADS[k - len(lead_rows)],)
        width = duration / len(names)
        for c, default in enumerate(names):
            start = x_left + c * width * calibration.px_per_s
            name = _confirm_label(mask, row, start, default, calibration)
            window = (c * width, (c + 1) * width)
            need = MIN_COVERAGE if len(names) > 1 else MIN_STRIP_COVERAGE
            reason = _coverage_problem(row, window, x_left, calibration, mask.shape[1], need)
            if reason:
                out.left_out[name] = reason
                continue
            values = _lead_values(row, window, x_left, calibration, t, len(names) > 1)
            if k >= len(lead_rows) or name not in out.leads:  # a rhythm strip wins
                out.leads[name] = values
            if k >= len(lead_rows) and name == "II" and out.lead_ii is None:
                out.lead_ii = values[np.isfinite(values)]
    if out.lead_ii is None and "II" in out.leads:
        out.lead_ii = out.leads["II"][np.isfinite(out.leads["II"])]
    for name in list(out.left_out):
        if name in out.leads:  # read elsewhere on the page (a rhythm strip)
            del out.left_out[name]
    return out


def _coverage_problem(
    row: Row,
    window: tuple[float, float],
    x_left: int,
    calibration: Calibration,
    width_px: int,
    need: float,
) -> str:
    """Why a lead's window cannot be read ('' when it can)."""
    lo = x_left + window[0] * calibration.px_per_s
    hi = x_left + window[1] * calibration.px_per_s
    inside = (row.columns >= lo) & (row.columns < hi)
    coverage = inside.sum() * COLUMN_STEP / max(hi - lo, 1.0)
    if coverage >= need:
        return ""
    if hi > width_px - 2 or row.touches_edge:
        span = window[1] - window[0]
        return f"cut off by the image edge ({100 * coverage:.0f}% of its {span:.1f} s visible)"
    return f"trace missing ({100 * coverage:.0f}% of its window found)"


def _lead_values(
    row: Row,
    window: tuple[float, float],
    x_left: int,
    calibration: Calibration,
    t: np.ndarray,
    trim: bool,
) -> np.ndarray:
    """mV on the time axis ``t`` inside ``window`` (NaN elsewhere), baseline of its own."""
    t_cols = (row.columns - x_left) / calibration.px_per_s
    inside = (t_cols >= window[0]) & (t_cols < window[1])
    baseline = isoelectric_row(row.y[inside])
    mv = (baseline - row.y) / (calibration.px_per_mm_y * GAIN_MM_MV)
    margin = TICK_TRIM_S if trim else 0.0
    lo = max(window[0] + (margin if window[0] > 0 else 0.0), t_cols[0])
    hi = min(window[1] - margin, t_cols[-1])
    values = np.full(t.size, np.nan, np.float32)
    keep = (t >= lo) & (t <= hi)
    values[keep] = np.interp(t[keep], t_cols, mv)
    return values


@lru_cache(maxsize=64)
def _label_template(name: str, px_per_mm: float) -> np.ndarray:
    """The lead name as the renderer prints it (binary ink, tight crop)."""
    scale = LABEL_SCALE * px_per_mm
    thickness = max(1, round(0.2 * px_per_mm))
    (w, h), base = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    canvas = np.zeros((h + base + 4, w + 4), np.uint8)
    cv2.putText(
        canvas, name, (2, h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA
    )
    canvas = np.where(canvas > 100, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _label_score(
    mask: np.ndarray, row: Row, x_start: float, name: str, calibration: Calibration
) -> float:
    """How well ``name`` matches the printed label near a lead's start (0–1)."""
    return _label_match(mask, row, x_start, name, calibration)[0]


def _label_match(
    mask: np.ndarray, row: Row, x_start: float, name: str, calibration: Calibration
) -> tuple[float, tuple[int, int]]:
    """Best template score for ``name`` above a lead's start and where (image x, y)."""
    ppm = calibration.px_per_mm_y
    template = _label_template(name, round(ppm, 1))
    zero = float(np.median(row.y))
    y0 = max(row.band[0], int(zero - 16 * ppm))
    y1 = max(y0, int(zero - 2 * ppm))
    x0 = max(0, int(x_start - 1 * ppm))
    x1 = min(mask.shape[1], int(x_start + 4 * ppm) + template.shape[1])
    region = mask[y0:y1, x0:x1]
    if region.shape[0] < template.shape[0] or region.shape[1] < template.shape[1]:
        return 0.0, (0, 0)
    scores = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
    _, score, _, (bx, by) = cv2.minMaxLoc(scores)
    return float(score), (x0 + bx, y0 + by)


def _confirm_label(
    mask: np.ndarray, row: Row, x_start: float, default: str, calibration: Calibration
) -> str:
    """The lead's name: its standard position's, unless a printed label clearly says another."""
    if _label_score(mask, row, x_start, default, calibration) >= LABEL_MIN_SCORE:
        return default
    # Only multi-letter names can overrule the position: "I" alone matches any QRS stroke.
    others = [n for n in TWELVE_LEADS if len(n) >= 2 and n != default]
    scores = {n: _label_score(mask, row, x_start, n, calibration) for n in others}
    best = max(scores, key=lambda n: scores[n])
    return best if scores[best] >= OVERRULE_SCORE else default


def page_time_axis(leads: dict[str, np.ndarray], fs: float) -> np.ndarray:
    """``time_s`` for the leads CSV."""
    n = max((v.size for v in leads.values()), default=0)
    return np.arange(n) / fs


def blank_boxes(mask: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """The mask with the given boxes (calibration pulses) erased."""
    out = mask.copy()
    for box in boxes:
        out[box.y : box.y_end, box.x : box.x_end] = 0
    return out


#: Longest gap in a lead that :func:`page_leads` fills (longer: the lead is not used).
MAX_LEAD_GAP_S = 0.1


def page_leads(
    signal: np.ndarray, leads: dict[str, np.ndarray], fs: float
) -> dict[str, np.ndarray]:
    """The leads of a digitized page that span the whole lead-II ``signal`` (a 12×1 page: all
    twelve; a 6×2 page: the six beside lead II; a 3×4 page: none but lead II), on its samples;
    gaps up to :data:`MAX_LEAD_GAP_S` (a trace the digitizer lost at the page's edge) are
    filled linearly, a lead with a longer one is left out."""
    ii = leads.get("II")
    if ii is None:
        return {}
    span = np.isfinite(ii)
    if int(span.sum()) != len(signal):
        return {}
    found = {}
    for name, values in leads.items():
        if len(values) != len(ii):
            continue
        filled = fill_short_gaps(
            np.asarray(values[span], dtype=np.float64), round(MAX_LEAD_GAP_S * fs)
        )
        if filled is not None:
            found[name] = filled.astype(np.float32)
    return found


def fill_short_gaps(values: np.ndarray, max_gap: int) -> np.ndarray | None:
    """``values`` with NaN runs of at most ``max_gap`` samples interpolated (held at the ends),
    or None when a run is longer or nothing is finite."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    if missing.all():
        return None
    edges = np.diff(np.r_[0, missing.astype(np.int8), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    if runs.max() > max_gap:
        return None
    index = np.arange(len(values))
    out = values.copy()
    out[missing] = np.interp(index[missing], index[~missing], values[~missing])
    return out


__all__ = [
    "PAGE_LAYOUTS",
    "PAPER_SPEED_MM_S",
    "PageLeads",
    "Row",
    "blank_boxes",
    "decide_layout",
    "fill_short_gaps",
    "find_rows",
    "page_leads",
    "page_time_axis",
    "read_leads",
]
