"""End-of-run evaluation of a run's predictions: threshold on validation, the MLflow metric keys
of docs/contracts.md for ``test``, ``test_patient`` and ``val_final``, figures, results table."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_labels, as_probabilities
from ecgml.evaluation.bootstrap import BootstrapPlan, patient_bootstrap_indices
from ecgml.evaluation.calibration import Calibrator
from ecgml.evaluation.clinical import (
    MIN_THRESHOLD_POSITIVES,
    ClinicalResults,
    ClinicalSettings,
    clinical_markdown,
    clinical_metric_keys,
    clinical_results,
    recalibrate,
    write_clinical_outputs,
)
from ecgml.evaluation.figures import plot_confusion, plot_pr, plot_roc, save_figure
from ecgml.evaluation.metrics import METRICS, compute_metrics
from ecgml.evaluation.patients import patient_level
from ecgml.evaluation.report import format_results_table
from ecgml.evaluation.threshold import ThresholdChoice, choose_threshold, threshold_choice
from ecgml.evaluation.utility import DEFAULT_DECISION_RANGE

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "beat_id", "split", "y_true", "y_prob")
SPLITS = ("train", "val", "test")
#: Metric prefixes (docs/contracts.md): test beats, test patients (mean probability), validation.
PREFIXES = ("test", "test_patient", "val_final")
FIGURES = ("roc", "pr", "confusion", "calibration", "decision_curve", "subgroups")
#: Tables written beside ``results.md`` (docs/contracts.md).
TABLES = (
    "results.md",
    "results.csv",
    "decision_curve.csv",
    "operating_points.csv",
    "subgroups.csv",
)


def metric_keys(prevalences: tuple[float, ...] = ClinicalSettings().prevalences) -> list[str]:
    """Exactly the end-of-run MLflow metric keys of docs/contracts.md."""
    keys = [f"{p}/{m}{s}" for p in PREFIXES for m in METRICS for s in ("", "_ci_low", "_ci_high")]
    return [
        *keys,
        "test/threshold",
        "test/n_beats",
        "test/n_patients",
        *clinical_metric_keys(prevalences),
    ]


def check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """A validated copy: required columns present, 0/1 labels (int8), probabilities in [0, 1]
    (float64), patient ids as strings."""
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise EcgmlError(
            f"predictions lack column(s) {missing}: need {list(REQUIRED_COLUMNS)} "
            f"(have {list(predictions.columns)})"
        )
    df = predictions.copy()
    bad_split = ~df["split"].isin(SPLITS)
    if bad_split.any():
        bad = str(df["split"][bad_split].iloc[0])
        raise EcgmlError(f"predictions: split={bad!r} is not one of {list(SPLITS)}")
    if df["patient_id"].isna().any():
        raise EcgmlError("predictions: patient_id has missing values; every beat needs one")
    df["y_true"] = as_labels(df["y_true"].to_numpy(), "predictions y_true")
    df["y_prob"] = as_probabilities(df["y_prob"].to_numpy(), "predictions y_prob")
    if "y_prob_raw" in df.columns:
        df["y_prob_raw"] = as_probabilities(df["y_prob_raw"].to_numpy(), "predictions y_prob_raw")
    df["patient_id"] = df["patient_id"].astype(str)
    return df


def _warn_on_leakage(df: pd.DataFrame) -> None:
    n_splits = df.groupby("patient_id")["split"].nunique()
    if (n_splits > 1).any():
        log.warning(
            "%d patient(s) appear in more than one split (e.g. %r): patient-level splits leak",
            int((n_splits > 1).sum()),
            n_splits.index[n_splits > 1][0],
        )


def metrics_for_frame(
    part: pd.DataFrame,
    threshold: float,
    plan: BootstrapPlan | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    context: str,
) -> dict[str, float]:
    """:func:`compute_metrics` on a predictions frame (``y_true, y_prob, patient_id``)."""
    return compute_metrics(
        part["y_true"].to_numpy(),
        part["y_prob"].to_numpy(),
        part["patient_id"].to_numpy(),
        threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
        level=level,
        plan=plan,
        context=context,
    )


@dataclass(frozen=True)
class Uncertainty:
    """How the CIs are computed: resamples of the patient-level bootstrap, its seed, the level."""

    n_bootstrap: int = 2000
    seed: int = 0
    level: float = 0.95


def _validated_frame(predictions: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The checked predictions, refusing frames that cannot be evaluated with ``rule``."""
    df = check_predictions(predictions)
    if (df["split"] == "test").sum() == 0:
        raise EcgmlError("predictions have no rows with split='test': nothing to evaluate")
    if (df["split"] == "val").sum() == 0 and rule != "fixed":
        raise EcgmlError(
            f"threshold rule={rule!r} needs rows with split='val'; none found: "
            "use rule=fixed or keep validation predictions"
        )
    _warn_on_leakage(df)
    return df


