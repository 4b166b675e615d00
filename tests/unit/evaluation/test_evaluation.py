"""Metrics, CIs, the patient-level bootstrap and thresholds, checked against reference
implementations (statsmodels, scikit-learn)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)
from statsmodels.stats.proportion import proportion_confint

from ecgml.errors import EcgmlError
from ecgml.evaluation import (
    METRICS,
    BootstrapPlan,
    bootstrap_auroc,
    bootstrap_confusion,
    bootstrap_metrics,
    bootstrap_roc_band,
    choose_threshold,
    compute_metrics,
    patient_bootstrap_indices,
    percentile_interval,
    wilson_interval,
)
from ecgml.evaluation import bootstrap as bootstrap_module
from ecgml.evaluation.threshold import threshold_choice


def make_beats(
    n_patients: int = 60, beats_per_patient: int = 4, separation: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patient_ids, y_true, y_prob): a third of the patients positive, scores overlapping,
    rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], beats_per_patient)
    labels = np.repeat((np.arange(n_patients) % 3 == 0).astype(int), beats_per_patient)
    patient_effect = np.repeat(rng.normal(0, 0.7, n_patients), beats_per_patient)
    logits = separation * (2 * labels - 1) + patient_effect + rng.normal(0, 0.5, labels.size)
    return patients, labels, np.round(1 / (1 + np.exp(-logits)), 2)


# --- Wilson intervals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "total", "level"),
    [(0, 10, 0.95), (10, 10, 0.95), (7, 20, 0.95), (34, 38, 0.95), (1, 3, 0.9), (500, 999, 0.99)],
)
def test_wilson_equals_statsmodels(successes: int, total: int, level: float) -> None:
    expected = proportion_confint(successes, total, alpha=1 - level, method="wilson")
    assert wilson_interval(successes, total, level) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_equals_statsmodels_property(case: tuple[int, int]) -> None:
    successes, total = case
    expected = proportion_confint(successes, total, alpha=0.05, method="wilson")
    low, high = wilson_interval(successes, total)
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= low <= successes / total <= high <= 1.0


def test_wilson_of_nothing_is_nan_and_bad_counts_fail() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(EcgmlError, match="successes"):
        wilson_interval(5, 3)
    with pytest.raises(EcgmlError, match="level"):
        wilson_interval(1, 3, level=95)


def test_percentile_interval_ignores_undefined_resamples(caplog: pytest.LogCaptureFixture) -> None:
    values = np.r_[np.arange(101, dtype=float), [np.nan] * 5]
    with caplog.at_level(logging.WARNING):
        assert percentile_interval(values, 0.9) == pytest.approx((5.0, 95.0))
    assert "undefined in 5 of 106" in caplog.text
    assert all(math.isnan(v) for v in percentile_interval(np.full(4, np.nan)))


# --- bootstrap plan ---------------------------------------------------------------------------


def test_plan_is_seeded_stratified_and_independent_of_row_order() -> None:
    ids, y, _ = make_beats()
    plan = patient_bootstrap_indices(ids, y, n_resamples=300, seed=3)
    again = patient_bootstrap_indices(ids, y, n_resamples=300, seed=3)
    np.testing.assert_array_equal(plan.counts, again.counts)
    assert not np.array_equal(plan.counts, patient_bootstrap_indices(ids, y, 300, seed=4).counts)
    order = np.random.default_rng(0).permutation(ids.size)
    shuffled = patient_bootstrap_indices(ids[order], y[order], n_resamples=300, seed=3)
    np.testing.assert_array_equal(plan.counts, shuffled.counts)
    # every resample draws exactly as many patients per stratum as the stratum holds
    for label in (0, 1):
        in_stratum = plan.strata == label
        assert (plan.counts[:, in_stratum].sum(axis=1) == in_stratum.sum()).all()
    assert plan.counts.shape == (300, 60)
    assert plan.strata.sum() == 20


def test_plan_rejects_patients_with_two_labels_and_unknown_patients() -> None:
    with pytest.raises(EcgmlError, match="'b' has beats labelled both"):
        patient_bootstrap_indices(["a", "b", "b"], [0, 0, 1], n_resamples=10)
    plan = patient_bootstrap_indices(["a", "b"], [0, 1], n_resamples=10)
    with pytest.raises(EcgmlError, match="'c' is not in the bootstrap plan"):
        plan.columns(["a", "c"])
    with pytest.raises(EcgmlError, match="n_bootstrap"):
        patient_bootstrap_indices(["a", "b"], [0, 1], n_resamples=0)


def identity_plan(plan: BootstrapPlan) -> BootstrapPlan:
    """A plan whose single resample is the original data."""
    ones = np.ones((1, plan.n_patients), dtype=np.int32)
    return BootstrapPlan(plan.patient_ids, plan.strata, ones, plan.seed)


def test_bootstrap_statistics_equal_sklearn_with_resample_weights() -> None:
    ids, y, prob = make_beats(n_patients=40, beats_per_patient=3)
    pred = (prob >= 0.5).astype(int)
    plan = patient_bootstrap_indices(ids, y, n_resamples=25, seed=1)
    assert bootstrap_auroc(identity_plan(plan), ids, y, prob)[0] == pytest.approx(
        roc_auc_score(y, prob), abs=1e-12
    )
    aurocs = bootstrap_auroc(plan, ids, y, prob)
    dists = bootstrap_metrics(plan, ids, y, prob, pred)
    counts = bootstrap_confusion(plan, ids, y, pred)
    for r in range(plan.n_resamples):
        weights = plan.counts[r][plan.columns(ids)]
        assert aurocs[r] == pytest.approx(roc_auc_score(y, prob, sample_weight=weights), abs=1e-12)
        tn, fp, fn, tp = confusion_matrix(y, pred, sample_weight=weights).ravel()
        assert (counts["tp"][r], counts["fp"][r], counts["tn"][r], counts["fn"][r]) == (
            tp,
            fp,
            tn,
            fn,
        )
        assert dists["f1"][r] == pytest.approx(f1_score(y, pred, sample_weight=weights))
        assert dists["mcc"][r] == pytest.approx(matthews_corrcoef(y, pred, sample_weight=weights))


def test_bootstrap_chunking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    ids, y, prob = make_beats(n_patients=30)
    plan = patient_bootstrap_indices(ids, y, n_resamples=50, seed=2)
    whole = bootstrap_auroc(plan, ids, y, prob)
    monkeypatch.setattr(bootstrap_module, "_MAX_CHUNK_ELEMENTS", 7 * ids.size)
    np.testing.assert_array_equal(bootstrap_auroc(plan, ids, y, prob), whole)


def auroc_ci_width(ids: np.ndarray, y: np.ndarray, prob: np.ndarray, seed: int = 0) -> float:
    m = compute_metrics(y, prob, ids, threshold=0.5, n_bootstrap=400, seed=seed)
    return m["auroc_ci_high"] - m["auroc_ci_low"]


def test_bootstrap_ci_narrows_as_patients_grow() -> None:
    small = auroc_ci_width(*make_beats(n_patients=30, separation=0.6))
    large = auroc_ci_width(*make_beats(n_patients=480, separation=0.6))
    assert large < 0.5 * small


def test_bootstrap_resamples_patients_not_beats() -> None:
    """One positive patient contributes 100 near-identical, poorly ranked beats: resampling
    beats treats them as 100 independent observations and understates the uncertainty."""
    rng = np.random.default_rng(5)
    n_small = 30
    ids = [f"n{i}" for i in range(n_small) for _ in range(2)]
    ids += [f"q{i}" for i in range(n_small) for _ in range(2)] + ["big"] * 100
    y = np.r_[np.zeros(2 * n_small), np.ones(2 * n_small + 100)].astype(int)
    prob = np.r_[
        rng.uniform(0.0, 0.7, 2 * n_small),
        rng.uniform(0.3, 1.0, 2 * n_small),
        0.2 + rng.normal(0, 1e-4, 100),
    ]
    ids = np.asarray(ids)
    patient_width = auroc_ci_width(ids, y, prob)
    beat_ids = np.array([f"beat{i}" for i in range(ids.size)])
    beat_width = auroc_ci_width(beat_ids, y, prob)
    assert patient_width > 1.5 * beat_width


def test_roc_band_brackets_the_curve_loosely() -> None:
    ids, y, prob = make_beats(n_patients=90)
    plan = patient_bootstrap_indices(ids, y, n_resamples=200, seed=0)
    grid, low, high = bootstrap_roc_band(plan, ids, y, prob)
    assert grid.shape == low.shape == high.shape == (101,)
    assert (low <= high).all() and low[-1] == pytest.approx(1.0)
    assert (np.diff(low) >= -1e-12).all()


# --- point metrics and CIs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def beats() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return make_beats(n_patients=90, beats_per_patient=3)


def test_compute_metrics_equals_sklearn_and_statsmodels(beats) -> None:
    ids, y, prob = beats
    threshold = 0.45
    pred = (prob >= threshold).astype(int)
    m = compute_metrics(y, prob, ids, threshold, n_bootstrap=200, seed=0)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["auroc"] == pytest.approx(roc_auc_score(y, prob))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["npv"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred))
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert (m["n_beats"], m["n_patients"], m["n_positive"]) == (270, 90, 90)
    wilson = proportion_confint(tp, tp + fn, alpha=0.05, method="wilson")
    assert (m["sensitivity_ci_low"], m["sensitivity_ci_high"]) == pytest.approx(wilson)
    for name in METRICS:
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"], name
    assert set(m) == {f"{n}{s}" for n in METRICS for s in ("", "_ci_low", "_ci_high")} | {
        "n_beats",
        "n_patients",
        "n_positive",
        "n_negative",
        "tp",
        "fp",
        "tn",
        "fn",
    }


def test_compute_metrics_is_reproducible_and_reuses_a_plan(beats) -> None:
    ids, y, prob = beats
    first = compute_metrics(y, prob, ids, 0.5, n_bootstrap=150, seed=7)
    assert compute_metrics(y, prob, ids, 0.5, n_bootstrap=150, seed=7) == first
    assert compute_metrics(y, prob, ids, 0.5, n_bootstrap=150, seed=8) != first
    plan = patient_bootstrap_indices(ids, y, n_resamples=150, seed=7)
    assert compute_metrics(y, prob, ids, 0.5, plan=plan, n_bootstrap=5, seed=1) == first


def nan_metrics(m: dict[str, float]) -> set[str]:
    return {name for name in METRICS if math.isnan(m[name])}


def test_one_class_only_gives_nan_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    ids, y = np.array(["a", "a", "b"]), np.zeros(3, dtype=int)
    with caplog.at_level(logging.WARNING):
        m = compute_metrics(y, [0.1, 0.7, 0.2], ids, 0.5, n_bootstrap=20, context="test")
    assert nan_metrics(m) == {"auroc", "sensitivity", "mcc"}
    assert m["accuracy"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    assert math.isnan(m["auroc_ci_low"]) and math.isnan(m["mcc_ci_high"])
    assert "test: auroc is undefined (NaN): one class only" in caplog.text


def test_no_positive_predictions_give_nan_precision_and_mcc(caplog) -> None:
    ids, y, prob = make_beats(n_patients=12, beats_per_patient=2)
    with caplog.at_level(logging.WARNING):
        m = compute_metrics(y, prob, ids, threshold=1.0 + 1e-9, n_bootstrap=30)
    assert nan_metrics(m) == {"precision", "mcc"}
    assert m["f1"] == 0.0 and m["sensitivity"] == 0.0 and m["specificity"] == 1.0
    assert "precision is undefined (NaN): nothing predicted positive" in caplog.text


def test_empty_predictions_give_nan_not_a_crash() -> None:
    m = compute_metrics([], [], [], 0.5, n_bootstrap=10)
    assert nan_metrics(m) == set(METRICS) and m["n_beats"] == 0


@pytest.mark.parametrize(
    ("y_true", "y_prob", "ids", "message"),
    [
        ([0, 2], [0.1, 0.2], ["a", "b"], "0/1 labels"),
        ([0, 1], [0.1, np.nan], ["a", "b"], "finite probabilities"),
        ([0, 1], [0.1, 3.0], ["a", "b"], "not logits"),
        ([0, 1], [0.1, 0.2, 0.3], ["a", "b"], "differ in length"),
    ],
)
def test_bad_inputs_are_user_errors(y_true, y_prob, ids, message) -> None:
    with pytest.raises(EcgmlError, match=message):
        compute_metrics(y_true, y_prob, ids, 0.5, n_bootstrap=10)


# --- thresholds -------------------------------------------------------------------------------


def test_threshold_rules() -> None:
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    separable = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    assert choose_threshold(y, separable, "fixed", value=0.3) == 0.3
    youden = choose_threshold(y, separable, "youden")
    assert 0.4 < youden <= 0.6
    np.testing.assert_array_equal(separable >= youden, y)

    _, y_noisy, prob = make_beats(n_patients=150, beats_per_patient=2, separation=0.5)
    for target in (0.5, 0.8, 0.95):
        t = choose_threshold(y_noisy, prob, "sensitivity", target_sensitivity=target)
        reached = recall_score(y_noisy, prob >= t)
        assert reached >= target
        higher = prob[prob > t].min()  # the next stricter threshold misses the target
        assert recall_score(y_noisy, prob >= higher) < target


def test_binormal_rule_is_where_the_two_fitted_normals_cross() -> None:
    rng = np.random.default_rng(1)
    negative, positive = rng.normal(-1.0, 1.0, 3000), rng.normal(1.5, 1.0, 1000)
    y = np.r_[np.zeros(3000), np.ones(1000)].astype(int)
    prob = expit(np.r_[negative, positive])
    t = choose_threshold(y, prob, "binormal")
    m0, m1 = negative.mean(), positive.mean()
    s0, s1 = negative.std(ddof=1), positive.std(ddof=1)
    grid = np.linspace(-5, 5, 200001)  # J = Φ((m1−z)/s1) − Φ((m0−z)/s0), maximized directly
    best = grid[np.argmax(norm.cdf((m1 - grid) / s1) - norm.cdf((m0 - grid) / s0))]
    assert logit(t) == pytest.approx(best, abs=2e-3)
    assert logit(t) == pytest.approx(0.25, abs=0.15)  # equal SDs: halfway between the means
    # one positive row: no normal to fit, the empirical Youden point instead
    assert choose_threshold([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], "binormal") == choose_threshold(
        [0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], "youden"
    )


def test_a_threshold_resting_on_few_positive_patients_is_flagged_with_its_interval() -> None:
    ids, y, prob = make_beats(n_patients=18, beats_per_patient=3, separation=1.0)
    val = pd.DataFrame({"patient_id": ids, "y_true": y, "y_prob": prob})
    t = choose_threshold(y, prob, "binormal")
    choice = threshold_choice(val, t, "binormal", seed=0)
    assert choice.positive_patients == 6  # a third of 18
    assert choice.low <= t <= choice.high
    text = choice.describe(min_positives=20)
    assert text.startswith(f"threshold {t:.3f} (binormal on validation, 95% interval")
    assert "chosen on 6 positive validation patients (fewer than 20)" in text
    assert "fewer than" not in choice.describe(min_positives=5)
    fixed = threshold_choice(val, 0.5, "fixed")
    assert fixed.describe(5) == "threshold 0.500 (fixed on validation)"


def test_threshold_rule_errors_and_fallback(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(EcgmlError, match="rule='median' is unknown"):
        choose_threshold([0, 1], [0.2, 0.8], "median")
    with pytest.raises(EcgmlError, match="target_sensitivity"):
        choose_threshold([0, 1], [0.2, 0.8], "sensitivity", target_sensitivity=0)
    with caplog.at_level(logging.WARNING):
        assert choose_threshold([1, 1], [0.2, 0.8], "youden", value=0.4) == 0.4
    assert "needs both classes" in caplog.text


def test_youden_on_an_inverted_model_stays_finite() -> None:
    t = choose_threshold([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], "youden")
    assert math.isfinite(t) and t > 0.9
