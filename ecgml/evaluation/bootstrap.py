"""Patient-level stratified bootstrap, vectorized.

A :class:`BootstrapPlan` says, for each of ``n_resamples`` resamples, how often each patient is
drawn. Patients are drawn with replacement *within their label stratum* (a patient's stratum is
its label), and a drawn patient brings all of its beats: beats of one patient are correlated, so
resampling beats would understate the uncertainty. The plan depends only on the patients and
their labels, never on predictions, so two models evaluated on the same patients meet the same
resamples (paired comparisons). Pass beat ids as ``patient_ids`` for a beat-level bootstrap.

Every statistic is computed for all resamples at once from the plan's count matrix: confusion
counts are ``counts @ per-patient counts``; AUROC uses one global sort of the scores and
cumulative weighted sums per resample (the Mann–Whitney statistic with ties counted 1/2).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_ids, as_labels, as_probabilities, check_same_length

log = logging.getLogger(__name__)

#: Resamples are processed in chunks so that a chunk's beat-weight matrix stays this small.
_MAX_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class BootstrapPlan:
    """A seeded, reusable set of patient-level resamples.

    ``counts[r, p]`` is how many times patient ``patient_ids[p]`` is drawn in resample ``r``;
    ``strata[p]`` is that patient's label.
    """

    patient_ids: np.ndarray
    strata: np.ndarray
    counts: np.ndarray
    seed: int

    @property
    def n_resamples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_patients(self) -> int:
        return int(self.patient_ids.size)

    def columns(self, patient_ids: npt.ArrayLike) -> np.ndarray:
        """Each beat's column in :attr:`counts`; an error if a patient is not in the plan."""
        ids = as_ids(patient_ids)
        cols = np.searchsorted(self.patient_ids, ids)
        cols = np.minimum(cols, max(self.n_patients - 1, 0))
        unknown = self.patient_ids[cols] != ids if self.n_patients else np.ones(ids.size, bool)
        if unknown.any():
            raise EcgmlError(
                f"patient {str(ids[unknown][0])!r} is not in the bootstrap plan: build the plan "
                "from the same patients as the predictions"
            )
        return cols