def _results_by_prefix(
    df: pd.DataFrame,
    threshold: float,
    plan: BootstrapPlan | None,
    ci: Uncertainty,
    aggregate: str = "mean",
) -> dict[str, dict[str, float]]:
    """Metrics of the test beats (bootstrap ``plan``), test patients (their beats' ``aggregate``)
    and validation beats."""
    test = df[df["split"] == "test"]
    settings = (ci.n_bootstrap, ci.seed, ci.level)
    return {
        "test": metrics_for_frame(test, threshold, plan, *settings, "test"),
        "test_patient": metrics_for_frame(
            patient_level(test, aggregate), threshold, None, *settings, "test_patient"
        ),
        "val_final": metrics_for_frame(
            df[df["split"] == "val"], threshold, None, *settings, "val_final"
        ),
    }


def _metric_dict(results: dict[str, dict[str, float]], threshold: float) -> dict[str, float]:
    """The flat MLflow keys of the contracts (exactly :func:`metric_keys`)."""
    metrics = {
        f"{prefix}/{m}{s}": float(results[prefix][f"{m}{s}"])
        for prefix in PREFIXES
        for m in METRICS
        for s in ("", "_ci_low", "_ci_high")
    }
    metrics["test/threshold"] = float(threshold)
    metrics["test/n_beats"] = float(results["test"]["n_beats"])
    metrics["test/n_patients"] = float(results["test"]["n_patients"])
    return metrics


@dataclass
class Evaluation:
    """An evaluated run: the MLflow metrics, the predictions with the recalibrated ``y_prob``,
    ``y_prob_raw`` and ``y_pred``, the calibrator (stored in the logged model), the clinical
    tables and the threshold with its interval (what ``results.md`` and the summary say)."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    calibrator: Calibrator
    clinical: ClinicalResults
    threshold: ThresholdChoice | None = None


def evaluate_predictions(
    predictions: pd.DataFrame,
    rule: str = "youden",
    value: float = 0.5,
    target_sensitivity: float = 0.9,
    n_bootstrap: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    out_dir: Path | None = None,
    title: str = "",
    clinical: ClinicalSettings | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Evaluate a run's predictions (``patient_id, beat_id, split, y_true, y_prob`` + provenance).

    The recalibration (``clinical.calibration``, default temperature scaling) is fitted on the
    ``val`` rows; the threshold is chosen on the recalibrated ``val`` rows (``rule``: fixed /
    youden / sensitivity) and applied to every row as ``y_pred``. Returns (the contracts' MLflow
    metrics — exactly :func:`metric_keys` —, a copy of ``predictions`` with ``y_prob``
    recalibrated, ``y_prob_raw`` and ``y_pred``). With ``out_dir``, writes ``figures/*.png``
    (:data:`FIGURES`) and the :data:`TABLES` there.
    """
    result = evaluate_full(
        predictions,
        rule,
        value,
        target_sensitivity,
        Uncertainty(n_bootstrap, seed, level),
        clinical or ClinicalSettings(),
        out_dir,
        title,
    )
    return result.metrics, result.predictions


