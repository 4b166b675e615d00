"""Paper-ECG rendering with OpenCV: grid, traces, labels, calibration pulse and distortions.

Standard paper: 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major grid lines. The ground truth dict
describes where the lead-II trace (``strip``) or the lead-II rhythm strip (``page``) sits on the
paper *before* geometric distortions, plus the homography that maps those paper pixels into the
returned image, so a digitizer benchmark can check itself at the pixel level. Distortions only
touch pixels, never the signal: the truth's calibration fields are identical with and without
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from ecgml import TWELVE_LEADS
from ecgml.errors import EcgmlError

PAPER_SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
LAYOUTS = ("strip", "page", "3x4", "6x2", "12x1")
PAGE_ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
#: Lead rows per page layout (each row's leads share its width); rhythm strips come below.
LAYOUT_ROWS: dict[str, tuple[tuple[str, ...], ...]] = {
    "page": PAGE_ROWS,
    "3x4": PAGE_ROWS,
    "6x2": (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6")),
    "12x1": tuple((name,) for name in TWELVE_LEADS),
}
#: Row pitch (mm) per page layout: fewer rows, more room for tall QRS complexes.
ROW_HEIGHT_MM = {"page": 40.0, "3x4": 40.0, "6x2": 32.0, "12x1": 25.0}
#: The usual rhythm strips under a 3×4 page, by count.
RHYTHM_LEADS = (("II",), ("II", "V1"), ("II", "V1", "V5"))
DISTORTION_KEYS = (
    "rotation_deg",
    "perspective",
    "blur_sigma",
    "noise_std",
    "jpeg_quality",
    "lighting",
    "creases",
    "stains",
    "low_res_scale",
    "photo",
)

#: (minor, major) BGR colours per grid style.
GRID_COLORS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]] | None] = {
    "red": ((190, 190, 255), (80, 80, 235)),
    "pink": ((226, 212, 255), (175, 140, 245)),
    "orange": ((185, 220, 255), (60, 145, 250)),
    "grey": ((218, 218, 218), (150, 150, 150)),
    "none": None,
}
TRACE_COLOR = (25, 25, 25)
TEXT_COLOR = (30, 30, 30)
PAPER_COLOR = (250, 252, 253)

# Paper geometry in mm.
LEFT_MM, RIGHT_MM, TOP_MM, BOTTOM_MM = 20.0, 8.0, 18.0, 10.0
STRIP_HEIGHT_MM = 50.0
PAGE_ROW_HEIGHT_MM = 40.0
CAL_WIDTH_MM = 5.0  # 200 ms at 25 mm/s
CAL_LEFT_MM = 8.0


def render_ecg(
    leads: Mapping[str, np.ndarray] | np.ndarray,
    fs: float,
    layout: str = "strip",
    dpi: float = 200,
    grid_color: str = "red",
    distortions: Mapping[str, Any] | None = None,
    seed: int = 0,
    calibration_pulse: bool = True,
    title: str = "",
    rhythm: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render an ECG (mV) as a paper image; return ``(bgr_uint8_image, ground_truth)``.

    ``leads`` is a lead-II array or a mapping of lead name → array (``II`` required; page
    layouts derive missing leads from lead II). Layouts: ``strip`` (lead II), ``3x4`` with
    ``rhythm`` (1–3) rhythm strips (II, V1, V5) below, ``page`` (``3x4`` with the lead-II
    rhythm strip), ``6x2`` and ``12x1``. ``distortions`` keys are in :data:`DISTORTION_KEYS`;
    a missing or zero value means off.
    """
    leads = _as_lead_mapping(leads)
    _check_render_args(leads, fs, layout, dpi, grid_color)
    if layout == "3x4" and rhythm not in (1, 2, 3):
        raise EcgmlError(f"render_ecg: rhythm must be 1, 2 or 3 strips, got {rhythm!r}")
    px_per_mm = float(dpi) / 25.4
    duration_s = len(leads["II"]) / float(fs)
    rng = np.random.default_rng(seed)
    if layout != "strip":
        leads = complete_twelve_leads(leads, fs)
        rhythm_leads = RHYTHM_LEADS[rhythm - 1] if layout in ("page", "3x4") else ()
        canvas, truth = _draw_page(
            leads, fs, duration_s, px_per_mm, grid_color, title, layout, rhythm_leads
        )
    else:
        canvas, truth = _draw_strip(leads["II"], fs, duration_s, px_per_mm, grid_color, title)
    if calibration_pulse or grid_color == "none":
        for row_px in truth["calibration_rows"]:
            _draw_calibration(canvas, row_px, px_per_mm)
    truth["calibration_pulse"] = bool(calibration_pulse or grid_color == "none")
    image, applied, homography = apply_distortions(canvas, distortions or {}, rng, px_per_mm)
    truth.update(
        dpi=float(dpi),
        layout=layout,
        grid_color=grid_color,
        fs=float(fs),
        duration_s=duration_s,
        paper_speed_mm_s=PAPER_SPEED_MM_S,
        gain_mm_mv=GAIN_MM_MV,
        distortions=applied,
        homography=homography.tolist(),
        image_height=int(image.shape[0]),
        image_width=int(image.shape[1]),
    )
    return image, truth


