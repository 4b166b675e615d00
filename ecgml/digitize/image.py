"""Load an image, make the grayscale channels the later steps need, and deskew it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
#: Default cap on an image's pixels (``max_image_pixels``): an A4 page at 700 dpi is ~49 Mpx.
DEFAULT_MAX_PIXELS = 50_000_000
#: A PNG/JPEG file larger than this many bytes per allowed pixel is refused unread.
MAX_BYTES_PER_PIXEL = 4
#: The JPEG frame header may follow EXIF/ICC segments (each up to 64 KB).
MAX_HEADER_BYTES = 1 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def load_image(
    path: Path | str, pdf_dpi: int = 200, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file as BGR uint8 (the first page of a PDF, rendered at ``pdf_dpi``).

    The pixel count is checked against ``max_pixels`` before anything is decoded or rendered:
    a few-KB file can claim gigapixels (a decompression bomb).
    """
    path = Path(path)
    if not path.is_file():
        raise DigitizeError(f"{path.name} is not a regular file: pass an image file")
    if path.suffix.lower() == ".pdf":
        return _load_pdf(path, pdf_dpi, max_pixels)
    if path.stat().st_size > MAX_BYTES_PER_PIXEL * max_pixels:
        raise DigitizeError(
            f"{path.name} is {path.stat().st_size / 1e6:.0f} MB, too large for an image under "
            f"the cap of {max_pixels / 1e6:g} Mpx (max_image_pixels): downscale the scan"
        )
    data = np.fromfile(path, dtype=np.uint8)
    size = image_size(data[:MAX_HEADER_BYTES].tobytes()) if data.size else None
    if size is None:
        raise DigitizeError(f"{path.name} is not a readable image (corrupt or not PNG/JPEG)")
    _check_pixels(path.name, size, max_pixels, "downscale the scan")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DigitizeError(f"{path.name} is not a readable image (corrupt or not PNG/JPEG)")
    return image


def image_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header; None for anything else."""
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first start-of-frame (SOFn) and read its size."""
    i = 2
    while i + 9 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE:
            i += 2
            continue
        if marker in JPEG_SOF:
            height = int.from_bytes(head[i + 5 : i + 7], "big")
            width = int.from_bytes(head[i + 7 : i + 9], "big")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header: not a valid JPEG
            return None
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int, fix: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise DigitizeError(
            f"{name} is {width}×{height} px ({width * height / 1e6:.0f} Mpx), over the cap of "
            f"{max_pixels / 1e6:g} Mpx (max_image_pixels): {fix}, or raise max_image_pixels"
        )


def _load_pdf(path: Path, dpi: int, max_pixels: int) -> np.ndarray:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise DigitizeError(
            f"{path.name}: reading PDF needs the pypdfium2 package: install it or export the "
            "page as PNG"
        ) from None
    try:
        document = pdfium.PdfDocument(str(path))
    except Exception as err:  # pdfium raises its own error types
        raise DigitizeError(f"{path.name} is not a readable PDF ({err})") from None
    try:
        rgb = _render_first_page(path.name, document, dpi, max_pixels)
    finally:
        document.close()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _render_first_page(name: str, document: Any, dpi: int, max_pixels: int) -> np.ndarray:
    """Render page 1 as RGB, refusing a page whose render would exceed ``max_pixels``."""
    try:
        page = document[0]
        width_pt, height_pt = page.get_size()
    except Exception as err:
        raise DigitizeError(f"{name} is not a readable PDF ({err})") from None
    scale = dpi / 72
    size = (round(width_pt * scale), round(height_pt * scale))
    inches = f"{width_pt / 72:.1f}×{height_pt / 72:.1f} in"
    fix = f"its {inches} page at {dpi} dpi is too large: export it at paper size"
    _check_pixels(name, size, max_pixels, fix)
    try:
        return np.asarray(page.render(scale=scale).to_pil().convert("RGB"))
    except Exception as err:
        raise DigitizeError(f"{name} is not a readable PDF ({err})") from None


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Standard luma grayscale (uint8); grayscale input is returned as is."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def ink_channel(image: np.ndarray) -> np.ndarray:
    """Per pixel max(B, G, R): black ink stays dark while red/pink/orange grid lines vanish."""
    if image.ndim == 2:
        return image
    return channel_max(image)


def channel_max(image: np.ndarray) -> np.ndarray:
    """max(B, G, R) per pixel: HSV's V, several times faster than splitting the channels."""
    return cv2.extractChannel(cv2.cvtColor(image, cv2.COLOR_BGR2HSV), 2)


def grid_channel(image: np.ndarray, hsv: np.ndarray | None = None) -> np.ndarray:
    """Where the grid shows best: colour saturation for coloured grids, darkness for grey ones.

    Saturation (max − min channel) is zero for black ink, so the trace and text disappear.
    ``hsv``: the image in HSV when the caller has it already.
    """
    if image.ndim == 3:
        # max − min from HSV in one conversion: S·V/255 (within one gray level).
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV) if hsv is None else hsv
        chroma = cv2.multiply(
            cv2.extractChannel(hsv, 1), cv2.extractChannel(hsv, 2), scale=1.0 / 255
        )
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
    while gray.shape[1] >= 2 * SKEW_WORK_WIDTH:  # halve first: INTER_AREA is slow at large factors
        gray = cv2.pyrDown(gray)
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
