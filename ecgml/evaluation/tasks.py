"""End-of-run evaluation of the multi-label and serum-regression tasks (docs/contracts.md).

**Multi-label.** Each disorder's output is evaluated exactly like a binary run
(:func:`~ecgml.evaluation.evaluate_with_config`: recalibration and threshold chosen on its own
validation beats, the eight metrics with CIs, clinical metrics), its keys moved under
``<prefix>/<disorder>/``; ``<prefix>/macro_auroc`` is the mean of the disorders' AUROCs, its CI
from one patient-level bootstrap stratified on the label combination (the same resamples for
every disorder, so the CI of the mean is honest about their correlation).

**Regression.** ``mae``, ``rmse`` and ``pearson_r`` with patient-level bootstrap CIs
(stratified on the group), for test beats, test patients (mean estimate over a patient's beats)
and validation beats; and each disorder the serum value defines (``hyperkalemia``/``hypokalemia``
for potassium) read off the estimate: ``test/<disorder>_auroc`` on that group's and the normal
group's patients, the estimate as the score (higher for hyper-, lower for hypo-states). Every
estimate gets a conformal interval and severity probabilities calibrated on the validation
patients (:mod:`ecgml.evaluation.serum_intervals`), with their coverage on the test split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from ecgml.errors import EcgmlError
from ecgml.evaluation.bootstrap import (
    BootstrapPlan,
    bootstrap_auroc,
    patient_bootstrap_indices,
    strata_bootstrap_plan,
)
from ecgml.evaluation.figures import plot_roc, save_figure
from ecgml.evaluation.intervals import percentile_interval
from ecgml.evaluation.patients import aggregate_beats
from ecgml.evaluation.predictions import PREFIXES, Evaluation, evaluate_with_config, metric_keys
from ecgml.evaluation.report import format_results_table
from ecgml.evaluation.serum_intervals import (
    DEFAULT_LEVEL,
    MIN_BAND_PATIENTS,
    SEVERITY,
    SerumIntervals,
    band_coverage,
    band_keys,
    check_level,
    coverage,
    severity_auroc_key,
    severity_columns,
)

REGRESSION_METRICS = ("mae", "rmse", "pearson_r")
#: A serum run's per-patient table (validation and test patients).
PATIENT_PREDICTIONS = "patient_predictions.csv"


@dataclass
class TaskEvaluation:
    """The metrics, the predictions (``predictions.csv``) and, for a multi-label run, each
    disorder's own :class:`Evaluation` (its calibrator goes into the logged model)."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    per_output: dict[str, Evaluation] = field(default_factory=dict)
    #: A serum run's calibrated intervals (they go into the logged model).
    intervals: SerumIntervals | None = None


# --------------------------------------------------------------------------- multi-label


def output_frame(predictions: pd.DataFrame, name: str) -> pd.DataFrame:
    """One disorder's predictions in the binary layout (``y_true``, ``y_prob``)."""
    suffixed = [c for c in predictions.columns if c.endswith(f"_{name}")]
    others = [
        c
        for c in predictions.columns
        if c.startswith(("y_true_", "y_prob_", "y_pred_")) and c not in suffixed
    ]
    frame = predictions.drop(columns=others)
    return frame.rename(columns={c: c[: -len(name) - 1] for c in suffixed})


def label_combination(predictions: pd.DataFrame, outputs: Sequence[str]) -> np.ndarray:
    """Each row's label combination as one integer (the bootstrap's stratum)."""
    bits = [predictions[f"y_true_{d}"].to_numpy(dtype=np.int64) << k for k, d in enumerate(outputs)]
    return np.sum(bits, axis=0)


def evaluate_multilabel(
    predictions: pd.DataFrame,
    evaluation_cfg: Any,
    outputs: Sequence[str],
    out_dir: Path | None = None,
    title: str = "",
    calibration: str | None = None,
) -> TaskEvaluation:
    """Per-disorder binary evaluation + the macro AUROC (see the module docstring)."""
    metrics: dict[str, float] = {}
    per_output: dict[str, Evaluation] = {}
    result = predictions.copy()
    for name in outputs:
        folder = None if out_dir is None else Path(out_dir) / "per_disorder" / name
        evaluation = evaluate_with_config(
            output_frame(predictions, name),
            evaluation_cfg,
            folder,
            f"{name} ({title})",
            calibration,
        )
        per_output[name] = evaluation
        metrics.update(_nested_keys(evaluation.metrics, name))
        for column in ("y_prob", "y_prob_raw", "y_pred"):
            result[f"{column}_{name}"] = evaluation.predictions[column].to_numpy()
    metrics.update(_macro_auroc(result, outputs, evaluation_cfg))
    if out_dir is not None:
        write_multilabel_outputs(Path(out_dir), result, metrics, outputs, title, evaluation_cfg)
    return TaskEvaluation(metrics, _ordered(result, outputs), per_output)