def patient_labels(
    patient_ids: npt.ArrayLike, y_true: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted unique patient ids, each patient's label, each beat's patient index).

    A patient whose beats carry both labels is an error: its stratum would be undefined.
    """
    ids = as_ids(patient_ids)
    labels = as_labels(y_true)
    check_same_length(patient_ids=ids, y_true=labels)
    unique, codes = np.unique(ids, return_inverse=True)
    n_beats = np.bincount(codes, minlength=unique.size)
    n_pos = np.bincount(codes, weights=labels, minlength=unique.size)
    mixed = (n_pos > 0) & (n_pos < n_beats)
    if mixed.any():
        raise EcgmlError(
            f"patient {str(unique[mixed][0])!r} has beats labelled both 0 and 1 "
            f"({int(mixed.sum())} such patients): a patient has one label; fix the manifest"
        )
    return unique, (n_pos > 0).astype(np.int8), codes


def patient_bootstrap_indices(
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    n_resamples: int = 2000,
    seed: int = 0,
) -> BootstrapPlan:
    """A seeded plan of ``n_resamples`` patient-level resamples, stratified by label.

    In each resample, each stratum of ``n`` patients is replaced by ``n`` patients drawn from it
    with replacement, so every resample keeps both classes when the data has both.
    """
    if int(n_resamples) < 1:
        raise EcgmlError(f"n_bootstrap={n_resamples} must be >= 1 (the study uses 2000)")
    unique, strata, _ = patient_labels(patient_ids, y_true)
    return _stratified_plan(unique, strata, int(n_resamples), seed)


def strata_bootstrap_plan(
    patient_ids: npt.ArrayLike, strata: npt.ArrayLike, n_resamples: int = 2000, seed: int = 0
) -> BootstrapPlan:
    """A plan stratified by any per-patient code (a multi-label combination, a group): each
    stratum's patients are redrawn within it. A patient's first beat gives its stratum."""
    if int(n_resamples) < 1:
        raise EcgmlError(f"n_bootstrap={n_resamples} must be >= 1 (the study uses 2000)")
    ids = as_ids(patient_ids)
    codes = np.asarray(strata)
    check_same_length(patient_ids=ids, strata=codes)
    unique, first = np.unique(ids, return_index=True)
    _, per_patient = np.unique(codes[first], return_inverse=True)
    return _stratified_plan(unique, per_patient.astype(np.int64), int(n_resamples), seed)


#: Draws made at once while building a plan (bounds its memory at ~32 MB of int64).
_DRAWS_PER_BLOCK = 1 << 22
#: Plans kept for reuse (the test split's beats and patients, its subgroups' parents share one).
_PLAN_CACHE: dict[tuple[str, int, int], BootstrapPlan] = {}
_PLAN_CACHE_SIZE = 2


def _stratified_plan(
    unique: np.ndarray, strata: np.ndarray, n_resamples: int, seed: int
) -> BootstrapPlan:
    key = (_digest(unique, strata), n_resamples, int(seed))
    cached = _PLAN_CACHE.get(key)
    if cached is not None:
        return cached
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, unique.size), dtype=np.int32)
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        if members.size:
            counts[:, members] = _stratum_counts(rng, n_resamples, members.size)
    counts.flags.writeable = False  # shared by every caller of the cached plan
    plan = BootstrapPlan(patient_ids=unique, strata=strata, counts=counts, seed=int(seed))
    if len(_PLAN_CACHE) >= _PLAN_CACHE_SIZE:
        _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
    _PLAN_CACHE[key] = plan
    return plan


def _stratum_counts(rng: np.random.Generator, n_resamples: int, size: int) -> np.ndarray:
    """How often each of ``size`` patients is drawn in each resample (``size`` draws with
    replacement per resample). Drawn in blocks of rows, which consume the generator exactly as
    one ``(n_resamples, size)`` draw would, and counted row by row: cache-friendly, and memory
    bounded by the block instead of the whole plan."""
    counts = np.empty((n_resamples, size), dtype=np.int32)
    rows = max(1, _DRAWS_PER_BLOCK // size)
    for start in range(0, n_resamples, rows):
        draws = rng.integers(0, size, size=(min(rows, n_resamples - start), size))
        if size < 256:  # small strata: one bincount over the whole block is cheaper
            flat = draws + (np.arange(len(draws)) * size)[:, None]
            block = np.bincount(flat.ravel(), minlength=len(draws) * size)
            counts[start : start + len(draws)] = block.reshape(len(draws), size)
            continue
        for k, row in enumerate(draws):
            counts[start + k] = np.bincount(row, minlength=size)
    return counts


def _digest(unique: np.ndarray, strata: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(unique).tobytes())
    digest.update(str(unique.dtype).encode())
    digest.update(np.ascontiguousarray(strata, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _chunks(n_resamples: int, n_beats: int) -> list[slice]:
    size = max(1, _MAX_CHUNK_ELEMENTS // max(n_beats, 1))
    return [slice(start, start + size) for start in range(0, n_resamples, size)]


def bootstrap_confusion(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
) -> dict[str, np.ndarray]:
    """Confusion counts ``tp, fp, tn, fn`` of every resample (arrays of length n_resamples)."""
    truth = as_labels(y_true)
    pred = as_labels(y_pred, "y_pred")
    check_same_length(patient_ids=patient_ids, y_true=truth, y_pred=pred)
    cols = plan.columns(patient_ids)
    cells = {
        "tp": (truth == 1) & (pred == 1),
        "fp": (truth == 0) & (pred == 1),
        "tn": (truth == 0) & (pred == 0),
        "fn": (truth == 1) & (pred == 0),
    }
    per_patient = np.stack(
        [np.bincount(cols, weights=cell, minlength=plan.n_patients) for cell in cells.values()],
        axis=1,
    )
    totals = _integer_matmul(plan.counts, per_patient)
    return {name: totals[:, i] for i, name in enumerate(cells)}


def _integer_matmul(counts: np.ndarray, per_patient: np.ndarray) -> np.ndarray:
    """``counts @ per_patient`` for whole numbers, through float32 BLAS in chunks of resamples:
    exact while every sum stays below 2**24 (checked), and far faster than numpy's integer
    matmul, which has no BLAS."""
    right = per_patient.astype(np.float32)
    if (
        float(np.abs(per_patient).sum(axis=0).max(initial=0.0)) * float(counts.max(initial=0))
        >= 2**24
    ):
        return counts.astype(np.int64) @ per_patient.astype(np.int64)
    out = np.empty((counts.shape[0], per_patient.shape[1]), dtype=np.int64)
    for chunk in _chunks(counts.shape[0], counts.shape[1]):
        out[chunk] = np.rint(counts[chunk].astype(np.float32) @ right)
    return out


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (2TP + FP + FN); NaN where the denominator is zero."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def mcc_from_counts(tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient; NaN where a margin is zero (0/0, undefined)."""
    tp, fp, tn, fn = (np.asarray(a, dtype=float) for a in (tp, fp, tn, fn))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (tp * tn - fp * fn) / denominator, np.nan)


@dataclass(frozen=True)
class _SortedScores:
    """Beats sorted by descending score, with the boundaries of groups of tied scores."""

    cols: np.ndarray
    positive: np.ndarray
    group_starts: np.ndarray


def _sort_scores(cols: np.ndarray, truth: np.ndarray, scores: np.ndarray) -> _SortedScores:
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    return _SortedScores(
        cols=cols[order], positive=truth[order] == 1, group_starts=np.flatnonzero(new_group)
    )


def _group_weights(counts: np.ndarray, s: _SortedScores) -> tuple[np.ndarray, np.ndarray]:
    """Weighted positives and negatives per tie group (descending score) for each resample."""
    weights = counts[:, s.cols].astype(np.int64)
    pos = weights * s.positive
    neg = weights - pos
    if s.group_starts.size < s.cols.size:  # tied scores: sum each tie group
        pos = np.add.reduceat(pos, s.group_starts, axis=1)
        neg = np.add.reduceat(neg, s.group_starts, axis=1)
    return pos, neg