# --------------------------------------------------------------------------- validation


def _as_lead_mapping(leads: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(leads, Mapping):
        return {str(k): np.asarray(v, dtype=np.float64).ravel() for k, v in leads.items()}
    return {"II": np.asarray(leads, dtype=np.float64).ravel()}


def _check_render_args(
    leads: Mapping[str, np.ndarray], fs: float, layout: str, dpi: float, grid_color: str
) -> None:
    if "II" not in leads:
        raise EcgmlError(f"render_ecg needs lead 'II', got leads {sorted(leads)}")
    if len(leads["II"]) < 2 or not np.all(np.isfinite(leads["II"])):
        raise EcgmlError("render_ecg: lead II must hold at least 2 finite samples (mV)")
    if not fs or fs <= 0:
        raise EcgmlError(f"render_ecg: fs must be a positive number of Hz, got {fs!r}")
    if layout not in LAYOUTS:
        raise EcgmlError(f"render_ecg: unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if not dpi or not 30 <= dpi <= 1200:
        raise EcgmlError(f"render_ecg: dpi must lie in 30–1200 (typical 100–300), got {dpi!r}")
    if grid_color not in GRID_COLORS:
        raise EcgmlError(
            f"render_ecg: unknown grid_color {grid_color!r}: use one of {', '.join(GRID_COLORS)}"
        )


# --------------------------------------------------------------------------- leads


def complete_twelve_leads(leads: Mapping[str, np.ndarray], fs: float) -> dict[str, np.ndarray]:
    """Return all 12 leads, deriving any missing one from lead II.

    The derivation is a plausible stand-in, not physiology: lead I as a scaled lead II, the
    other limb leads from Einthoven/Goldberger identities, and precordial leads as mixtures of
    lead II and its derivative (which gives biphasic QRS complexes and an R-wave progression).
    """
    ii = np.asarray(leads["II"], dtype=np.float64)
    derivative = np.gradient(ii) * fs * 0.012  # ~12 ms time constant, in mV
    lead_i = np.asarray(leads["I"], dtype=np.float64) if "I" in leads else 0.55 * ii
    derived = {
        "I": lead_i,
        "II": ii,
        "III": ii - lead_i,
        "aVR": -(lead_i + ii) / 2.0,
        "aVL": lead_i - ii / 2.0,
        "aVF": ii - lead_i / 2.0,
    }
    precordial = {
        "V1": (-0.55, -0.45),
        "V2": (-0.15, -0.60),
        "V3": (0.45, -0.35),
        "V4": (1.10, 0.10),
        "V5": (1.05, 0.15),
        "V6": (0.85, 0.10),
    }
    for name, (a, b) in precordial.items():
        derived[name] = a * ii + b * derivative
    return {name: np.asarray(leads.get(name, derived[name]), float) for name in TWELVE_LEADS}


# --------------------------------------------------------------------------- drawing


def _blank_paper(width_mm: float, height_mm: float, px_per_mm: float) -> np.ndarray:
    height = round(height_mm * px_per_mm)
    width = round(width_mm * px_per_mm)
    return np.full((height, width, 3), PAPER_COLOR, dtype=np.uint8)


def _draw_grid(
    canvas: np.ndarray, px_per_mm: float, grid_color: str, box_mm: tuple[float, float, float, float]
) -> None:
    """1 mm minor and 5 mm major lines inside ``box_mm`` = (left, top, right, bottom)."""
    colors = GRID_COLORS[grid_color]
    if colors is None:
        return
    minor, major = colors
    left, top, right, bottom = box_mm
    thin = 1
    thick = max(1, round(0.18 * px_per_mm))
    n_x = round(right - left)
    n_y = round(bottom - top)
    for is_major in (False, True):
        color, width = (major, thick) if is_major else (minor, thin)
        for k in range(n_x + 1):
            if (k % 5 == 0) != is_major:
                continue
            x = round((left + k) * px_per_mm)
            cv2.line(canvas, (x, _px(top, px_per_mm)), (x, _px(bottom, px_per_mm)), color, width)
        for k in range(n_y + 1):
            if (k % 5 == 0) != is_major:
                continue
            y = round((top + k) * px_per_mm)
            cv2.line(canvas, (_px(left, px_per_mm), y), (_px(right, px_per_mm), y), color, width)


def _px(mm: float, px_per_mm: float) -> int:
    return round(mm * px_per_mm)


def _draw_trace(
    canvas: np.ndarray,
    samples: np.ndarray,
    fs: float,
    x0_px: float,
    zero_row_px: float,
    px_per_mm: float,
    t_offset_s: float = 0.0,
) -> None:
    """Anti-aliased polyline of ``samples`` (mV) starting at column ``x0_px``."""
    t = np.arange(len(samples)) / fs - t_offset_s
    x = x0_px + (t + t_offset_s) * PAPER_SPEED_MM_S * px_per_mm
    y = zero_row_px - samples * GAIN_MM_MV * px_per_mm
    shift = 4
    points = np.round(np.stack([x, y], axis=1) * (1 << shift)).astype(np.int32)
    thickness = max(1, round(0.25 * px_per_mm))
    cv2.polylines(canvas, [points], False, TRACE_COLOR, thickness, cv2.LINE_AA, shift)


def _draw_text(canvas: np.ndarray, text: str, x_px: float, y_px: float, px_per_mm: float) -> None:
    scale = 0.11 * px_per_mm
    thickness = max(1, round(0.2 * px_per_mm))
    org = (round(x_px), round(y_px))
    cv2.putText(
        canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, thickness, cv2.LINE_AA
    )


def _draw_calibration(canvas: np.ndarray, zero_row_px: float, px_per_mm: float) -> None:
    """The 1 mV × 200 ms pulse: a 10 mm high, 5 mm wide step in the left margin."""
    x0 = (CAL_LEFT_MM - 3.0) * px_per_mm
    rise = x0 + 3.0 * px_per_mm
    fall = rise + CAL_WIDTH_MM * px_per_mm
    xs = np.array([x0, rise, rise, fall, fall, fall + 3.0 * px_per_mm])
    high = zero_row_px - GAIN_MM_MV * px_per_mm
    ys = np.array([zero_row_px, zero_row_px, high, high, zero_row_px, zero_row_px])
    shift = 4
    points = np.round(np.stack([xs, ys], axis=1) * (1 << shift)).astype(np.int32)
    thickness = max(1, round(0.25 * px_per_mm))
    cv2.polylines(canvas, [points], False, TRACE_COLOR, thickness, cv2.LINE_AA, shift)


def _draw_header(canvas: np.ndarray, title: str, px_per_mm: float) -> None:
    header = "25 mm/s  10 mm/mV  0.05-150 Hz"
    _draw_text(canvas, header, LEFT_MM * px_per_mm, 8.0 * px_per_mm, px_per_mm)
    if title:
        _draw_text(canvas, title, LEFT_MM * px_per_mm, 14.0 * px_per_mm, px_per_mm)


def _draw_strip(
    ii: np.ndarray, fs: float, duration_s: float, px_per_mm: float, grid_color: str, title: str
) -> tuple[np.ndarray, dict[str, Any]]:
    width_mm = LEFT_MM + duration_s * PAPER_SPEED_MM_S + RIGHT_MM
    height_mm = TOP_MM + STRIP_HEIGHT_MM + BOTTOM_MM
    canvas = _blank_paper(width_mm, height_mm, px_per_mm)
    _draw_grid(canvas, px_per_mm, grid_color, (0.0, TOP_MM - 5, width_mm, height_mm))
    zero_mm = TOP_MM + STRIP_HEIGHT_MM * 0.6
    x0, zero = LEFT_MM * px_per_mm, zero_mm * px_per_mm
    _draw_trace(canvas, ii, fs, x0, zero, px_per_mm)
    _draw_text(canvas, "II", (LEFT_MM + 1) * px_per_mm, (TOP_MM + 3) * px_per_mm, px_per_mm)
    _draw_header(canvas, title, px_per_mm)
    panel = _panel("II", x0, zero, 0.0, duration_s)
    truth = _geometry_truth(px_per_mm, x0, zero, [panel])
    truth["calibration_rows"] = [zero]
    return canvas, truth


def _draw_page(
    leads: Mapping[str, np.ndarray],
    fs: float,
    duration_s: float,
    px_per_mm: float,
    grid_color: str,
    title: str,
    layout: str = "page",
    rhythm_leads: tuple[str, ...] = ("II",),
) -> tuple[np.ndarray, dict[str, Any]]:
    lead_rows = LAYOUT_ROWS[layout]
    row_mm = ROW_HEIGHT_MM[layout]
    n_rows = len(lead_rows) + len(rhythm_leads)
    width_mm = LEFT_MM + duration_s * PAPER_SPEED_MM_S + RIGHT_MM
    height_mm = TOP_MM + max(4, n_rows) * row_mm + BOTTOM_MM
    canvas = _blank_paper(width_mm, height_mm, px_per_mm)
    _draw_grid(canvas, px_per_mm, grid_color, (0.0, TOP_MM - 5, width_mm, height_mm))
    x0 = LEFT_MM * px_per_mm
    label_up = min(12.0, 0.3 * row_mm) * px_per_mm
    panels, rows = [], []
    for r, names in enumerate(lead_rows):
        zero = (TOP_MM + row_mm * (r + 0.6)) * px_per_mm
        rows.append(zero)
        segment_s = duration_s / len(names)
        segment_n = round(segment_s * fs)
        for c, name in enumerate(names):
            start = c * segment_n
            samples = leads[name][start : start + segment_n]
            col_px = x0 + c * segment_s * PAPER_SPEED_MM_S * px_per_mm
            _draw_trace(canvas, samples, fs, col_px, zero, px_per_mm)
            _draw_text(canvas, name, col_px + 1.0 * px_per_mm, zero - label_up, px_per_mm)
            if c > 0:  # lead-change tick, as printed by real carts
                _draw_tick(canvas, col_px, zero, px_per_mm)
            panels.append(_panel(name, col_px, zero, start / fs, segment_n / fs))
    for k, name in enumerate(rhythm_leads):
        zero = (TOP_MM + row_mm * (len(lead_rows) + k + 0.6)) * px_per_mm
        rows.append(zero)
        _draw_trace(canvas, leads[name], fs, x0, zero, px_per_mm)
        _draw_text(canvas, name, x0 + px_per_mm, zero - label_up, px_per_mm)
        panels.append(_panel(name, x0, zero, 0.0, duration_s, rhythm=True))
    _draw_header(canvas, title, px_per_mm)
    main = next((p for p in panels if p["rhythm"] and p["lead"] == "II"), None)
    main = main or next(p for p in panels if p["lead"] == "II")
    truth = _geometry_truth(px_per_mm, x0, main["zero_mv_row"], panels)
    truth["calibration_rows"] = rows
    truth["rhythm_leads"] = list(rhythm_leads)
    return canvas, truth


def _draw_tick(canvas: np.ndarray, col_px: float, zero: float, px_per_mm: float) -> None:
    tick = 2.5 * px_per_mm
    cv2.line(
        canvas,
        (int(col_px), int(zero - tick)),
        (int(col_px), int(zero + tick)),
        TRACE_COLOR,
        max(1, round(0.2 * px_per_mm)),
        cv2.LINE_AA,
    )


def _panel(
    lead: str, col_px: float, zero_px: float, t_start: float, dur: float, rhythm: bool = False
) -> dict[str, Any]:
    return {
        "lead": lead,
        "t0_col": float(col_px),
        "zero_mv_row": float(zero_px),
        "t_start_s": float(t_start),
        "duration_s": float(dur),
        "rhythm": rhythm,
    }


def _geometry_truth(
    px_per_mm: float, t0_col: float, zero_row: float, panels: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "px_per_mm_x": px_per_mm,
        "px_per_mm_y": px_per_mm,
        "t0_col": float(t0_col),
        "zero_mv_row": float(zero_row),
        "px_per_s": px_per_mm * PAPER_SPEED_MM_S,
        "px_per_mv": px_per_mm * GAIN_MM_MV,
        "panels": panels,
    }


# --------------------------------------------------------------------------- distortions


def apply_distortions(
    image: np.ndarray, distortions: Mapping[str, Any], rng: np.random.Generator, px_per_mm: float
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Apply the requested distortions; return the image, what was applied, and the homography.

    The homography maps undistorted paper pixels (the truth's coordinates) to output pixels.
    """
    unknown = sorted(set(distortions) - set(DISTORTION_KEYS))
    if unknown:
        raise EcgmlError(
            f"unknown distortion(s) {', '.join(unknown)}: use {', '.join(DISTORTION_KEYS)}"
        )
    applied: dict[str, Any] = {}
    homography = np.eye(3)
    out = image.copy()
    d = {k: v for k, v in distortions.items() if v not in (None, 0, 0.0, False)}
    if "stains" in d:
        out = _add_stains(out, int(d["stains"]), rng, px_per_mm)
        applied["stains"] = int(d["stains"])
    if "creases" in d:
        out = _add_creases(out, int(d["creases"]), rng)
        applied["creases"] = int(d["creases"])
    if "lighting" in d:
        out = _uneven_lighting(out, float(d["lighting"]), rng)
        applied["lighting"] = float(d["lighting"])
    if "rotation_deg" in d or "perspective" in d:
        rotation, skew = float(d.get("rotation_deg", 0.0)), float(d.get("perspective", 0.0))
        out, homography = _warp(out, rotation, skew, rng)
        applied.update({k: float(d[k]) for k in ("rotation_deg", "perspective") if k in d})
    if "blur_sigma" in d:
        sigma = float(d["blur_sigma"])
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma)
        applied["blur_sigma"] = sigma
    if "noise_std" in d:
        out = _add_noise(out, float(d["noise_std"]), rng)
        applied["noise_std"] = float(d["noise_std"])
    if "low_res_scale" in d:
        scale = float(d["low_res_scale"])
        if not 0.05 <= scale <= 1.0:
            raise EcgmlError(f"distortion low_res_scale must lie in 0.05–1, got {scale}")
        size = (max(1, round(out.shape[1] * scale)), max(1, round(out.shape[0] * scale)))
        sx, sy = size[0] / out.shape[1], size[1] / out.shape[0]
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
        homography = np.diag([sx, sy, 1.0]) @ homography
        applied["low_res_scale"] = scale
    if "photo" in d:
        strength = float(d["photo"])
        if not 0.0 < strength <= 1.0:
            raise EcgmlError(
                f"distortion photo must lie in 0–1 (1: ±15° tilt, 20% keystone), got {strength}"
            )
        out, warp = _photo(out, strength, rng, px_per_mm)
        homography = warp @ homography
        applied["photo"] = strength
        d.setdefault("jpeg_quality", 85)
    if "jpeg_quality" in d:
        quality = int(d["jpeg_quality"])
        if not 1 <= quality <= 100:
            raise EcgmlError(f"distortion jpeg_quality must lie in 1–100, got {quality}")
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        out = decoded if decoded is not None else out
        applied["jpeg_quality"] = quality
    return out, applied, homography


def _add_stains(image: np.ndarray, count: int, rng: np.random.Generator, ppm: float) -> np.ndarray:
    """Translucent coffee-like blotches (alpha-blended ellipses with a darker rim)."""
    h, w = image.shape[:2]
    layer = image.copy()
    for _ in range(count):
        center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(5, 20) * ppm), int(rng.uniform(4, 15) * ppm))
        angle = float(rng.uniform(0, 180))
        color = tuple(int(c) for c in rng.uniform([120, 160, 190], [170, 200, 225]))
        cv2.ellipse(layer, center, axes, angle, 0, 360, color, -1, cv2.LINE_AA)
        rim = max(1, int(0.6 * ppm))
        dark = tuple(int(c * 0.85) for c in color)
        cv2.ellipse(layer, center, axes, angle, 0, 360, dark, rim, cv2.LINE_AA)
    alpha = float(rng.uniform(0.25, 0.45))
    return cv2.addWeighted(layer, alpha, image, 1 - alpha, 0)


def _add_creases(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Fold lines: a dark crease with a soft shadow on one side and a highlight on the other."""
    h, w = image.shape[:2]
    sh, sw = _field_size(h, w, 600)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xx, yy = xx * (w / sw), yy * (h / sh)
    shade = np.ones((sh, sw), np.float32)
    for _ in range(count):
        if rng.random() < 0.5:  # mostly vertical or horizontal folds, slightly tilted
            p0 = np.array([rng.uniform(0.15, 0.85) * w, 0.0])
            direction = np.array([rng.uniform(-0.08, 0.08), 1.0])
        else:
            p0 = np.array([0.0, rng.uniform(0.15, 0.85) * h])
            direction = np.array([1.0, rng.uniform(-0.08, 0.08)])
        normal = np.array([-direction[1], direction[0]]) / np.linalg.norm(direction)
        dist = (xx - p0[0]) * normal[0] + (yy - p0[1]) * normal[1]
        width = max(2.0, 0.004 * max(h, w))
        shade *= 1.0 - 0.2 * np.exp(-((dist / width) ** 2))
        shade *= 1.0 - 0.08 * np.tanh(dist / (6 * width)) * np.exp(-np.abs(dist) / (20 * width))
    return _scale_pixels(image, shade)


def _uneven_lighting(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply by a smooth gain field: a linear gradient plus an off-centre vignette."""
    h, w = image.shape[:2]
    sh, sw = _field_size(h, w, 64)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    xx, yy = xx / max(sw - 1, 1) - 0.5, yy / max(sh - 1, 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gradient = xx * np.cos(angle) + yy * np.sin(angle)
    cx, cy = rng.uniform(-0.3, 0.3, size=2)
    vignette = (xx - cx) ** 2 + (yy - cy) ** 2
    field = 1.0 - strength * (0.6 * (gradient + 0.5) + 0.8 * vignette)
    return _scale_pixels(image, np.clip(field, 0.2, 1.0).astype(np.float32))


def _add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Grey sensor noise, drawn at half resolution (grain larger than a pixel, and faster)."""
    h, w = image.shape[:2]
    small = rng.standard_normal(((h + 1) // 2, (w + 1) // 2), dtype=np.float32) * std
    noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.add(image, cv2.cvtColor(noise, cv2.COLOR_GRAY2BGR), dtype=cv2.CV_8U)


def _field_size(h: int, w: int, longest: int) -> tuple[int, int]:
    """Size of a low-resolution field (longest side ``longest``) with the image's aspect."""
    factor = min(1.0, longest / max(h, w))
    return max(2, round(h * factor)), max(2, round(w * factor))


def _scale_pixels(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Multiply every channel by a (possibly low-resolution) gain field, saturating to uint8."""
    h, w = image.shape[:2]
    if field.shape != (h, w):
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    gains = cv2.cvtColor(np.clip(field * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return cv2.multiply(image, gains, scale=1.0 / 255.0)


def _warp(
    image: np.ndarray, rotation_deg: float, skew: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation about the centre plus random corner displacement (``skew`` × image size)."""
    h, w = image.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    center = np.array([w / 2, h / 2], dtype=np.float32)
    theta = np.deg2rad(rotation_deg)
    rot = np.array(
        [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=np.float32
    )
    moved = (corners - center) @ rot.T + center
    moved += rng.uniform(-skew, skew, size=(4, 2)).astype(np.float32) * np.array(
        [w, h], dtype=np.float32
    )
    homography = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    warped = cv2.warpPerspective(
        image,
        homography,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(205, 210, 212),
    )
    return warped, homography.astype(np.float64)


#: A phone photo at strength 1: in-plane tilt up to this many degrees, keystone up to this share.
PHOTO_MAX_TILT_DEG = 15.0
PHOTO_MAX_KEYSTONE = 0.2
#: Share of the sheet's size left as table around it.
PHOTO_MARGIN = 0.06


def _photo(
    image: np.ndarray, strength: float, rng: np.random.Generator, px_per_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """A phone photo of the sheet lying on a darker table: tilt, keystone (one edge nearer the
    camera), uneven light, lens blur and sensor noise; returns the image and the homography
    from sheet pixels to photo pixels (the ground truth stays exact through it)."""
    h, w = image.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    squeeze = rng.uniform(0.3, 1.0) * PHOTO_MAX_KEYSTONE * strength
    if rng.random() < 0.5:  # the top or bottom edge is the far one
        far = (0, 1) if rng.random() < 0.5 else (3, 2)
        corners[far[0], 0] += squeeze * w / 2
        corners[far[1], 0] -= squeeze * w / 2
    else:
        far = (0, 3) if rng.random() < 0.5 else (1, 2)
        corners[far[0], 1] += squeeze * h / 2
        corners[far[1], 1] -= squeeze * h / 2
    theta = np.deg2rad(rng.uniform(-1.0, 1.0) * PHOTO_MAX_TILT_DEG * strength)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (corners - [w / 2, h / 2]) @ rot.T
    margin = PHOTO_MARGIN * max(w, h)
    moved -= moved.min(axis=0) - margin
    size = np.ceil(moved.max(axis=0) + margin).astype(int)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(src, moved.astype(np.float32)).astype(np.float64)
    table = np.array(rng.uniform([40, 55, 70], [90, 100, 120]), dtype=np.float32)
    out = np.empty((size[1], size[0], 3), np.uint8)
    out[:] = table.astype(np.uint8)
    cv2.warpPerspective(
        image,
        homography,
        (int(size[0]), int(size[1])),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_TRANSPARENT,
    )
    out = _uneven_lighting(out, 0.35 * strength, rng)
    out = cv2.GaussianBlur(out, (0, 0), sigmaX=0.3 + 0.4 * strength)
    out = _add_noise(out, 2.0 + 2.0 * strength, rng)
    return out, homography