def _nested_keys(metrics: Mapping[str, float], name: str) -> dict[str, float]:
    """``test/auroc`` → ``test/<name>/auroc`` (every prefix of the contracts)."""
    out = {}
    for key, value in metrics.items():
        prefix, _, rest = key.partition("/")
        out[f"{prefix}/{name}/{rest}"] = value
    return out


def _ordered(frame: pd.DataFrame, outputs: Sequence[str]) -> pd.DataFrame:
    """``predictions.csv`` columns: ids first, then ``y_true_<d>, y_prob_<d>, y_pred_<d>``
    (and ``y_prob_raw_<d>``) per disorder."""
    per = [f"{c}_{d}" for d in outputs for c in ("y_true", "y_prob", "y_pred", "y_prob_raw")]
    rest = [c for c in frame.columns if c not in per]
    return frame[[*rest, *[c for c in per if c in frame.columns]]]


def _macro_auroc(
    frame: pd.DataFrame, outputs: Sequence[str], evaluation_cfg: Any
) -> dict[str, float]:
    """``<prefix>/macro_auroc`` (+ CI) for test beats, test patients and validation beats."""
    n_boot, seed, level = (
        int(evaluation_cfg.n_bootstrap),
        int(evaluation_cfg.seed),
        float(evaluation_cfg.ci_level),
    )
    parts = {
        "test": frame[frame["split"] == "test"],
        "test_patient": multilabel_patient_level(
            frame[frame["split"] == "test"], outputs, evaluation_cfg.get("aggregate", "mean")
        ),
        "val_final": frame[frame["split"] == "val"],
    }
    out: dict[str, float] = {}
    for prefix, part in parts.items():
        value, low, high = macro_auroc_with_ci(part, outputs, n_boot, seed, level)
        out.update(
            {
                f"{prefix}/macro_auroc": value,
                f"{prefix}/macro_auroc_ci_low": low,
                f"{prefix}/macro_auroc_ci_high": high,
            }
        )
    return out


def multilabel_patient_level(
    frame: pd.DataFrame, outputs: Sequence[str], aggregate: str = "mean"
) -> pd.DataFrame:
    """One row per patient: labels of its first beat, the ``aggregate`` (mean, median, max) of
    its beats' probability per disorder."""
    grouped = frame.groupby("patient_id", sort=False)
    labels = grouped[[f"y_true_{d}" for d in outputs]].first()
    probs = aggregate_beats(grouped, [f"y_prob_{d}" for d in outputs], aggregate)
    return pd.concat([labels, probs], axis=1).reset_index()


def macro_auroc_with_ci(
    part: pd.DataFrame, outputs: Sequence[str], n_bootstrap: int, seed: int, level: float
) -> tuple[float, float, float]:
    """Mean over disorders of the AUROC, with a percentile CI over shared patient resamples;
    a disorder without both classes in ``part`` is left out of the mean."""
    if part.empty:
        return (np.nan, np.nan, np.nan)
    ids = part["patient_id"].astype(str).to_numpy()
    defined = [d for d in outputs if part[f"y_true_{d}"].nunique() == 2]
    if not defined:
        return (np.nan, np.nan, np.nan)
    point = float(np.mean([_auroc(part, d) for d in defined]))
    if n_bootstrap <= 0:
        return (point, np.nan, np.nan)
    plan = strata_bootstrap_plan(ids, label_combination(part, outputs), n_bootstrap, seed)
    draws = np.mean(
        [bootstrap_auroc(plan, ids, part[f"y_true_{d}"], part[f"y_prob_{d}"]) for d in defined],
        axis=0,
    )
    low, high = percentile_interval(draws, level, "macro_auroc")
    return (point, low, high)


def _auroc(part: pd.DataFrame, name: str) -> float:
    return float(roc_auc_score(part[f"y_true_{name}"], part[f"y_prob_{name}"]))


