"""The synthetic cohort: layout, determinism, effect sizes, rendering truth, bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from ecgml import CONF_DIR
from ecgml.beatstore import load_beat_store
from ecgml.errors import EcgmlError
from ecgml.packstore import PACKED, ROW_COLUMN
from ecgml.recordstore import load_record_store, read_record_csv
from ecgml.synth import build_cohort, config_hash, ensure_cohort
from ecgml.synth.cohort import cohort_config
from ecgml.synth.physiology import NEUTRAL_EFFECTS, sample_patient
from ecgml.synth.render import DISTORTION_KEYS, render_ecg
from ecgml.synth.waveform import synthesize

SMALL_GROUPS = {"hyperkalemia": 5, "hypokalemia": 5, "hyponatremia": 4, "normal": 8}


def default_cfg(**overrides: Any) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    assert isinstance(cfg, dict)
    cfg["render"]["dpi"] = [100, 140]
    cfg.update(copy.deepcopy(overrides))
    return cfg


@pytest.fixture(scope="session")
def small_cfg() -> dict[str, Any]:
    return default_cfg(groups=dict(SMALL_GROUPS))


@pytest.fixture(scope="session")
def small_cohort(small_cfg: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cohort(small_cfg, tmp_path_factory.mktemp("synth") / "cohort", progress=False)


# --------------------------------------------------------------------------- folder layout


def test_cohort_folder_layout_and_group_counts(small_cohort: Path) -> None:
    patients = pd.read_csv(small_cohort / "patients.csv")
    assert patients["group"].value_counts().to_dict() == SMALL_GROUPS
    for column in ("patient_id", "center", "device", "heart_rate", "severity", "t_amp_factor"):
        assert column in patients.columns
    assert set(patients["device"]) <= {"nihon_kohden", "mindray"}
    assert (patients.loc[patients.group == "normal", "t_amp_factor"] == 1.0).all()

    store = load_beat_store(small_cohort / "beats")
    per_patient = store.meta.groupby("patient_id").size()
    assert per_patient.between(2, 3).all() and len(per_patient) == len(patients)
    assert {len(b) for b in store.beats} == {450}  # 250 ms + 650 ms at 500 Hz
    assert (store.meta["r_index"] == 125).all()
    assert store.info.pre_r_ms == 250 and store.info.post_r_ms == 650
    for column in ("record_id", "beat_index", "center", "device", "source_image"):
        assert store.meta[column].notna().all()

    signal = pd.read_csv(small_cohort / "signals" / f"{patients.patient_id[0]}.csv")
    assert list(signal.columns) == ["time_s", "mv"] and len(signal) == 5000
    assert signal["time_s"].iloc[1] == pytest.approx(0.002)

    images = pd.read_csv(small_cohort / "images" / "images.csv")
    assert len(images) == len(patients) and set(images["layout"]) <= {"strip", "page"}
    for row in images.itertuples():
        image = cv2.imread(str(small_cohort / "images" / row.image_file))
        assert image is not None and image.shape[:2] == (row.image_height, row.image_width)

    meta = json.loads((small_cohort / "cohort.json").read_text())
    assert meta["n_patients"] == len(patients) and meta["seed"] == 1234


def test_the_cohort_stores_are_packed_and_agree_with_its_signal_csvs(small_cohort: Path) -> None:
    assert (small_cohort / "beats" / PACKED).is_file() and (small_cohort / PACKED).is_file()
    assert not (small_cohort / "beats" / "beats").exists()  # no CSV per beat
    assert "beat_file" not in pd.read_csv(small_cohort / "beats" / "manifest.csv").columns
    records = load_record_store(small_cohort)
    table = pd.read_csv(small_cohort / "records.csv")
    assert table[ROW_COLUMN].tolist() == list(range(len(table)))
    for record, listed in zip(records.records, table["record_file"], strict=True):
        _, leads, signal = read_record_csv(small_cohort / listed)
        assert record.leads == leads == ("II",)
        np.testing.assert_array_equal(record.signal, signal)  # bit for bit
    store = load_beat_store(small_cohort / "beats")
    row = store.meta.iloc[0]
    r = int(row.record_r_index)
    written = read_record_csv(small_cohort / "signals" / f"{row.patient_id}.csv")[2][0]
    np.testing.assert_array_equal(store.beats[0], written[r - 125 : r + 325])


def test_signal_csvs_false_keeps_the_packed_store_only(
    small_cfg: dict[str, Any], small_cohort: Path, tmp_path: Path
) -> None:
    cfg = {**small_cfg, "images": False, "signal_csvs": False}
    folder = build_cohort(cfg, tmp_path / "packed_only", progress=False)
    assert not (folder / "signals").exists()
    assert "record_file" not in pd.read_csv(folder / "records.csv").columns
    lean, full = load_record_store(folder), load_record_store(small_cohort)
    assert len(lean) == len(full)
    for a, b in zip(lean.records, full.records, strict=True):
        np.testing.assert_array_equal(a.signal, b.signal)  # the same samples, no CSV needed
    with pytest.raises(EcgmlError, match=r"cohort.signal_csvs: 'no' is not true or false"):
        build_cohort({**cfg, "signal_csvs": "no"}, tmp_path / "bad", progress=False)


def test_beats_are_cut_at_the_true_r_peaks(small_cohort: Path) -> None:
    store = load_beat_store(small_cohort / "beats")
    row = store.meta.iloc[0]
    signal = pd.read_csv(small_cohort / "signals" / f"{row.patient_id}.csv")["mv"].to_numpy()
    r = int(row.record_r_index)
    np.testing.assert_allclose(store.beats[0], signal[r - 125 : r + 325], atol=1e-4)
    # The R-peak is the beat's dominant deflection within ±40 ms of its centre mark.
    beat = store.beats[0]
    assert abs(int(np.argmax(np.abs(beat[105:145]))) + 105 - 125) <= 8


def test_same_seed_gives_identical_signals_and_beats(
    small_cfg: dict[str, Any], small_cohort: Path, tmp_path: Path
) -> None:
    # images=false changes the cache key but must not change a single sample.
    again = build_cohort({**small_cfg, "images": False}, tmp_path / "again", progress=False)
    for name in sorted((small_cohort / "signals").iterdir())[:5]:
        assert (again / "signals" / name.name).read_bytes() == name.read_bytes()
    first = load_beat_store(small_cohort / "beats")
    second = load_beat_store(again / "beats")
    assert list(first.meta["beat_id"]) == list(second.meta["beat_id"])
    for a, b in zip(first.beats, second.beats, strict=True):
        np.testing.assert_array_equal(a, b)
    other = build_cohort(
        {**small_cfg, "images": False, "seed": 7}, tmp_path / "other", progress=False
    )
    name = sorted((small_cohort / "signals").iterdir())[0].name
    assert (other / "signals" / name).read_bytes() != (small_cohort / "signals" / name).read_bytes()


def test_scale_multiplies_group_counts(tmp_path: Path) -> None:
    cfg = cohort_config(default_cfg(scale=0.1))
    from ecgml.synth.cohort import group_counts

    assert group_counts(cfg) == {
        "hyperkalemia": 4,
        "hypokalemia": 7,
        "hyponatremia": 10,
        "normal": 23,
    }


# --------------------------------------------------------------------------- effect sizes


def _forced_patient(group: str, sign: str, seed: int = 3) -> tuple[Any, Any]:
    """The same patient twice: with exactly one forced sign, and without any effect."""
    cfg = default_cfg()
    spec = {"silent": 0.0, sign: {**cfg["effects"][group][sign], "p": 1.0}}
    cfg["effects"][group] = spec
    cfg["baseline"]["heart_rate_bpm"] = [60, 62]
    patient = sample_patient(np.random.default_rng(seed), cfg, "X", group, "C01", "mindray")
    neutral = copy.deepcopy(patient)
    neutral.effects = dict(NEUTRAL_EFFECTS)
    return patient, neutral


def _clean_beats(patient: Any) -> tuple[np.ndarray, np.ndarray]:
    rec = synthesize(patient, 500, 10, np.random.default_rng(0), amp_jitter=0.0, clean=True)
    r = rec.r_indices[(rec.r_indices > 200) & (rec.r_indices < 4400)]
    return np.stack([rec.lead_ii[i - 125 : i + 400] for i in r]), r


def test_peaked_t_amplitude_matches_the_configured_factor() -> None:
    patient, neutral = _forced_patient("hyperkalemia", "t_peaked")
    with_effect, _ = _clean_beats(patient)
    without, _ = _clean_beats(neutral)
    t_window = slice(125 + 60, 125 + 350)  # 120–700 ms after R
    ratio = with_effect[:, t_window].max(1).mean() / without[:, t_window].max(1).mean()
    assert patient.effects["t_amp_factor"] > 1.2
    assert ratio == pytest.approx(patient.effects["t_amp_factor"], rel=0.08)


def test_hypokalemia_u_wave_is_present_with_the_configured_height() -> None:
    patient, neutral = _forced_patient("hypokalemia", "u_wave")
    with_effect, _ = _clean_beats(patient)
    without, _ = _clean_beats(neutral)
    difference = (with_effect - without).mean(0)
    u = patient.effects["u_wave_mv"]
    assert u >= 0.05
    assert difference.max() == pytest.approx(u, rel=0.1)
    peak_ms = (int(np.argmax(difference)) - 125) * 2
    assert 250 <= peak_ms <= 650  # after the T wave


def test_hyperkalemia_pr_prolongation_moves_the_p_wave_earlier() -> None:
    patient, neutral = _forced_patient("hyperkalemia", "pr_prolong")
    with_effect, _ = _clean_beats(patient)
    without, _ = _clean_beats(neutral)
    p_with = int(np.argmax(with_effect[0, :110]))
    p_without = int(np.argmax(without[0, :110]))
    shift_ms = (p_without - p_with) * 2
    assert shift_ms == pytest.approx(patient.effects["pr_delta_ms"], abs=3)


def test_severity_zero_removes_every_effect() -> None:
    cfg = default_cfg(severity=0.0)
    patient = sample_patient(np.random.default_rng(1), cfg, "X", "hyperkalemia", "C01", "mindray")
    assert patient.effects == NEUTRAL_EFFECTS


@pytest.mark.slow
def test_cohort_level_t_amplitude_hyperkalemia_vs_normal(tmp_path: Path) -> None:
    groups = {"hyperkalemia": 30, "normal": 30}
    cfg = default_cfg(groups=groups, images=False)
    folder = build_cohort(cfg, tmp_path / "c", progress=False)
    store = load_beat_store(folder / "beats")
    beats = np.stack(store.beats)
    baseline = np.median(beats[:, 125 - 40 : 125 - 25], axis=1)  # PR segment, 50–80 ms before R
    t_amp = beats[:, 125 + 60 : 125 + 225].max(1) - baseline
    per_patient = pd.DataFrame({"p": store.meta["patient_id"], "t": t_amp}).groupby("p")["t"]
    patients = pd.read_csv(folder / "patients.csv").set_index("patient_id")
    medians = per_patient.median().to_frame().join(patients[["group", "t_amp_factor"]])
    by_group = medians.groupby("group")["t"].median()
    measured = by_group["hyperkalemia"] / by_group["normal"]
    configured = medians.loc[medians.group == "hyperkalemia", "t_amp_factor"].median()
    assert measured > 1.1
    assert measured == pytest.approx(configured, rel=0.3)


# --------------------------------------------------------------------------- rendering


def _test_signal() -> np.ndarray:
    t = np.arange(5000) / 500.0
    phase = (t % 0.8) - 0.3
    return 1.1 * np.exp(-0.5 * (phase / 0.012) ** 2) + 0.3 * np.exp(
        -0.5 * ((phase - 0.3) / 0.05) ** 2
    )


def _grid_pitch_px(image: np.ndarray, rows: slice) -> float:
    """Dominant period (px) of the vertical grid lines, from the FFT of the column profile."""
    redness = image[rows, :, 2].astype(float) - image[rows, :, 1].astype(float)
    profile = redness.mean(0)
    profile -= profile.mean()
    n = 1 << 16
    spectrum = np.abs(np.fft.rfft(profile * np.hanning(len(profile)), n))
    freqs = np.fft.rfftfreq(n)
    band = (freqs > 1 / 30.0) & (freqs < 1 / 2.5)  # 1 mm at 86–760 dpi
    k = int(np.flatnonzero(band)[np.argmax(spectrum[band])])
    return 1.0 / freqs[k]


@pytest.mark.parametrize("dpi", [100, 200, 300])
def test_grid_pitch_matches_the_requested_dpi(dpi: int) -> None:
    image, truth = render_ecg(_test_signal(), 500, layout="strip", dpi=dpi, grid_color="red")
    top = int(truth["zero_mv_row"] + 15 * truth["px_per_mm_y"])  # below the trace
    pitch = _grid_pitch_px(image, slice(top, top + 40))
    assert pitch == pytest.approx(dpi / 25.4, rel=0.02)
    assert truth["px_per_mm_x"] == pytest.approx(dpi / 25.4)


def _dark_at_truth(image: np.ndarray, truth: dict[str, Any], signal: np.ndarray) -> float:
    """Share of sampled signal points that land on dark (trace) pixels via the ground truth."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    homography = np.array(truth["homography"])
    hits = 0
    idx = np.arange(100, len(signal) - 100, 97)
    for i in idx:
        x = truth["t0_col"] + i / truth["fs"] * truth["px_per_s"]
        y = truth["zero_mv_row"] - signal[i] * truth["px_per_mv"]
        u, v, w = homography @ np.array([x, y, 1.0])
        col, row = round(u / w), round(v / w)
        patch = gray[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
        hits += patch.size > 0 and patch.min() < 110
    return hits / len(idx)


@pytest.mark.parametrize("layout", ["strip", "page"])
def test_ground_truth_locates_the_trace(layout: str) -> None:
    signal = _test_signal()
    image, truth = render_ecg(signal, 500, layout=layout, dpi=150, grid_color="pink")
    assert _dark_at_truth(image, truth, signal) > 0.95
    if layout == "page":
        assert len(truth["panels"]) == 13 and truth["panels"][-1]["rhythm"]


STRENGTHS = {
    "rotation_deg": 2.5,
    "perspective": 0.02,
    "blur_sigma": 1.2,
    "noise_std": 10.0,
    "jpeg_quality": 40,
    "lighting": 0.4,
    "creases": 2,
    "stains": 2,
    "low_res_scale": 0.6,
    "photo": 0.8,
}


@pytest.mark.parametrize("name", DISTORTION_KEYS)
def test_every_distortion_keeps_the_ground_truth(name: str) -> None:
    signal = _test_signal()
    original = signal.copy()
    clean, truth = render_ecg(signal, 500, dpi=120, grid_color="red", seed=5)
    image, distorted = render_ecg(
        signal, 500, dpi=120, grid_color="red", seed=5, distortions={name: STRENGTHS[name]}
    )
    np.testing.assert_array_equal(signal, original)
    # a photo is also saved as a JPEG (quality 85), and says so
    extra = {"jpeg_quality": 85} if name == "photo" else {}
    assert distorted["distortions"] == {name: STRENGTHS[name], **extra}
    for key in ("px_per_mm_x", "px_per_mm_y", "t0_col", "zero_mv_row", "panels", "px_per_mv"):
        assert distorted[key] == truth[key]
    assert image.dtype == np.uint8 and image.ndim == 3
    assert image.shape != clean.shape or np.any(image != clean)
    # The truth plus its homography still lands on the (distorted) trace.
    if name not in ("noise_std", "blur_sigma", "low_res_scale"):
        assert _dark_at_truth(image, distorted, signal) > 0.85


def test_no_grid_always_gets_a_calibration_pulse() -> None:
    _, truth = render_ecg(_test_signal(), 500, grid_color="none", calibration_pulse=False)
    assert truth["calibration_pulse"] is True


# --------------------------------------------------------------------------- caching, bad input


def test_ensure_cohort_builds_once_and_reuses(small_cfg: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**small_cfg, "images": False, "groups": {"normal": 3, "hypokalemia": 2}}
    folder = ensure_cohort(OmegaConf.create(cfg), tmp_path, progress=False)
    assert folder == tmp_path / f"cohort-{config_hash(cohort_config(cfg))}"
    assert (folder / "beats" / "manifest.csv").is_file()
    stamp = (folder / "cohort.json").stat().st_mtime_ns
    assert ensure_cohort(cfg, tmp_path, progress=False) == folder
    assert (folder / "cohort.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp leftovers


def test_build_refuses_a_different_cohort_unless_overwrite(
    small_cfg: dict[str, Any], tmp_path: Path
) -> None:
    cfg = {**small_cfg, "images": False, "groups": {"normal": 2}}
    out = build_cohort(cfg, tmp_path / "c", progress=False)
    before = (out / "patients.csv").read_bytes()
    assert build_cohort(cfg, out, progress=False) == out  # same cohort: reused
    changed = {**cfg, "seed": 99}
    with pytest.raises(EcgmlError, match="different cohort"):
        build_cohort(changed, out, progress=False)
    assert (out / "patients.csv").read_bytes() == before
    build_cohort(changed, out, overwrite=True, progress=False)
    assert (out / "patients.csv").read_bytes() != before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"groups": {"normal": -3}}, "negative patient count"),
        ({"groups": {"hypercalcemia": 3}}, "unknown group"),
        ({"baseline.heart_rate_bpm": [0, 80]}, "impossible"),
        ({"render.dpi": [0, 200]}, "impossible"),
        ({"scale": 0}, "must be > 0"),
        ({"beats_per_patient": [3, 2]}, "exceeds"),
        ({"render.distortions.blur_sigma.p": 1.5}, "probability"),
    ],
)
def test_bad_config_is_one_actionable_error(change: dict[str, Any], message: str) -> None:
    cfg = default_cfg()
    for dotted, value in change.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    with pytest.raises(EcgmlError, match=message) as err:
        cohort_config(cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith("cohort.")


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecgml.synth", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _run_cli("out=c", "groups.normal=-1", "hydra.run.dir=h", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "negative patient count" in lines[0]
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_cli_refuses_a_folder_with_other_content(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    result = _run_cli(
        "out=c", "groups={normal: 2}", "images=false", "hydra.run.dir=h", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "overwrite=true" in result.stderr
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"
