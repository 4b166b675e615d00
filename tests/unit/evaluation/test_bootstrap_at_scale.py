"""The fast paths of the bootstrap give today's numbers: the plan drawn in blocks equals the one
drawn at once, the confusion counts through float32 BLAS equal integer sums, and the calibration
fits started from the full sample's fit equal the fits from the null model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from ecgml.evaluation import bootstrap
from ecgml.evaluation.bootstrap import bootstrap_confusion, patient_bootstrap_indices
from ecgml.evaluation.calibration import _weighted_metrics, bootstrap_calibration_metrics


def one_shot_counts(strata: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """The plan as it was first written: every stratum's draws at once."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, strata.size), dtype=np.int32)
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        draws = rng.integers(0, members.size, size=(n_resamples, members.size))
        for r in range(n_resamples):
            counts[r, members] = np.bincount(draws[r], minlength=members.size)
    return counts


@pytest.fixture()
def cohort() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n_patients, beats = 700, 2
    y = np.repeat((rng.random(n_patients) < 0.3).astype(int), beats)
    ids = np.repeat([f"p{k:04d}" for k in range(n_patients)], beats)
    p = expit(0.6 * np.where(y > 0, rng.normal(1.2, 1, y.size), rng.normal(0, 1, y.size)) - 0.4)
    return ids, y, p


def test_a_plan_drawn_in_blocks_equals_one_drawn_at_once(
    cohort: tuple[np.ndarray, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, y, _ = cohort
    monkeypatch.setattr(bootstrap, "_DRAWS_PER_BLOCK", 5000)  # several blocks per stratum
    bootstrap._PLAN_CACHE.clear()
    plan = patient_bootstrap_indices(ids, y, n_resamples=64, seed=11)
    np.testing.assert_array_equal(plan.counts, one_shot_counts(plan.strata, 64, 11))
    again = patient_bootstrap_indices(ids, y, n_resamples=64, seed=11)
    assert again is plan and not plan.counts.flags.writeable  # reused, and read-only
    assert patient_bootstrap_indices(ids, y, n_resamples=64, seed=12) is not plan


def test_confusion_counts_equal_integer_sums(
    cohort: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ids, y, p = cohort
    plan = patient_bootstrap_indices(ids, y, n_resamples=300, seed=0)
    pred = (p > 0.4).astype(int)
    got = bootstrap_confusion(plan, ids, y, pred)
    w = plan.counts[:, plan.columns(ids)].astype(np.int64)
    assert got["tp"].dtype == np.int64
    np.testing.assert_array_equal(got["tp"], w @ ((y == 1) & (pred == 1)))
    np.testing.assert_array_equal(got["tn"], w @ ((y == 0) & (pred == 0)))


def test_calibration_bootstrap_equals_the_fits_from_the_null_model(
    cohort: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ids, y, p = cohort
    plan = patient_bootstrap_indices(ids, y, n_resamples=400, seed=5)
    fast = bootstrap_calibration_metrics(plan, ids, y, p)
    w = plan.counts[:, plan.columns(ids)].astype(float)
    reference = _weighted_metrics(w, y, p, 15)
    for name, values in reference.items():
        assert np.isfinite(values).all()
        np.testing.assert_allclose(fast[name], values, rtol=1e-9, atol=1e-12, err_msg=name)