def write_multilabel_outputs(
    out_dir: Path,
    frame: pd.DataFrame,
    metrics: Mapping[str, float],
    outputs: Sequence[str],
    title: str,
    evaluation_cfg: Any,
) -> None:
    """``figures/roc.png`` (one curve per disorder), ``results.md`` / ``results.csv`` (one row
    per disorder, Table 2 layout, test beats and test patients)."""
    test = frame[frame["split"] == "test"]
    fig = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = fig.subplots()
    for name in outputs:
        plot_roc(
            test[f"y_true_{name}"],
            test[f"y_prob_{name}"],
            test["patient_id"],
            n_bootstrap=int(evaluation_cfg.n_bootstrap),
            seed=int(evaluation_cfg.seed),
            level=float(evaluation_cfg.ci_level),
            label=name,
            ax=ax,
            title=f"{title} — ROC per disorder, test beats" if title else "ROC per disorder",
        )
    save_figure(fig, out_dir / "figures" / "roc.png")
    level = float(evaluation_cfg.ci_level)
    beat_md, beat_frame = _per_disorder_table(metrics, outputs, "test", level)
    patient_md, _ = _per_disorder_table(metrics, outputs, "test_patient", level)
    beat_frame.to_csv(out_dir / "results.csv", index=False)
    macro = _ci_text(metrics, "test/macro_auroc")
    macro_patient = _ci_text(metrics, "test_patient/macro_auroc")
    text = [
        f"# Results{': ' + title if title else ''}",
        "",
        "One multi-label model; each disorder's threshold chosen on the validation split "
        f"(rule `{evaluation_cfg.threshold_rule}`). Test split, beat level:",
        "",
        beat_md,
        f"Macro AUROC {macro} (beat level), {macro_patient} (patient level).",
        "",
        "Patient level (a patient's probability is the mean over its beats):",
        "",
        patient_md,
        "Per-disorder figures and clinical tables: `per_disorder/<disorder>/`.",
        "",
    ]
    (out_dir / "results.md").write_text("\n".join(text), encoding="utf-8")


def _per_disorder_table(
    metrics: Mapping[str, float], outputs: Sequence[str], prefix: str, level: float
) -> tuple[str, pd.DataFrame]:
    rows = {
        d: {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith(f"{prefix}/{d}/")}
        for d in outputs
    }
    return format_results_table(rows, level=level)


def _ci_text(metrics: Mapping[str, float], key: str) -> str:
    value, low, high = (metrics.get(f"{key}{s}", np.nan) for s in ("", "_ci_low", "_ci_high"))
    return f"{value:.3f} ({low:.3f}–{high:.3f})"


def multilabel_metric_keys(outputs: Sequence[str], prevalences: Sequence[float]) -> list[str]:
    """The end-of-run MLflow keys of a multi-label run (docs/contracts.md)."""
    per = [_nested_key(k, d) for d in outputs for k in metric_keys(tuple(prevalences))]
    macro = [f"{p}/macro_auroc{s}" for p in PREFIXES for s in ("", "_ci_low", "_ci_high")]
    return [*per, *macro]


def _nested_key(key: str, name: str) -> str:
    prefix, _, rest = key.partition("/")
    return f"{prefix}/{name}/{rest}"


# --------------------------------------------------------------------------- regression