def _auroc_from_group_weights(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUROC: P(score_pos > score_neg) + P(tie) / 2, per resample."""
    pos_above = np.cumsum(pos, axis=1) - pos
    twice_wins = np.sum(neg * (2 * pos_above + pos), axis=1, dtype=np.float64)
    pairs = pos.sum(axis=1, dtype=np.float64) * neg.sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, twice_wins / (2 * pairs), np.nan)


def _prepare(
    plan: BootstrapPlan, patient_ids: npt.ArrayLike, y_true: npt.ArrayLike, y_prob: npt.ArrayLike
) -> _SortedScores:
    truth = as_labels(y_true)
    scores = as_probabilities(y_prob)
    check_same_length(patient_ids=patient_ids, y_true=truth, y_prob=scores)
    return _sort_scores(plan.columns(patient_ids), truth, scores)


def bootstrap_auroc(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
) -> np.ndarray:
    """AUROC of every resample (NaN where a resample lacks a class)."""
    s = _prepare(plan, patient_ids, y_true, y_prob)
    out = np.empty(plan.n_resamples)
    for chunk in _chunks(plan.n_resamples, s.cols.size):
        out[chunk] = _auroc_from_group_weights(*_group_weights(plan.counts[chunk], s))
    return out


def bootstrap_roc_band(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    fpr_grid: npt.ArrayLike | None = None,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr grid, pointwise lower TPR, pointwise upper TPR): a percentile band of the ROC curve
    over the resamples, for drawing around the observed curve."""
    grid = np.linspace(0.0, 1.0, 101) if fpr_grid is None else np.asarray(fpr_grid, float)
    s = _prepare(plan, patient_ids, y_true, y_prob)
    tprs = np.full((plan.n_resamples, grid.size), np.nan)
    for chunk in _chunks(plan.n_resamples, s.cols.size):
        pos, neg = _group_weights(plan.counts[chunk], s)
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        tpr = np.c_[np.zeros(len(pos)), np.cumsum(pos, axis=1)]
        fpr = np.c_[np.zeros(len(neg)), np.cumsum(neg, axis=1)]
        for i, row in enumerate(range(plan.n_resamples)[chunk]):
            if n_pos[i] > 0 and n_neg[i] > 0:
                tprs[row] = np.interp(grid, fpr[i] / n_neg[i], tpr[i] / n_pos[i])
    return grid, *_pointwise_band(tprs, level, "ROC")


def _pointwise_band(curves: np.ndarray, level: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The pointwise percentile band of the resampled ``curves`` (rows; NaN rows: a resample
    lacking a class, left out)."""
    valid = np.isfinite(curves).all(axis=1)
    if not valid.any():
        log.warning("%s band: every resample lacks a class; band is NaN", what)
        nan = np.full(curves.shape[1], np.nan)
        return nan, nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(curves[valid], [tail, 1.0 - tail], axis=0)
    return low, high


def interpolated_precision(
    tp: np.ndarray, fp: np.ndarray, n_pos: float, grid: np.ndarray
) -> np.ndarray:
    """Precision at each recall of ``grid`` from cumulative ``tp`` / ``fp`` counts (descending
    score): the interpolated precision, the best precision at that recall or above (the PR
    curve's upper envelope, so one resample gives one value per recall)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    recall = tp / n_pos
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall, first = np.unique(recall, return_index=True)  # a tied recall: its best precision
    at_or_above = np.searchsorted(recall, grid, side="left")  # the first point reaching r
    return envelope[first][np.minimum(at_or_above, recall.size - 1)]


def bootstrap_pr_band(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    recall_grid: npt.ArrayLike | None = None,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(recall grid, pointwise lower precision, pointwise upper precision): a percentile band
    of the (interpolated) precision–recall curve over the patient-level resamples."""
    grid = np.linspace(0.0, 1.0, 101) if recall_grid is None else np.asarray(recall_grid, float)
    s = _prepare(plan, patient_ids, y_true, y_prob)
    curves = np.full((plan.n_resamples, grid.size), np.nan)
    for chunk in _chunks(plan.n_resamples, s.cols.size):
        pos, neg = _group_weights(plan.counts[chunk], s)
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        for i, row in enumerate(range(plan.n_resamples)[chunk]):
            n_pos = float(tp[i, -1])
            if n_pos > 0 and fp[i, -1] > 0:
                curves[row] = interpolated_precision(tp[i], fp[i], n_pos, grid)
    return grid, *_pointwise_band(curves, level, "PR")


def bootstrap_metrics(
    plan: BootstrapPlan,
    patient_ids: npt.ArrayLike,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    y_pred: npt.ArrayLike,
) -> dict[str, np.ndarray]:
    """Resample distributions of ``auroc``, ``f1`` and ``mcc`` (each of length n_resamples)."""
    c = bootstrap_confusion(plan, patient_ids, y_true, y_pred)
    return {
        "auroc": bootstrap_auroc(plan, patient_ids, y_true, y_prob),
        "f1": f1_from_counts(c["tp"], c["fp"], c["fn"]),
        "mcc": mcc_from_counts(c["tp"], c["fp"], c["tn"], c["fn"]),
    }
