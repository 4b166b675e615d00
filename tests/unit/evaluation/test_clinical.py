"""Calibration, clinical utility and subgroups: values checked against hand computations and
the reference libraries (statsmodels, scikit-learn, torchmetrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss, roc_auc_score
from torchmetrics.classification import BinaryCalibrationError

from ecgml.errors import EcgmlError
from ecgml.evaluation import ClinicalSettings, evaluate_predictions, patient_bootstrap_indices
from ecgml.evaluation.calibration import (
    Calibrator,
    bootstrap_calibration_metrics,
    calibration_metrics,
    fit_calibrator,
    plot_reliability,
)
from ecgml.evaluation.metrics import compute_metrics
from ecgml.evaluation.subgroups import heterogeneity_test, resolve_subgroup_columns, subgroup_table
from ecgml.evaluation.utility import (
    bootstrap_net_benefit,
    check_prevalences,
    decision_curve,
    net_benefit,
    net_benefit_treat_all,
    ppv_npv_at_prevalence,
    prevalence_metrics,
)


def calibrated_scores(n: int, seed: int, overconfidence: float = 1.0):
    """(y, p): y ~ Bernoulli(true p); the model reports sigmoid(overconfidence · logit(p))."""
    rng = np.random.default_rng(seed)
    true_p = expit(rng.normal(0.0, 1.5, n))
    y = (rng.random(n) < true_p).astype(int)
    return y, expit(overconfidence * logit(true_p))


def test_slope_and_intercept_are_one_and_zero_when_calibrated_and_off_when_overconfident():
    y, p = calibrated_scores(20_000, seed=0)
    good = calibration_metrics(y, p)
    assert good["calibration_slope"] == pytest.approx(1.0, abs=0.08)
    assert good["calibration_intercept"] == pytest.approx(0.0, abs=0.06)
    y, p = calibrated_scores(20_000, seed=1, overconfidence=3.0)
    assert calibration_metrics(y, p)["calibration_slope"] < 0.45
    halved = calibration_metrics(*calibrated_scores(20_000, seed=2)[:1], p / 2)
    assert halved["calibration_intercept"] > 0.3


def test_metrics_equal_the_reference_libraries():
    y, p = calibrated_scores(3_000, seed=3, overconfidence=2.0)
    ours = calibration_metrics(y, p)
    assert ours["brier"] == pytest.approx(brier_score_loss(y, p))
    ece = BinaryCalibrationError(n_bins=15, norm="l1")(torch.tensor(p), torch.tensor(y))
    assert ours["ece"] == pytest.approx(float(ece), abs=1e-6)
    z = logit(np.clip(p, 1e-6, 1 - 1e-6))
    glm = sm.GLM(y, sm.add_constant(z), family=sm.families.Binomial()).fit()
    assert ours["calibration_slope"] == pytest.approx(glm.params[1], abs=1e-5)
    offset = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=z).fit()
    assert ours["calibration_intercept"] == pytest.approx(offset.params[0], abs=1e-5)


def test_bootstrap_resample_equals_the_expanded_resample():
    y, p = calibrated_scores(400, seed=4, overconfidence=2.0)
    ids = np.repeat(np.arange(200), 2).astype(str)
    y = np.repeat(y[:200], 2)  # a patient has one label
    plan = patient_bootstrap_indices(ids, y, 5, seed=0)
    spread = bootstrap_calibration_metrics(plan, ids, y, p)
    take = np.repeat(np.arange(y.size), plan.counts[0][plan.columns(ids)])
    expanded = calibration_metrics(y[take], p[take])
    for name, value in expanded.items():
        assert spread[name][0] == pytest.approx(value, abs=1e-6), name


def test_temperature_lowers_ece_on_an_overconfident_model_and_keeps_auroc():
    y_val, p_val = calibrated_scores(2_000, seed=5, overconfidence=3.0)
    y_test, p_test = calibrated_scores(2_000, seed=6, overconfidence=3.0)
    calibrator = fit_calibrator(y_val, p_val, "temperature")
    assert calibrator.params["temperature"] == pytest.approx(3.0, rel=0.15)
    recalibrated = calibrator.apply(p_test)
    before, after = calibration_metrics(y_test, p_test), calibration_metrics(y_test, recalibrated)
    assert after["ece"] < 0.5 * before["ece"]
    assert after["calibration_slope"] == pytest.approx(1.0, abs=0.15)
    assert roc_auc_score(y_test, recalibrated) == pytest.approx(roc_auc_score(y_test, p_test))


def test_platt_recovers_the_generating_map_and_calibrators_round_trip_through_json():
    y, p = calibrated_scores(20_000, seed=7, overconfidence=2.0)
    platt = fit_calibrator(y, p, "platt")
    assert platt.params["a"] == pytest.approx(0.5, abs=0.05)
    assert platt.params["b"] == pytest.approx(0.0, abs=0.05)
    for method in ("temperature", "platt", "isotonic"):
        calibrator = fit_calibrator(y[:1500], p[:1500], method)
        again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
        np.testing.assert_allclose(again.apply(p), calibrator.apply(p))
    assert Calibrator.from_dict(None).method == "none"
    with pytest.raises(EcgmlError, match="not one of"):
        Calibrator.from_dict({"method": "magic"})


def test_one_class_validation_falls_back_to_none_and_isotonic_warns_when_small(caplog):
    calibrator = fit_calibrator(np.zeros(57, int), np.linspace(0.1, 0.9, 57), "temperature")
    assert calibrator.method == "none" and "only one class" in calibrator.note
    np.testing.assert_array_equal(calibrator.apply([0.2, 0.7]), [0.2, 0.7])
    y, p = calibrated_scores(200, seed=8)
    fit_calibrator(y, p, "isotonic")
    assert "overfits" in caplog.text


def test_net_benefit_equals_a_hand_computation():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.1, 0.05, 0.5])
    # pt=0.25: positives p>=.25 -> TP 3 (0.9,.6,.3), FP 3 (.7,.4,.5): 3/10 - 3/10*(1/3) = 0.2
    # pt=0.5: TP 2, FP 2 (.7,.5): 2/10 - 2/10*1 = 0.0
    # pt=0.8: TP 1, FP 0: 1/10 = 0.1
    np.testing.assert_allclose(net_benefit(y, p, [0.25, 0.5, 0.8]), [0.2, 0.0, 0.1])
    # treat all: 0.3 - 0.7 * pt/(1-pt)
    np.testing.assert_allclose(net_benefit_treat_all(y, [0.25, 0.5]), [0.3 - 0.7 / 3, -0.4])
    perfect = net_benefit(y, y.astype(float), [0.1, 0.5, 0.9])
    np.testing.assert_allclose(perfect, 0.3)


def test_bootstrap_net_benefit_equals_the_expanded_resample_and_the_curve_has_a_band():
    y, p = calibrated_scores(300, seed=9)
    ids = np.arange(300).astype(str)
    plan = patient_bootstrap_indices(ids, y, 20, seed=1)
    thresholds = [0.1, 0.3, 0.6]
    spread = bootstrap_net_benefit(plan, ids, y, p, thresholds)
    take = np.repeat(np.arange(300), plan.counts[3][plan.columns(ids)])
    np.testing.assert_allclose(spread[3], net_benefit(y[take], p[take], thresholds))
    curve = decision_curve(y, p, patient_ids=ids, plan=plan)
    inside = curve.net_benefit_model.between(
        curve.net_benefit_model_ci_low - 1e-12, curve.net_benefit_model_ci_high + 1e-12
    )
    assert inside.mean() > 0.9 and curve.useful.any()


def test_prevalence_adjusted_ppv_is_bayes_rule():
    ppv, npv = ppv_npv_at_prevalence(0.8, 0.8, 0.01)
    assert ppv == pytest.approx(0.8 * 0.01 / (0.8 * 0.01 + 0.2 * 0.99))  # 3.9%: the Mayo PPV
    assert npv == pytest.approx(0.8 * 0.99 / (0.8 * 0.99 + 0.2 * 0.01))
    y = np.array([1] * 40 + [0] * 60)
    pred = np.array([1] * 30 + [0] * 10 + [1] * 6 + [0] * 54)
    ids = np.arange(100).astype(str)
    plan = patient_bootstrap_indices(ids, y, 200, seed=0)
    at_sample = prevalence_metrics(plan, ids, y, pred, [0.4])
    assert at_sample["ppv_at_0.4"] == pytest.approx(30 / 36)  # the observed precision
    assert at_sample["npv_at_0.4"] == pytest.approx(54 / 64)
    assert (
        at_sample["ppv_at_0.4_ci_low"] < at_sample["ppv_at_0.4"] < at_sample["ppv_at_0.4_ci_high"]
    )
    wilson = prevalence_metrics(None, ids, y, pred, [0.01])
    assert wilson["ppv_at_0.01_ci_low"] < wilson["ppv_at_0.01"] < wilson["ppv_at_0.01_ci_high"]


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "abc"])
def test_bad_prevalence_is_one_line(bad):
    with pytest.raises(EcgmlError, match=r"is not in \(0, 1\)"):
        check_prevalences([0.05, bad])


def subgroup_frame(seed: int, score_works_in_b: bool, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for center in ("A", "B"):
        for i in range(n):
            y = int(rng.random() < 0.5)
            works = center == "A" or score_works_in_b
            z = (1.2 * (2 * y - 1) if works else 0.0) + rng.normal()
            rows.append(
                {
                    "patient_id": f"{center}{i}",
                    "y_true": y,
                    "y_prob": expit(z),
                    "center": center,
                    "y_pred": int(z > 0),
                }
            )
    return pd.DataFrame(rows)


def test_heterogeneity_test_finds_a_score_that_works_in_one_center_only():
    assert heterogeneity_test(subgroup_frame(0, score_works_in_b=False), "center")[1] < 0.01
    for seed in (1, 2):
        assert heterogeneity_test(subgroup_frame(seed, score_works_in_b=True), "center")[1] > 0.05
    frame = subgroup_frame(3, score_works_in_b=False)
    stat, _, dof, _ = heterogeneity_test(frame, "center")
    import statsmodels.formula.api as smf

    data = frame.assign(z=logit(frame.y_prob), g=frame.center, y=frame.y_true)
    full = smf.logit("y ~ z * C(g)", data).fit(disp=0)
    reduced = smf.logit("y ~ z + C(g)", data).fit(disp=0)
    assert stat == pytest.approx(2 * (full.llf - reduced.llf)) and dof == 1
    assert math.isnan(heterogeneity_test(frame.assign(center="A"), "center")[1])


def test_the_heterogeneity_test_scores_patients_as_evaluation_aggregate_says():
    """Two beats per patient: the second is noise, so the max of the two differs from the mean
    and the test's statistic follows ``aggregate`` (the logit of that patient score)."""
    frame = subgroup_frame(5, score_works_in_b=False)
    rng = np.random.default_rng(0)
    noise = frame.assign(y_prob=rng.uniform(0.01, 0.99, len(frame)))
    beats = pd.concat([frame, noise], ignore_index=True)
    import statsmodels.formula.api as smf

    for aggregate, how in (("mean", "mean"), ("max", "max")):
        stat, _, dof, _ = heterogeneity_test(beats, "center", aggregate=aggregate)
        patients = beats.groupby("patient_id").agg(
            y=("y_true", "first"), p=("y_prob", how), g=("center", "first")
        )
        data = patients.assign(z=logit(patients.p))
        full = smf.logit("y ~ z * C(g)", data).fit(disp=0)
        reduced = smf.logit("y ~ z + C(g)", data).fit(disp=0)
        assert stat == pytest.approx(2 * (full.llf - reduced.llf)) and dof == 1, aggregate
    mean_stat = heterogeneity_test(beats, "center")[0]
    assert mean_stat != pytest.approx(heterogeneity_test(beats, "center", aggregate="max")[0])