def regression_point(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and Pearson r of one set of estimates."""
    error = y_pred - y_true
    r = np.corrcoef(y_true, y_pred)[0, 1] if y_true.size > 2 and y_true.std() > 0 else np.nan
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "pearson_r": float(r),
    }


def bootstrap_regression(
    plan: BootstrapPlan, patient_ids: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, np.ndarray]:
    """MAE, RMSE and Pearson r of every patient-level resample (beats weighted by how often
    their patient is drawn)."""
    w = plan.counts[:, plan.columns(patient_ids)].astype(np.float64)
    total = w.sum(axis=1)
    error = y_pred - y_true
    with np.errstate(divide="ignore", invalid="ignore"):
        mae = (w @ np.abs(error)) / total
        rmse = np.sqrt((w @ error**2) / total)
        mean_t, mean_p = (w @ y_true) / total, (w @ y_pred) / total
        cov = (w @ (y_true * y_pred)) / total - mean_t * mean_p
        var_t = (w @ y_true**2) / total - mean_t**2
        var_p = (w @ y_pred**2) / total - mean_p**2
        r = cov / np.sqrt(var_t * var_p)
    return {"mae": mae, "rmse": rmse, "pearson_r": r}


def regression_metrics(
    part: pd.DataFrame, n_bootstrap: int, seed: int, level: float, prefix: str
) -> dict[str, float]:
    """``<prefix>/{mae,rmse,pearson_r}`` with ``_ci_low`` / ``_ci_high``."""
    out: dict[str, float] = {}
    if part.empty:
        return {
            f"{prefix}/{m}{s}": np.nan
            for m in REGRESSION_METRICS
            for s in ("", "_ci_low", "_ci_high")
        }
    truth, estimate = part["y_true"].to_numpy(float), part["y_pred"].to_numpy(float)
    point = regression_point(truth, estimate)
    draws: dict[str, np.ndarray] = {}
    if n_bootstrap > 0:
        ids = part["patient_id"].astype(str).to_numpy()
        plan = strata_bootstrap_plan(ids, part["group"].astype(str).to_numpy(), n_bootstrap, seed)
        draws = bootstrap_regression(plan, ids, truth, estimate)
    for m in REGRESSION_METRICS:
        low, high = percentile_interval(draws[m], level, m) if draws else (np.nan, np.nan)
        out.update(
            {f"{prefix}/{m}": point[m], f"{prefix}/{m}_ci_low": low, f"{prefix}/{m}_ci_high": high}
        )
    return out


def regression_patient_level(frame: pd.DataFrame, aggregate: str = "mean") -> pd.DataFrame:
    """One row per patient: its measured value and the ``aggregate`` of its beats' estimates."""
    grouped = frame.groupby("patient_id", sort=False)
    out = grouped[["y_true", "group"]].first()
    out["y_pred"] = aggregate_beats(grouped, ["y_pred"], aggregate)["y_pred"]
    return out.reset_index()


def estimate_auroc(
    part: pd.DataFrame, disorder: str, direction: str, n_bootstrap: int, seed: int, level: float
) -> tuple[float, float, float]:
    """AUROC of ``disorder`` vs normal patients' beats, scored by the estimate (negated for a
    ``low`` state); NaN when either group is missing."""
    sub = part[part["group"].isin([disorder, "normal"])]
    truth = (sub["group"] == disorder).to_numpy(np.int8)
    score = sub["y_pred"].to_numpy(float) * (1.0 if direction == "high" else -1.0)
    ids = sub["patient_id"].astype(str).to_numpy()
    return ranked_auroc(ids, truth, score, n_bootstrap, seed, level, disorder)


def ranked_auroc(
    ids: np.ndarray,
    truth: np.ndarray,
    score: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float,
    name: str,
) -> tuple[float, float, float]:
    """AUROC of ``score`` (ranked: any real scale) with a patient-level bootstrap CI; NaN when
    a class is missing."""
    if truth.size == 0 or truth.min() == truth.max():
        return (np.nan, np.nan, np.nan)
    scaled = (rankdata(score) - 0.5) / score.size  # order kept, inside [0, 1]
    point = float(roc_auc_score(truth, scaled))
    if n_bootstrap <= 0:
        return (point, np.nan, np.nan)
    plan = patient_bootstrap_indices(ids, truth, n_bootstrap, seed)
    low, high = percentile_interval(bootstrap_auroc(plan, ids, truth, scaled), level, name)
    return (point, low, high)


def evaluate_regression(
    predictions: pd.DataFrame,
    evaluation_cfg: Any,
    serum: Mapping[str, Any],
    out_dir: Path | None = None,
    title: str = "",
) -> TaskEvaluation:
    """The regression keys of docs/contracts.md, figures and ``results.md`` (module doc)."""
    if (predictions["split"] == "test").sum() == 0:
        raise EcgmlError("predictions have no rows with split='test': nothing to evaluate")
    n_boot, seed, level = (
        int(evaluation_cfg.n_bootstrap),
        int(evaluation_cfg.seed),
        float(evaluation_cfg.ci_level),
    )
    aggregate = evaluation_cfg.get("aggregate", "mean")
    folds = by_fold(predictions.reset_index(drop=True))
    systems = {
        fold: serum_intervals(rows, evaluation_cfg, serum, aggregate, fold) for fold, rows in folds
    }
    predictions = pd.concat(
        [with_interval_columns(rows, systems[fold]) for fold, rows in folds]
    ).sort_index()
    patients = pd.concat(
        [patient_predictions(rows, systems[fold], aggregate) for fold, rows in folds],
        ignore_index=True,
    )
    test = predictions[predictions["split"] == "test"]
    test_patients = patients[patients["split"] == "test"]
    intervals = systems.get(None)  # one run's (a pooled cross-validation: each fold's own)
    parts = {
        "test": test,
        "test_patient": test_patients,
        "val_final": predictions[predictions["split"] == "val"],
    }
    metrics: dict[str, float] = {}
    for prefix, part in parts.items():
        metrics.update(regression_metrics(part, n_boot, seed, level, prefix))
        for disorder, direction in serum["disorders"].items():
            value, low, high = estimate_auroc(part, disorder, direction, n_boot, seed, level)
            key = f"{prefix}/{disorder}_auroc"
            metrics.update({key: value, f"{key}_ci_low": low, f"{key}_ci_high": high})
    bands = band_coverage(
        str(serum["column"]),
        test_patients["y_true"].to_numpy(float),
        test_patients["y_low"].to_numpy(),
        test_patients["y_high"].to_numpy(),
    )
    metrics.update(interval_metrics(test, test_patients, bands, serum, n_boot, seed, level))
    metrics["test/n_beats"] = float(len(test))
    metrics["test/n_patients"] = float(test["patient_id"].nunique())
    if out_dir is not None:
        calibrated = IntervalSource(
            float(next(iter(systems.values())).level),
            sum(system.residuals.size for system in systems.values()),
            len(systems),
        )
        write_regression_outputs(Path(out_dir), test, metrics, serum, title, calibrated, bands)
        patients.to_csv(Path(out_dir) / PATIENT_PREDICTIONS, index=False)
    return TaskEvaluation(metrics, predictions.copy(), intervals=intervals)


@dataclass(frozen=True)
class IntervalSource:
    """What ``results.md`` says calibrated the intervals: the level, the validation patients
    and the number of folds (1: one run)."""

    level: float
    n_patients: int
    n_folds: int


def by_fold(predictions: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    """A pooled cross-validation's rows per ``fold`` (each fold's own validation patients
    calibrate its test rows), or one run's rows under ``None``."""
    if "fold" not in predictions.columns:
        return [(None, predictions)]
    return [(fold, rows) for fold, rows in predictions.groupby("fold", sort=False)]


def serum_intervals(
    predictions: pd.DataFrame,
    evaluation_cfg: Any,
    serum: Mapping[str, Any],
    aggregate: str,
    fold: Any = None,
) -> SerumIntervals:
    """The conformal predictive system calibrated on the validation patients' residuals."""
    level = check_level(evaluation_cfg.get("interval_level", DEFAULT_LEVEL))
    val = predictions[predictions["split"] == "val"]
    calibration = regression_patient_level(val, aggregate) if len(val) else val
    return SerumIntervals.calibrate(
        str(serum["column"]),
        calibration["y_true"].to_numpy(float),
        calibration["y_pred"].to_numpy(float),
        level,
        "the validation split" if fold is None else f"fold {fold}'s validation split",
    )


def with_interval_columns(predictions: pd.DataFrame, intervals: SerumIntervals) -> pd.DataFrame:
    """``predictions.csv`` with each beat row's ``y_low``, ``y_high`` and severity
    probabilities."""
    columns = intervals.columns(predictions["y_pred"].to_numpy(float))
    return predictions.assign(**columns)


def patient_predictions(
    predictions: pd.DataFrame, intervals: SerumIntervals, aggregate: str
) -> pd.DataFrame:
    """``patient_predictions.csv``: one row per validation and test patient, its measured value,
    the ``aggregate`` of its beats' estimates, and that estimate's interval and severity
    probabilities."""
    frames = []
    for split in ("val", "test"):
        rows = predictions[predictions["split"] == split]
        if rows.empty:
            continue
        patients = regression_patient_level(rows, aggregate)
        patients.insert(1, "split", split)
        if "fold" in rows.columns:
            patients["fold"] = rows["fold"].iloc[0]
        frames.append(patients)
    columns = ["patient_id", "split", "y_true", "y_pred", "group"]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)
    table = table[[*columns, *(["fold"] if "fold" in table.columns else [])]]
    return table.assign(**intervals.columns(table["y_pred"].to_numpy(float)))


def interval_metrics(
    test: pd.DataFrame,
    test_patients: pd.DataFrame,
    bands: Mapping[str, tuple[float, int]],
    serum: Mapping[str, Any],
    n_bootstrap: int,
    seed: int,
    level: float,
) -> dict[str, float]:
    """Interval coverage and width (beats, patients, patients per measured band) and each
    severity grade's patient-level AUROC with its CI (docs/contracts.md); ``bands``: the
    patients' coverage per measured band (:func:`band_coverage`)."""
    name = str(serum["column"])
    out: dict[str, float] = {}
    for prefix, part in (("test", test), ("test_patient", test_patients)):
        cover, width = coverage(
            part["y_true"].to_numpy(float), part["y_low"].to_numpy(), part["y_high"].to_numpy()
        )
        out.update({f"{prefix}/interval_coverage": cover, f"{prefix}/interval_width": width})
    for band, (value, _) in bands.items():
        out[f"test_patient/interval_coverage_{band}"] = value
    for column, direction, cut in SEVERITY.get(name, ()):
        truth = test_patients["y_true"].to_numpy(float)
        positive = (truth >= cut) if direction == "ge" else (truth < cut)
        key = f"test_patient/{severity_auroc_key(name, column)}"
        value, low, high = severity_auroc(
            test_patients, positive, test_patients[column].to_numpy(float), n_bootstrap, seed, level
        )
        out.update({key: value, f"{key}_ci_low": low, f"{key}_ci_high": high})
    return out


def severity_auroc(
    patients: pd.DataFrame,
    positive: np.ndarray,
    probability: np.ndarray,
    n_bootstrap: int,
    seed: int,
    level: float,
) -> tuple[float, float, float]:
    """AUROC of a severity grade's probability over the test patients (one row each), with a
    patient bootstrap CI; NaN when the grade or its absence is missing."""
    truth = positive.astype(np.int8)
    # ties of a flat probability tail broken by the estimate
    score = probability + 1e-9 * (rankdata(patients["y_pred"].to_numpy(float)) / truth.size)
    ids = patients["patient_id"].astype(str).to_numpy()
    return ranked_auroc(ids, truth, score, n_bootstrap, seed, level, "severity")


def regression_metric_keys(serum: Mapping[str, Any]) -> list[str]:
    """The end-of-run MLflow keys of a regression run (docs/contracts.md)."""
    names = [*REGRESSION_METRICS, *(f"{d}_auroc" for d in serum["disorders"])]
    keys = [f"{p}/{m}{s}" for p in PREFIXES for m in names for s in ("", "_ci_low", "_ci_high")]
    name = str(serum["column"])
    intervals = [
        f"{p}/interval_{m}" for p in ("test", "test_patient") for m in ("coverage", "width")
    ]
    severity = [
        f"test_patient/{severity_auroc_key(name, column)}{s}"
        for column in severity_columns(name)
        for s in ("", "_ci_low", "_ci_high")
    ]
    return [*keys, *intervals, *band_keys(name), *severity, "test/n_beats", "test/n_patients"]


def write_regression_outputs(
    out_dir: Path,
    test: pd.DataFrame,
    metrics: Mapping[str, float],
    serum: Mapping[str, Any],
    title: str,
    calibrated: IntervalSource | None = None,
    bands: Mapping[str, tuple[float, int]] | None = None,
) -> None:
    """``figures/scatter.png`` (estimate vs measured, identity line), ``figures/bland_altman.png``
    and ``results.md`` / ``results.csv``."""
    truth, estimate = test["y_true"].to_numpy(float), test["y_pred"].to_numpy(float)
    save_figure(_scatter(truth, estimate, serum, title), out_dir / "figures" / "scatter.png")
    save_figure(_bland_altman(truth, estimate, title), out_dir / "figures" / "bland_altman.png")
    rows = []
    for prefix, level_name in (("test", "beat"), ("test_patient", "patient")):
        for m in (*REGRESSION_METRICS, *(f"{d}_auroc" for d in serum["disorders"])):
            key = f"{prefix}/{m}"
            rows.append(
                {
                    "level": level_name,
                    "metric": m,
                    "value": metrics[key],
                    "ci_low": metrics[f"{key}_ci_low"],
                    "ci_high": metrics[f"{key}_ci_high"],
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(out_dir / "results.csv", index=False)
    lines = [
        f"# Results{': ' + title if title else ''}",
        "",
        "Serum estimate (mmol/L) on the test split; disorder AUROCs read off the estimate "
        "(that disorder's patients vs normal patients).",
        "",
        "| level | metric | value (95% CI) |",
        "|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['level']} | {row['metric']} | {row['value']:.3f} "
            f"({row['ci_low']:.3f}–{row['ci_high']:.3f}) |"
        )
    if calibrated is not None and bands is not None:
        lines += interval_lines(str(serum["column"]), calibrated, bands, metrics)
    (out_dir / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def interval_lines(
    name: str,
    calibrated: IntervalSource,
    bands: Mapping[str, tuple[float, int]],
    metrics: Mapping[str, float],
) -> list[str]:
    """``results.md``'s interval section: coverage and width (beats, patients, each measured
    band, a band under the minimum count said to be too small) and the severity AUROCs."""
    n_folds = calibrated.n_folds
    folds = f", each fold's on its own ({n_folds} folds)" if n_folds > 1 else ""
    lines = [
        "",
        f"## {calibrated.level:.0%} intervals (conformal, calibrated on "
        f"{calibrated.n_patients} validation patients{folds})",
        "",
        "| test | coverage | mean width (mmol/L) |",
        "|---|---|---|",
    ]
    for prefix, label in (("test", "beats"), ("test_patient", "patients")):
        lines.append(
            f"| {label} | {metrics[f'{prefix}/interval_coverage']:.3f} | "
            f"{metrics[f'{prefix}/interval_width']:.3f} |"
        )
    lines += ["", "| measured band | patients | coverage |", "|---|---|---|"]
    for band, (value, n) in bands.items():
        shown = f"{value:.3f}" if np.isfinite(value) else f"too small (< {MIN_BAND_PATIENTS})"
        lines.append(f"| {band} | {n} | {shown} |")
    lines += ["", "| severity grade (patients) | AUROC (95% CI) |", "|---|---|"]
    for column in severity_columns(name):
        key = f"test_patient/{severity_auroc_key(name, column)}"
        lines.append(
            f"| {column} | {metrics[key]:.3f} ({metrics[f'{key}_ci_low']:.3f}–"
            f"{metrics[f'{key}_ci_high']:.3f}) |"
        )
    return lines


def _scatter(
    truth: np.ndarray, estimate: np.ndarray, serum: Mapping[str, Any], title: str
) -> Figure:
    fig = Figure(figsize=(5.0, 4.8), layout="constrained")
    ax = fig.subplots()
    ax.scatter(truth, estimate, s=10, alpha=0.6)
    lo = float(min(truth.min(), estimate.min())) if truth.size else 0.0
    hi = float(max(truth.max(), estimate.max())) if truth.size else 1.0
    ax.plot([lo, hi], [lo, hi], ls="--", color="0.4", lw=1, label="identity")
    for edge in (serum["low"], serum["high"]):
        ax.axvline(edge, color="0.8", lw=0.8)
        ax.axhline(edge, color="0.8", lw=0.8)
    ax.set(
        xlabel="measured (mmol/L)",
        ylabel="estimated (mmol/L)",
        title=f"{title} — estimate vs measured, test beats" if title else "Estimate",
    )
    ax.legend(loc="upper left", fontsize="small")
    return fig


def _bland_altman(truth: np.ndarray, estimate: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(5.0, 4.5), layout="constrained")
    ax = fig.subplots()
    mean, diff = (truth + estimate) / 2, estimate - truth
    bias, sd = (float(diff.mean()), float(diff.std(ddof=1))) if diff.size > 1 else (0.0, 0.0)
    ax.scatter(mean, diff, s=10, alpha=0.6)
    ax.axhline(bias, color="C1", label=f"bias {bias:+.2f}")
    for limit in (bias - 1.96 * sd, bias + 1.96 * sd):
        ax.axhline(limit, color="C1", ls="--", lw=1)
    ax.set(
        xlabel="mean of measured and estimated (mmol/L)",
        ylabel="estimated − measured (mmol/L)",
        title=f"{title} — Bland–Altman" if title else "Bland–Altman",
    )
    ax.legend(loc="upper right", fontsize="small", title=f"limits ±{1.96 * sd:.2f}")
    return fig


__all__ = [
    "REGRESSION_METRICS",
    "TaskEvaluation",
    "evaluate_multilabel",
    "evaluate_regression",
    "multilabel_metric_keys",
    "regression_metric_keys",
]