def evaluate_full(
    predictions: pd.DataFrame,
    rule: str,
    value: float,
    target_sensitivity: float,
    ci: Uncertainty,
    settings: ClinicalSettings,
    out_dir: Path | None = None,
    title: str = "",
) -> Evaluation:
    """:func:`evaluate_predictions`, returning the calibrator and clinical tables too."""
    df, calibrator = recalibrate(_validated_frame(predictions, rule), settings.calibration)
    val = df[df["split"] == "val"]
    threshold = choose_threshold(
        val["y_true"].to_numpy(), val["y_prob"].to_numpy(), rule, value, target_sensitivity
    )
    df["y_pred"] = (df["y_prob"] >= threshold).astype(np.int8)
    val, test = df[df["split"] == "val"], df[df["split"] == "test"]
    choice = threshold_choice(
        val[["patient_id", "y_true", "y_prob"]],
        threshold,
        rule,
        value,
        target_sensitivity,
        ci.seed,
        ci.level,
    )
    plan = None
    if ci.n_bootstrap > 0:
        plan = patient_bootstrap_indices(
            test["patient_id"], test["y_true"], ci.n_bootstrap, ci.seed
        )
    results = _results_by_prefix(df, threshold, plan, ci, settings.aggregate)
    clinical = clinical_results(
        val, test, threshold, plan, calibrator, settings, ci.n_bootstrap, ci.seed, ci.level
    )
    if out_dir is not None:
        write_evaluation_outputs(
            Path(out_dir),
            test,
            results,
            threshold,
            choice,
            plan,
            ci.n_bootstrap,
            ci.seed,
            ci.level,
            title,
            clinical,
            settings,
        )
    with_pred = predictions.drop(columns=["y_prob_raw", "y_pred"], errors="ignore").copy()
    with_pred["y_prob"] = df["y_prob"].to_numpy()
    with_pred["y_prob_raw"] = df["y_prob_raw"].to_numpy()
    with_pred["y_pred"] = df["y_pred"].to_numpy()
    metrics = {**_metric_dict(results, threshold), **clinical.metrics}
    return Evaluation(metrics, with_pred, calibrator, clinical, choice)


def _test_figures(
    test: pd.DataFrame,
    plan: BootstrapPlan | None,
    ci: Uncertainty,
    title: str,
    aggregate: str,
) -> dict[str, Any]:
    """ROC and PR of the test beats (bootstrap bands from ``plan``) and of the test patients
    (each patient's ``aggregate`` probability: the clinical unit; their own patient
    resamples), and the beats' confusion matrix."""
    y_true, y_prob = test["y_true"].to_numpy(), test["y_prob"].to_numpy()
    ids = test["patient_id"].to_numpy()
    name = f"{title} — " if title else ""
    patients = patient_level(test[["patient_id", "y_true", "y_prob"]], aggregate)
    p_true, p_prob = patients["y_true"].to_numpy(), patients["y_prob"].to_numpy()
    p_ids = patients["patient_id"].to_numpy()
    p_plan = (
        patient_bootstrap_indices(p_ids, p_true, n_resamples=ci.n_bootstrap, seed=ci.seed)
        if ci.n_bootstrap > 0
        else None
    )
    curves = {}
    for suffix, (truth, prob, who, resamples, unit) in {
        "": (y_true, y_prob, ids, plan, "beats"),
        "_patient": (p_true, p_prob, p_ids, p_plan, f"patients ({aggregate})"),
    }.items():
        for key, plot, what in (("roc", plot_roc, "ROC"), ("pr", plot_pr, "Precision–recall")):
            curves[f"{key}{suffix}"] = plot(
                truth,
                prob,
                who,
                plan=resamples,
                n_bootstrap=0,
                level=ci.level,
                title=f"{name}{what}, test {unit}",
            )
    return {
        **curves,
        "confusion": plot_confusion(
            y_true, test["y_pred"].to_numpy(), title=f"{name}Confusion matrix, test beats"
        ),
    }


def _results_markdown(
    results: dict[str, dict[str, float]],
    choice: ThresholdChoice,
    min_positives: int,
    ci: Uncertainty,
    title: str,
) -> str:
    """``results.md``: the one-row Table 2 at beat and patient level, with how CIs were made."""
    group = title or "Test"
    beat_md, _ = format_results_table({group: results["test"]}, level=ci.level)
    patient_md, _ = format_results_table({group: results["test_patient"]}, level=ci.level)
    t = results["test"]
    ci_note = (
        f"patient-level stratified bootstrap ({ci.n_bootstrap} resamples, seed {ci.seed})"
        if ci.n_bootstrap > 0
        else "not computed (n_bootstrap=0)"
    )
    lines = [
        f"# Results{': ' + title if title else ''}",
        "",
        f"Test split, beat level (as the study's Table 2). Threshold {choice.value:.4g}, chosen "
        f"on the validation split by rule `{choice.rule}`; `y_pred = y_prob >= threshold`. "
        f"In words: {choice.describe(min_positives)}.",
        "",
        beat_md,
        f"{t['n_beats']} beats from {t['n_patients']} patients ({t['n_positive']} positive, "
        f"{t['n_negative']} negative beats); TP {t['tp']}, FP {t['fp']}, TN {t['tn']}, "
        f"FN {t['fn']}.",
        "",
        "Patient level (a patient's probability is the mean over its beats):",
        "",
        patient_md,
        f"{ci.level:.0%} CIs: Wilson score intervals for accuracy, sensitivity, specificity, "
        f"precision and NPV; {ci_note} for AUROC, F1 and MCC. n/a: undefined (see the log).",
        "",
    ]
    return "\n".join(lines)


