"""End-of-run evaluation of a run's predictions: threshold on validation, the Contracts' MLflow
metric keys for ``test``, ``test_patient`` and ``val_final``, figures and the results table."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_labels, as_probabilities
from ecgml.evaluation.bootstrap import BootstrapPlan, patient_bootstrap_indices
from ecgml.evaluation.figures import (
    plot_calibration,
    plot_confusion,
    plot_pr,
    plot_roc,
    save_figure,
)
from ecgml.evaluation.metrics import METRICS, compute_metrics
from ecgml.evaluation.report import format_results_table
from ecgml.evaluation.threshold import choose_threshold

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "beat_id", "split", "y_true", "y_prob")
SPLITS = ("train", "val", "test")
#: Metric prefixes of the Contracts: test beats, test patients (mean probability), validation.
PREFIXES = ("test", "test_patient", "val_final")
FIGURES = ("roc", "pr", "confusion", "calibration")


def metric_keys() -> list[str]:
    """Exactly the end-of-run MLflow metric keys of the Contracts (design.md)."""
    keys = [f"{p}/{m}{s}" for p in PREFIXES for m in METRICS for s in ("", "_ci_low", "_ci_high")]
    return [*keys, "test/threshold", "test/n_beats", "test/n_patients"]


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
    df["patient_id"] = df["patient_id"].astype(str)
    return df


def patient_level(df: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: ``y_prob`` is the mean over its beats, ``y_true`` its label
    (columns ``patient_id, y_true, y_prob``, plus ``split`` if present), in first-seen order."""
    missing = [c for c in ("patient_id", "y_true", "y_prob") if c not in df.columns]
    if missing:
        raise EcgmlError(f"patient_level: missing column(s) {missing} in the predictions")
    grouped = df.groupby("patient_id", sort=False)
    keys = ["y_true", *(["split"] if "split" in df.columns else [])]
    spread = grouped[keys].nunique()
    for key in keys:
        if (spread[key] > 1).any():
            patient = spread.index[spread[key] > 1][0]
            raise EcgmlError(
                f"patient {str(patient)!r} has beats with different {key} values: "
                f"a patient has one {key}; fix the manifest or the split"
            )
    out = grouped[keys].first()
    out["y_prob"] = grouped["y_prob"].mean()
    return out.reset_index()[["patient_id", "y_true", "y_prob", *keys[1:]]]


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
) -> tuple[dict[str, float], pd.DataFrame]:
    """Evaluate a run's predictions (``patient_id, beat_id, split, y_true, y_prob`` + provenance).

    The threshold is chosen on the ``val`` rows (``rule``: fixed / youden / sensitivity) and
    applied to every row as ``y_pred``. Returns (the Contracts' MLflow metrics — exactly
    :func:`metric_keys` —, a copy of ``predictions`` with ``y_pred`` added or replaced). With
    ``out_dir``, writes ``figures/{roc,pr,confusion,calibration}.png``, ``results.md`` and
    ``results.csv`` there.
    """
    df = check_predictions(predictions)
    val, test = df[df["split"] == "val"], df[df["split"] == "test"]
    if test.empty:
        raise EcgmlError("predictions have no rows with split='test': nothing to evaluate")
    if val.empty and rule != "fixed":
        raise EcgmlError(
            f"threshold rule={rule!r} needs rows with split='val'; none found: "
            "use rule=fixed or keep validation predictions"
        )
    _warn_on_leakage(df)
    threshold = choose_threshold(
        val["y_true"].to_numpy(), val["y_prob"].to_numpy(), rule, value, target_sensitivity
    )
    df["y_pred"] = (df["y_prob"] >= threshold).astype(np.int8)
    test = df[df["split"] == "test"]
    plan = None
    if n_bootstrap > 0:
        plan = patient_bootstrap_indices(test["patient_id"], test["y_true"], n_bootstrap, seed)
    test_patients = patient_level(test)
    results = {
        "test": metrics_for_frame(test, threshold, plan, n_bootstrap, seed, level, "test"),
        "test_patient": metrics_for_frame(
            test_patients, threshold, None, n_bootstrap, seed, level, "test_patient"
        ),
        "val_final": metrics_for_frame(
            df[df["split"] == "val"], threshold, None, n_bootstrap, seed, level, "val_final"
        ),
    }
    metrics = {
        f"{prefix}/{m}{s}": float(results[prefix][f"{m}{s}"])
        for prefix in PREFIXES
        for m in METRICS
        for s in ("", "_ci_low", "_ci_high")
    }
    metrics["test/threshold"] = float(threshold)
    metrics["test/n_beats"] = float(results["test"]["n_beats"])
    metrics["test/n_patients"] = float(results["test"]["n_patients"])
    if out_dir is not None:
        write_evaluation_outputs(
            Path(out_dir), test, results, threshold, rule, plan, n_bootstrap, seed, level, title
        )
    with_pred = predictions.copy()
    with_pred["y_pred"] = df["y_pred"].to_numpy()
    return metrics, with_pred


