"""Serum intervals: conformal coverage, severity probabilities, the evaluation's columns, tables
and keys, per-fold calibration, the pre-run check and the logged model's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ecgml.data.tasks import task_spec
from ecgml.errors import EcgmlError
from ecgml.evaluation.serum_intervals import (
    SerumIntervals,
    band_coverage,
    min_calibration_patients,
)
from ecgml.evaluation.tasks import PATIENT_PREDICTIONS, evaluate_regression, regression_metric_keys


def test_the_interval_covers_new_patients_at_its_level() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(4.3, 0.6, 400)
    system = SerumIntervals.calibrate("potassium", truth, truth + rng.normal(0, 0.4, 400), 0.9, "x")
    new = rng.normal(4.3, 0.6, 20_000)
    estimate = new + rng.normal(0, 0.4, new.size)
    low, high = system.interval(estimate)
    inside = ((new >= low) & (new <= high)).mean()
    assert 0.88 < inside < 0.92
    assert np.allclose(high - low, 2 * norm.ppf(0.95) * 0.4, rtol=0.15)  # a 0.4 residual SD


def test_severity_probabilities_follow_the_predictive_distribution() -> None:
    residuals = norm.ppf((np.arange(1, 1000) / 1000), scale=0.5)  # an exact N(0, 0.5) sample
    system = SerumIntervals("potassium", 0.9, residuals)
    estimates = np.array([5.0, 5.5, 6.0, 6.5])
    p = system.probabilities(estimates)
    assert list(p) == ["p_ge_6.0", "p_ge_6.5", "p_lt_3.0"]
    np.testing.assert_allclose(p["p_ge_6.0"], norm.sf(6.0, estimates, 0.5), atol=0.01)
    np.testing.assert_allclose(p["p_lt_3.0"], norm.cdf(3.0, estimates, 0.5), atol=0.01)
    assert (np.diff(p["p_ge_6.0"]) > 0).all() and (p["p_ge_6.5"] <= p["p_ge_6.0"]).all()
    assert list(SerumIntervals("sodium", 0.9, residuals).probabilities(estimates)) == ["p_lt_125"]


def test_too_few_calibration_patients_is_one_line_with_the_minimum() -> None:
    assert min_calibration_patients(0.9) == 19
    assert min_calibration_patients(0.8) == 9
    with pytest.raises(EcgmlError, match=r"18 calibration patients .* needs at least 19"):
        SerumIntervals.calibrate("potassium", np.zeros(18), np.zeros(18), 0.9, "the validation")
    assert SerumIntervals.calibrate("potassium", np.zeros(19), np.zeros(19), 0.9, "v")


def test_the_stored_numbers_rebuild_the_same_intervals_and_damage_is_one_line() -> None:
    rng = np.random.default_rng(1)
    system = SerumIntervals.calibrate(
        "sodium", rng.normal(138, 4, 60), np.full(60, 138.0), 0.8, "v"
    )
    data = system.to_dict()
    assert set(data) == {"method", "serum", "level", "calibration", "residuals"}
    again = SerumIntervals.from_dict(data, "models:/x")
    estimates = np.array([125.0, 140.0])
    np.testing.assert_array_equal(again.interval(estimates), system.interval(estimates))
    with pytest.raises(EcgmlError, match="models:/x: the model's serum interval is damaged"):
        SerumIntervals.from_dict({**data, "residuals": ["a"]}, "models:/x")
    with pytest.raises(EcgmlError, match="damaged"):
        SerumIntervals.from_dict({**data, "residuals": data["residuals"][:5]}, "models:/x")


def test_a_band_under_30_patients_is_too_small() -> None:
    truth = np.r_[np.full(40, 4.2), np.full(5, 6.4)]
    found = band_coverage("potassium", truth, truth - 0.1, truth + 0.1)
    assert found["3.5-5.0"] == (1.0, 40)
    assert np.isnan(found["ge6.0"][0]) and found["ge6.0"][1] == 5


def _serum_frame(n_patients: int, seed: int, noise: float = 0.4, fold: str | None = None):
    rng = np.random.default_rng(seed)
    truth = np.r_[rng.normal(4.3, 0.4, n_patients - 40), rng.normal(6.4, 0.3, 40)]
    rows = []
    for k, value in enumerate(truth):
        split = "val" if k % 2 else "test"
        group = "hyperkalemia" if value > 5.0 else ("hypokalemia" if value < 3.5 else "normal")
        for b in range(2):  # two beats per patient
            rows.append(
                {
                    "patient_id": f"{fold or ''}P{k}",
                    "beat_id": f"{fold or ''}P{k}_{b}",
                    "split": split,
                    "group": group,
                    "y_true": value,
                    "y_pred": value + rng.normal(0, noise),
                    **({"fold": fold} if fold else {}),
                }
            )
    return pd.DataFrame(rows)


def test_the_evaluation_writes_intervals_tables_and_exactly_its_keys(
    compose_cfg, tmp_path: Path
) -> None:
    cfg = compose_cfg("task=potassium", "evaluation.n_bootstrap=200")
    frame = _serum_frame(300, 0)
    serum = task_spec(cfg).serum
    found = evaluate_regression(frame, cfg.evaluation, serum, tmp_path, "k")
    assert set(found.metrics) == set(regression_metric_keys(serum))
    columns = ["y_low", "y_high", "p_ge_6.0", "p_ge_6.5", "p_lt_3.0"]
    assert set(columns) <= set(found.predictions.columns)
    patients = pd.read_csv(tmp_path / PATIENT_PREDICTIONS)
    assert list(patients.columns[:5]) == ["patient_id", "split", "y_true", "y_pred", "group"]
    assert set(columns) <= set(patients.columns) and len(patients) == 300
    test = patients[patients["split"] == "test"]
    inside = ((test["y_true"] >= test["y_low"]) & (test["y_true"] <= test["y_high"])).mean()
    assert found.metrics["test_patient/interval_coverage"] == pytest.approx(inside)
    assert 0.8 < inside <= 1.0
    assert np.isnan(found.metrics["test_patient/interval_coverage_ge6.0"])  # 20: too small
    assert found.metrics["test_patient/auroc_k_ge_6.0"] > 0.95
    assert found.metrics["test_patient/auroc_k_ge_6.0_ci_low"] > 0.5
    assert found.intervals is not None and found.intervals.residuals.size == 150
    assert "too small (< 30)" in (tmp_path / "results.md").read_text()


def test_a_pooled_cross_validation_calibrates_each_fold_on_its_own(compose_cfg) -> None:
    cfg = compose_cfg("task=potassium", "evaluation.n_bootstrap=0")
    pooled = pd.concat(
        [_serum_frame(200, 1, 0.2, "a"), _serum_frame(200, 2, 0.8, "b")], ignore_index=True
    )
    found = evaluate_regression(pooled, cfg.evaluation, task_spec(cfg).serum)
    width = (found.predictions["y_high"] - found.predictions["y_low"]).groupby(pooled["fold"])
    assert width.mean()["b"] > 3 * width.mean()["a"]  # each fold's own residuals
    assert found.intervals is None  # no single system: nothing for a logged model


def test_a_serum_run_refuses_too_few_validation_patients_before_it_opens(compose_cfg) -> None:
    from ecgml.tasks import run_task

    cfg = compose_cfg("task=potassium")
    meta = pd.DataFrame(
        {"patient_id": [f"P{k}" for k in range(30)], "split": ["val"] * 10 + ["train"] * 20}
    )
    with pytest.raises(EcgmlError, match=r"10 patients .* needs at least 19"):
        run_task(cfg).check_table(cfg, meta)
    cfg.evaluation.interval_level = 0.8  # 9 are enough for 80 %
    run_task(cfg).check_table(cfg, meta)


def test_predict_answers_each_entry_and_beat_with_the_logged_interval() -> None:
    """``ecgml.predict``'s JSON: the entry's mean estimate and each beat's, each with its
    interval and severity probabilities; a model without an interval answers the value only."""
    import torch

    from ecgml.inference.inputs import BeatInput
    from ecgml.inference.score import entry_result
    from ecgml.modelfile.loaded import LoadedModel

    system = SerumIntervals("potassium", 0.9, np.linspace(-0.5, 0.5, 41))
    common = {"model": torch.nn.Identity(), "seq_len": 4, "fs": 500.0, "r_index": 1}
    with_interval = LoadedModel(
        "potassium", **common, align="r", threshold=np.nan, uri="m", interval=system
    )
    entry = BeatInput(
        "x.csv",
        "P1",
        beats=[np.zeros(4)] * 2,
        r_indices=[1, 1],
        beat_ids=["b0", "b1"],
        r_peak_s=[0.5, 1.5],
    )
    result = entry_result(
        entry, {}, {}, {"potassium": np.array([5.8, 6.2])}, {"potassium": with_interval}
    )
    low, high = system.interval(np.array([6.0]))
    assert result["potassium_mmol_l"] == pytest.approx(6.0)
    assert result["potassium_mmol_l_low"] == pytest.approx(low[0])
    assert result["potassium_mmol_l_high"] == pytest.approx(high[0])
    assert 0.4 < result["potassium_p_ge_6.0"] < 0.6
    beat = result["per_beat"][1]
    assert beat["potassium_mmol_l"] == pytest.approx(6.2)
    assert beat["potassium_p_ge_6.0"] > result["potassium_p_ge_6.0"]
    plain = LoadedModel("potassium", **common, align="r", threshold=np.nan, uri="m")
    result = entry_result(entry, {}, {}, {"potassium": np.array([5.8, 6.2])}, {"potassium": plain})
    assert [k for k in result if k.startswith("potassium")] == ["potassium_mmol_l"]