def _results_frame(
    results: dict[str, dict[str, float]], threshold: float, level: float, title: str
) -> pd.DataFrame:
    """``results.csv``: the test row of Table 2 plus threshold, counts and confusion cells."""
    _, frame = format_results_table({title or "Test": results["test"]}, level=level)
    frame["threshold"] = threshold
    for key in ("n_beats", "n_patients", "n_positive", "n_negative", "tp", "fp", "tn", "fn"):
        frame[key] = results["test"][key]
    return frame


def write_evaluation_outputs(
    out_dir: Path,
    test: pd.DataFrame,
    results: dict[str, dict[str, float]],
    threshold: float,
    choice: ThresholdChoice,
    plan: BootstrapPlan | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    title: str,
    clinical: ClinicalResults,
    settings: ClinicalSettings,
) -> dict[str, Path]:
    """Write the test-set figures, ``results.md`` / ``results.csv`` and the clinical tables."""
    ci = Uncertainty(n_bootstrap, seed, level)
    figures = _test_figures(test, plan, ci, title, settings.aggregate)
    written = {
        key: save_figure(fig, out_dir / "figures" / f"{key}.png") for key, fig in figures.items()
    }
    overall = {
        k: results["test"][f"auroc{k[5:]}"] for k in ("auroc", "auroc_ci_low", "auroc_ci_high")
    }
    written.update(write_clinical_outputs(out_dir, test, clinical, overall, title, seed, level))
    written["results.csv"] = out_dir / "results.csv"
    _results_frame(results, threshold, level, title).to_csv(written["results.csv"], index=False)
    written["results.md"] = out_dir / "results.md"
    written["results.md"].write_text(
        _results_markdown(results, choice, settings.min_threshold_positives, ci, title)
        + "\n"
        + clinical_markdown(clinical, settings),
        encoding="utf-8",
    )
    if any(math.isnan(results["test"][m]) for m in METRICS):
        log.warning("some test metrics are undefined (n/a in %s)", written["results.md"])
    return written


def clinical_settings(evaluation_cfg: Any, calibration: str | None = None) -> ClinicalSettings:
    """The clinical settings of the ``evaluation`` config group (``calibration`` overrides)."""
    ev = evaluation_cfg
    subgroups = ev.get("subgroups")
    return ClinicalSettings(
        calibration=str(calibration or ev.get("calibration", "temperature")),
        prevalences=tuple(ev.get("prevalence", ClinicalSettings().prevalences)),
        sensitivities=tuple(ev.get("operating_sensitivities", ClinicalSettings().sensitivities)),
        subgroups=tuple(subgroups) if subgroups else None,
        min_patients=int(ev.get("min_subgroup_patients", ClinicalSettings().min_patients)),
        aggregate=str(ev.get("aggregate", "mean")),  # configs logged before the key existed
        decision_thresholds=tuple(ev.get("decision_thresholds", DEFAULT_DECISION_RANGE)),
        min_threshold_positives=int(ev.get("min_threshold_positives", MIN_THRESHOLD_POSITIVES)),
    )


def evaluate_with_config(
    predictions: pd.DataFrame,
    evaluation_cfg: Any,
    out_dir: Path | None = None,
    title: str = "",
    calibration: str | None = None,
) -> Evaluation:
    """:func:`evaluate_full` with the settings of the ``evaluation`` config group.

    Any ``y_pred`` column already present is replaced by the new threshold's decisions;
    ``calibration="given"`` keeps ``y_prob`` as recalibrated upstream (cross-validation folds).
    """
    ev = evaluation_cfg
    return evaluate_full(
        predictions.drop(columns=["y_pred"], errors="ignore"),
        rule=ev.threshold_rule,
        value=ev.threshold_value,
        target_sensitivity=ev.target_sensitivity,
        ci=Uncertainty(ev.n_bootstrap, ev.seed, ev.ci_level),
        settings=clinical_settings(ev, calibration),
        out_dir=out_dir,
        title=title,
    )