def test_small_cells_are_pooled_so_the_heterogeneity_test_runs():
    frame = subgroup_frame(0, score_works_in_b=False)
    # center B split into 60 centers of 5 patients: several have one class only
    b = frame["center"] == "B"
    frame.loc[b, "center"] = [f"B{i // 5}" for i in range(int(b.sum()))]
    _, p, _, note = heterogeneity_test(frame, "center")
    assert math.isnan(p) and "one class" in note  # unpooled: the fit is impossible
    _, p, dof, note = heterogeneity_test(frame, "center", min_patients=10)
    assert p < 0.01 and dof == 1 and "60 cells under 10 patients pooled" in note


def test_subgroup_cells_equal_a_direct_computation_and_small_cells_are_flagged():
    frame = subgroup_frame(4, score_works_in_b=True, n=60)
    frame.loc[frame.index[:5], "center"] = "C"  # a 5-patient cell
    table = subgroup_table(frame, ["center"], 0.5, n_bootstrap=50, seed=0)
    assert list(table.value) == ["A", "B", "C"]
    b = frame[frame.center == "B"]
    row = table.set_index("value").loc["B"]
    assert row.n_patients == len(b) and row.auroc == pytest.approx(
        roc_auc_score(b.y_true, b.y_prob)
    )
    direct = compute_metrics(b.y_true, b.y_prob, b.patient_id, 0.5, n_bootstrap=0)
    assert row.accuracy == pytest.approx(direct["accuracy"])
    assert list(table.small) == [False, False, True]
    with pytest.raises(EcgmlError, match="'site' is not in the predictions"):
        resolve_subgroup_columns(frame, ["site"])
    assert resolve_subgroup_columns(frame, None) == ["center"]


