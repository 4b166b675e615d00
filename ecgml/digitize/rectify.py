"""Phone photos: find the sheet, undo its perspective with a homography, even out the light.

A photo shows the sheet as a bright quadrilateral on a darker background, tilted and
foreshortened (keystone). Its four edges, located to a fraction of a pixel, give the
homography onto an upright rectangle; the grid then calibrates the rectified image as it
does a scan (x and y separately, so the rectangle's aspect need not be exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ecgml.digitize.image import ink_channel, to_grayscale

#: The sheet search runs on a copy whose longest side is this many pixels.
WORK_SIZE = 640
#: The sheet covers at least this share of the photo (and leaves a visible border).
MIN_SHEET_SHARE, MAX_SHEET_SHARE = 0.2, 0.97
#: Paper must be this many gray levels brighter than what surrounds it.
MIN_CONTRAST = 40.0
#: The sheet's corners lie at least this share of the photo inside its frame.
BORDER_MARGIN = 0.01
#: Points sampled along each edge for the sub-pixel line fit.
EDGE_SAMPLES = 60


@dataclass(frozen=True)
class Sheet:
    """The sheet's corners in the photo (top-left, top-right, bottom-right, bottom-left)."""

    corners: np.ndarray  # (4, 2) float64

    def homography(self) -> tuple[np.ndarray, tuple[int, int]]:
        """Photo → rectified-sheet homography and the rectified ``(width, height)``."""
        c = self.corners
        width = max(np.linalg.norm(c[1] - c[0]), np.linalg.norm(c[2] - c[3]))
        height = max(np.linalg.norm(c[3] - c[0]), np.linalg.norm(c[2] - c[1]))
        size = (round(width), round(height))
        target = np.array(
            [[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]], dtype=np.float32
        )
        matrix = cv2.getPerspectiveTransform(c.astype(np.float32), target)
        return matrix.astype(np.float64), size


