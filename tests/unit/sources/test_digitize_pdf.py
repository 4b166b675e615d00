"""PDF input: the first page is rendered (pypdfium2) and digitized like an image."""

from pathlib import Path

import neurokit2 as nk
import numpy as np
from matplotlib.figure import Figure

from ecgml.digitize.fidelity import compare_signals
from ecgml.digitize.pipeline import process_image
from ecgml.synth.render import render_ecg

FS = 500


def write_pdf(image_bgr: np.ndarray, path: Path, dpi: int = 200) -> None:
    """Embed the rendered strip in a PDF page of exactly its size at ``dpi``."""
    height, width = image_bgr.shape[:2]
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    figure.figimage(image_bgr[:, :, ::-1], xo=0, yo=0)
    figure.savefig(path, dpi=dpi)


def test_pdf_strip_is_digitized(tmp_path: Path) -> None:
    signal = nk.ecg_simulate(duration=10, sampling_rate=FS, heart_rate=70, random_state=3)
    image, _ = render_ecg(signal, FS, layout="strip", dpi=200, grid_color="red")
    write_pdf(image, tmp_path / "strip.pdf")
    result = process_image(tmp_path / "strip.pdf", fs=FS)
    assert result.status == "ok", result.error
    assert result.n_beats >= 8
    agreement = compare_signals(signal, result.digitized.signal, FS)
    assert agreement.pearson_r > 0.98
    assert agreement.snr_db > 15


def test_corrupt_pdf_fails_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 not really")
    result = process_image(tmp_path / "bad.pdf", fs=FS)
    assert result.status == "failed"
    assert "not a readable PDF" in result.error
