"""Load an image, make the grayscale channels the later steps need, and deskew it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ecgml.digitize.errors import DigitizeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf")
MAX_SKEW_DEG = 5.0
#: Width the skew search works at: plenty for 0.1° and keeps it a few milliseconds.
SKEW_WORK_WIDTH = 1000
MAX_SKEW_POINTS = 20_000
#: Gray levels below this are ink (trace, text), not grid.
INK_LEVEL = 110


def load_image(path: Path | str, pdf_dpi: int = 200) -> np.ndarray:
    """Read an image file as BGR uint8 (the first page of a PDF, rendered at ``pdf_dpi``)."""
    path = Path(path)
    if path.suffix.lower() == ".pdf":
        return _load_pdf(path, pdf_dpi)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DigitizeError(f"{path.name} is not a readable image (corrupt or not PNG/JPEG)")
    return image


def _load_pdf(path: Path, dpi: int) -> np.ndarray:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise DigitizeError(
            f"{path.name}: reading PDF needs the pypdfium2 package: install it or export the "
            "page as PNG"
        ) from None
    try:
        page = pdfium.PdfDocument(str(path))[0]
        rgb = np.asarray(page.render(scale=dpi / 72).to_pil().convert("RGB"))
    except Exception as err:  # pdfium raises its own error types
        raise DigitizeError(f"{path.name} is not a readable PDF ({err})") from None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Standard luma grayscale (uint8); grayscale input is returned as is."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def ink_channel(image: np.ndarray) -> np.ndarray:
    """Per pixel max(B, G, R): black ink stays dark while red/pink/orange grid lines vanish."""
    if image.ndim == 2:
        return image
    b, g, r = cv2.split(image)
    return cv2.max(cv2.max(b, g), r)


def grid_channel(image: np.ndarray) -> np.ndarray:
    """Where the grid shows best: colour saturation for coloured grids, darkness for grey ones.

    Saturation (max − min channel) is zero for black ink, so the trace and text disappear.
    """
    if image.ndim == 3:
        b, g, r = cv2.split(image)
        chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
        if np.percentile(chroma[::4, ::4], 99) >= 25:
            return chroma
    gray = to_grayscale(image)
    darkness = 255 - gray
    # Grey grid: blank out the ink (trace, text) so its heart-rate rhythm cannot pose as a grid.
    ink = cv2.dilate((gray < INK_LEVEL).astype(np.uint8), np.ones((5, 5), np.uint8))
    darkness[ink > 0] = 0
    return darkness


def estimate_skew(image: np.ndarray, max_deg: float = MAX_SKEW_DEG) -> float:
    """The image's rotation in degrees (counter-clockwise positive, as in
    ``cv2.getRotationMatrix2D``); ``rotate(image, -angle)`` makes its lines horizontal again.

    Searches the angle whose row projection of the dark pixels is sharpest (the grid's
    horizontal lines and the baseline pile up in few rows), coarse then fine.
    """
    gray = to_grayscale(image)
    scale = min(1.0, SKEW_WORK_WIDTH / gray.shape[1])
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mask = cv2.adaptiveThreshold(
        small, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 15, 8
    )
    ys, xs = np.nonzero(mask)
    if ys.size < 100:
        return 0.0
    if ys.size > MAX_SKEW_POINTS:
        keep = np.random.default_rng(0).choice(ys.size, MAX_SKEW_POINTS, replace=False)
        ys, xs = ys[keep], xs[keep]
    xs = xs - small.shape[1] / 2.0
    ys = ys.astype(np.float64)

    def sharpness(angle_deg: float) -> float:
        rows = ys + xs * np.tan(np.deg2rad(angle_deg))
        counts = np.bincount(np.round(rows - rows.min()).astype(np.int64))
        return float(np.dot(counts, counts))

    coarse = np.arange(-max_deg, max_deg + 1e-9, 0.5)
    best = coarse[np.argmax([sharpness(a) for a in coarse])]
    fine = np.arange(best - 0.5, best + 0.5 + 1e-9, 0.05)
    best = fine[np.argmax([sharpness(a) for a in fine])]
    fine = np.arange(best - 0.05, best + 0.05 + 1e-9, 0.01)
    return float(fine[np.argmax([sharpness(a) for a in fine])])


def rotate(image: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate about the centre by ``angle_deg`` (counter-clockwise), filling with paper white."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
    border = (255,) * (1 if image.ndim == 2 else image.shape[2])
    return cv2.warpAffine(
        image,
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border,
    )


def deskew(
    image: np.ndarray, max_deg: float = MAX_SKEW_DEG, min_deg: float = 0.05
) -> tuple[np.ndarray, float]:
    """Undo a rotation of up to ``max_deg``; returns ``(image, the rotation found)``."""
    angle = estimate_skew(image, max_deg)
    if abs(angle) < min_deg:
        return image, 0.0
    return rotate(image, -angle), angle