def find_sheet(image: np.ndarray) -> Sheet | None:
    """The paper sheet's quadrilateral when the photo shows it on a darker background."""
    scale = min(1.0, WORK_SIZE / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    small = cv2.GaussianBlur(to_grayscale(small), (5, 5), 0)
    _, paper = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper = cv2.morphologyEx(paper, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    contours, _ = cv2.findContours(paper, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    share = cv2.contourArea(hull) / float(small.size)
    if not MIN_SHEET_SHARE <= share <= MAX_SHEET_SHARE:
        return None
    quad = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)
    if len(quad) != 4 or not cv2.isContourConvex(quad):
        return None
    margin = BORDER_MARGIN * max(small.shape)
    xs, ys = quad[:, 0, 0], quad[:, 0, 1]
    if min(xs.min(), ys.min()) < margin or xs.max() > small.shape[1] - 1 - margin:
        return None  # touching the frame: a scan, or a lighting edge across the paper
    if ys.max() > small.shape[0] - 1 - margin:
        return None
    inside = np.zeros_like(small)
    cv2.fillConvexPoly(inside, quad, 255)
    if cv2.mean(small, inside)[0] - cv2.mean(small, 255 - inside)[0] < MIN_CONTRAST:
        return None
    corners = _order_corners(quad.reshape(4, 2).astype(np.float64) / scale)
    gray = cv2.GaussianBlur(to_grayscale(image), (5, 5), 0)
    # A dim corner can fall below the threshold and pull a coarse corner off: the first pass
    # looks far, fits each edge to its well-lit part, and the second pass looks close.
    for reach in (max(8.0, 8.0 / scale), max(4.0, 2.0 / scale)):
        refined = _refine_corners(gray, corners, reach)
        if refined is None:
            break
        corners = refined
    return Sheet(corners)


def _order_corners(points: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left (by angle about the centre)."""
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    ordered = points[np.argsort(angles)]  # from -pi: top-left first for a near-upright sheet
    start = int(np.argmin(ordered.sum(axis=1)))
    return np.roll(ordered, -start, axis=0)


def _refine_corners(gray: np.ndarray, corners: np.ndarray, reach: float) -> np.ndarray | None:
    """Corners as intersections of lines fitted to the sheet's edge, found to sub-pixel along
    each edge's normal (strongest brightness step within ``reach`` px of the coarse edge)."""
    lines = []
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        line = _fit_edge(gray, a, b, reach)
        if line is None:
            return None
        lines.append(line)
    out = []
    for k in range(4):
        point = _intersect(lines[(k - 1) % 4], lines[k])
        if point is None or np.linalg.norm(point - corners[k]) > 4 * reach:
            return None
        out.append(point)
    return np.array(out)


def _fit_edge(
    gray: np.ndarray, a: np.ndarray, b: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(point, direction)`` of the line through the brightness steps along edge a→b
    (``gray`` smoothed)."""
    direction = (b - a) / np.linalg.norm(b - a)
    normal = np.array([-direction[1], direction[0]])
    offsets = np.arange(-reach, reach + 0.5, 0.5)
    ts = np.linspace(0.1, 0.9, EDGE_SAMPLES)
    base = a[None, :] + ts[:, None] * (b - a)[None, :]
    pts = base[:, None, :] + offsets[None, :, None] * normal[None, None, :]
    map_x = pts[..., 0].astype(np.float32)
    map_y = pts[..., 1].astype(np.float32)
    profile = cv2.remap(gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Corners run clockwise, so the normal points into the sheet: paper is the bright side.
    step = np.clip(np.diff(profile.astype(np.float64), axis=1), 0, None)
    k = np.argmax(step, axis=1)
    strong = step[np.arange(k.size), k] > 0.3 * np.median(step.max(axis=1))
    inner = (k > 0) & (k < step.shape[1] - 1) & strong
    if inner.sum() < EDGE_SAMPLES // 3:
        return None
    rows = np.flatnonzero(inner)
    left, mid, right = (step[rows, k[rows] + d] for d in (-1, 0, 1))
    denom = left - 2 * mid + right
    shift = np.where(denom != 0, 0.5 * (left - right) / np.where(denom != 0, denom, 1), 0.0)
    at = offsets[0] + 0.5 * (k[rows] + 0.5 + np.clip(shift, -0.5, 0.5))
    found = base[rows] + at[:, None] * normal[None, :]
    for _ in range(2):  # fit, drop the points off the line (a grid line, a shadow), refit
        vx, vy, x0, y0 = cv2.fitLine(found.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01)
        point, along = np.array([x0[0], y0[0]]), np.array([vx[0], vy[0]])
        residual = np.abs((found - point) @ np.array([-along[1], along[0]]))
        keep = residual <= max(1.0, 3 * float(np.median(residual)))
        if keep.sum() < EDGE_SAMPLES // 3:
            return None
        found = found[keep]
    return point.astype(np.float64), along.astype(np.float64)


def _intersect(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
) -> np.ndarray | None:
    (p, u), (q, v) = first, second
    matrix = np.array([u, -v]).T
    if abs(np.linalg.det(matrix)) < 1e-6:
        return None
    s, _ = np.linalg.solve(matrix, q - p)
    return p + s * u


def rectify(image: np.ndarray, sheet: Sheet) -> tuple[np.ndarray, np.ndarray]:
    """The sheet warped upright (paper-white outside it) and the photo → sheet homography."""
    matrix, size = sheet.homography()
    border = (255,) * (1 if image.ndim == 2 else image.shape[2])
    out = cv2.warpPerspective(
        image,
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )
    return out, matrix


def flatten_lighting(image: np.ndarray) -> np.ndarray:
    """Divide out a smooth illumination field (the paper's brightness, ink and grid closed
    away at low resolution) so that one threshold fits the whole sheet."""
    value = ink_channel(image)
    scale = min(1.0, 160 / max(value.shape))
    small = cv2.resize(value, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small = cv2.dilate(small, np.ones((5, 5), np.uint8))
    small = cv2.GaussianBlur(small, (0, 0), 3)
    field = cv2.resize(small, (value.shape[1], value.shape[0]), interpolation=cv2.INTER_LINEAR)
    field = np.maximum(field, 1)
    if image.ndim == 3:
        field = cv2.merge([field] * image.shape[2])
    return cv2.divide(image, field, scale=250.0)