def test_evaluation_recalibrates_on_validation_and_reevaluation_does_not_stack(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        y, split = int(i % 2), ("val", "test")[i % 4 // 2]
        for b in range(2):
            z = 3.0 * ((2 * y - 1) * 0.8 + rng.normal())  # over-confident logits
            rows.append(
                {
                    "patient_id": f"p{i}",
                    "beat_id": f"p{i}b{b}",
                    "split": split,
                    "y_true": y,
                    "y_prob": float(expit(z)),
                    "device": "d1",
                }
            )
    predictions = pd.DataFrame(rows)
    metrics, out = evaluate_predictions(predictions, n_bootstrap=100, out_dir=tmp_path)
    assert metrics["test/ece"] < metrics["test/ece_raw"]
    assert metrics["test/calibration_slope_raw"] < 0.6 < metrics["test/calibration_slope"]
    np.testing.assert_array_equal(out.y_prob_raw, predictions.y_prob)
    np.testing.assert_array_equal(out.y_pred, (out.y_prob >= metrics["test/threshold"]))
    again, _ = evaluate_predictions(out, n_bootstrap=100)
    assert again == pytest.approx(metrics)
    none, _ = evaluate_predictions(
        predictions, n_bootstrap=100, clinical=ClinicalSettings(calibration="none")
    )
    assert none["test/ece"] == pytest.approx(metrics["test/ece_raw"])
    for name in ("decision_curve.csv", "operating_points.csv", "subgroups.csv"):
        assert (tmp_path / name).stat().st_size > 0
    points = pd.read_csv(tmp_path / "operating_points.csv")
    assert list(points.target_sensitivity) == [0.9, 0.95]
    assert "## Calibration" in (tmp_path / "results.md").read_text()


def test_reliability_plot_saves_also_with_one_class(tmp_path):
    y, p = calibrated_scores(300, seed=10, overconfidence=2.0)
    ids = np.arange(300).astype(str)
    fig = plot_reliability(y, p, fit_calibrator(y, p).apply(p), ids, n_band_resamples=20)
    fig.savefig(tmp_path / "a.png")
    one = plot_reliability(
        np.zeros(10, int), np.linspace(0, 1, 10), np.linspace(0, 1, 10), np.arange(10).astype(str)
    )
    assert "one class" in one.axes[0].texts[0].get_text()


def test_clinical_table_formats_calibration_and_prevalence_columns():
    from ecgml.evaluation.report import format_clinical_table

    metrics = {
        "test/ece_raw": 0.12,
        "test/ece": 0.05,
        "test/ece_ci_low": 0.03,
        "test/ece_ci_high": 0.08,
        "test/ppv_at_0.01": 0.039,
    }
    markdown, frame = format_clinical_table({"Hyperkalemia": metrics})
    assert "| Hyperkalemia | 0.120 | 0.050 (0.030–0.080) |" in markdown
    assert "| 3.9% |" in markdown and "PPV at 1%" in markdown
    assert frame.loc[0, "ece"] == 0.05 and math.isnan(frame.loc[0, "brier"])


def test_separated_scores_have_no_slope_however_few_and_close_they_are() -> None:
    """Perfect separation leaves the slope undefined even where Newton's steps stay small
    (two beats 0.01 apart); one beat on the wrong side makes it defined again."""
    from ecgml.evaluation.calibration import perfectly_separated

    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.30, 0.40, 0.495, 0.505, 0.60, 0.70])
    assert perfectly_separated(y, p)
    assert np.isnan(calibration_metrics(y, p)["calibration_slope"])
    crossed = p.copy()
    crossed[[2, 3]] = crossed[[3, 2]]
    assert not perfectly_separated(y, crossed)
    assert np.isfinite(calibration_metrics(y, crossed)["calibration_slope"])