def write_evaluation_outputs(
    out_dir: Path,
    test: pd.DataFrame,
    results: dict[str, dict[str, float]],
    threshold: float,
    rule: str,
    plan: BootstrapPlan | None,
    n_bootstrap: int,
    seed: int,
    level: float,
    title: str = "",
) -> dict[str, Path]:
    """Write the test-set figures and ``results.md`` / ``results.csv`` under ``out_dir``."""
    figures_dir = out_dir / "figures"
    y_true, y_prob = test["y_true"].to_numpy(), test["y_prob"].to_numpy()
    name = f"{title} — " if title else ""
    figures = {
        "roc": plot_roc(
            y_true,
            y_prob,
            test["patient_id"].to_numpy(),
            plan=plan,
            n_bootstrap=0,
            level=level,
            title=f"{name}ROC, test beats",
        ),
        "pr": plot_pr(y_true, y_prob, title=f"{name}Precision–recall, test beats"),
        "confusion": plot_confusion(
            y_true, test["y_pred"].to_numpy(), title=f"{name}Confusion matrix, test beats"
        ),
        "calibration": plot_calibration(y_true, y_prob, title=f"{name}Calibration, test beats"),
    }
    written = {key: save_figure(fig, figures_dir / f"{key}.png") for key, fig in figures.items()}
    group = title or "Test"
    beat_md, beat_frame = format_results_table({group: results["test"]}, level=level)
    patient_md, _ = format_results_table({group: results["test_patient"]}, level=level)
    t = results["test"]
    beat_frame["threshold"] = threshold
    for key in ("n_beats", "n_patients", "n_positive", "n_negative", "tp", "fp", "tn", "fn"):
        beat_frame[key] = t[key]
    written["results.csv"] = out_dir / "results.csv"
    beat_frame.to_csv(written["results.csv"], index=False)
    ci_note = (
        f"patient-level stratified bootstrap ({n_bootstrap} resamples, seed {seed})"
        if n_bootstrap > 0
        else "not computed (n_bootstrap=0)"
    )
    lines = [
        f"# Results{': ' + title if title else ''}",
        "",
        f"Test split, beat level (as the study's Table 2). Threshold {threshold:.4g}, chosen on "
        f"the validation split by rule `{rule}`; `y_pred = y_prob >= threshold`.",
        "",
        beat_md,
        f"{t['n_beats']} beats from {t['n_patients']} patients ({t['n_positive']} positive, "
        f"{t['n_negative']} negative beats); TP {t['tp']}, FP {t['fp']}, TN {t['tn']}, "
        f"FN {t['fn']}.",
        "",
        "Patient level (a patient's probability is the mean over its beats):",
        "",
        patient_md,
        f"{level:.0%} CIs: Wilson score intervals for accuracy, sensitivity, specificity, "
        f"precision and NPV; {ci_note} for AUROC, F1 and MCC. n/a: undefined (see the log).",
        "",
    ]
    written["results.md"] = out_dir / "results.md"
    written["results.md"].write_text("\n".join(lines), encoding="utf-8")
    if any(math.isnan(results["test"][m]) for m in METRICS):
        log.warning("some test metrics are undefined (n/a in %s)", written["results.md"])
    return written


def evaluate_with_config(
    predictions: pd.DataFrame, evaluation_cfg: Any, out_dir: Path | None = None, title: str = ""
) -> tuple[dict[str, float], pd.DataFrame]:
    """:func:`evaluate_predictions` with the settings of the ``evaluation`` config group.

    Any ``y_pred`` column already present is replaced by the new threshold's decisions.
    """
    ev = evaluation_cfg
    return evaluate_predictions(
        predictions.drop(columns=["y_pred"], errors="ignore"),
        rule=ev.threshold_rule,
        value=ev.threshold_value,
        target_sensitivity=ev.target_sensitivity,
        n_bootstrap=ev.n_bootstrap,
        seed=ev.seed,
        level=ev.ci_level,
        out_dir=out_dir,
        title=title,
    )
