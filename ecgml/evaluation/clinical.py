"""What a clinician or a reviewer asks after discrimination: calibration, clinical utility and
subgroups (TRIPOD+AI; Van Calster et al., Lancet Digit Health 2025).

:func:`recalibrate` fits the post-hoc calibrator on the validation beats and rewrites
``y_prob`` (keeping the model's own as ``y_prob_raw``); :func:`clinical_results` computes the
calibration metrics (raw and recalibrated), prevalence-adjusted PPV/NPV, the decision curve,
the operating-point table and the subgroup table of the test beats; :func:`write_clinical_outputs`
writes their files. All CIs reuse the run's one patient-level bootstrap plan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgml.errors import EcgmlError
from ecgml.evaluation.bootstrap import BootstrapPlan
from ecgml.evaluation.calibration import (
    CALIBRATION_METRICS,
    Calibrator,
    calibration_with_ci,
    check_calibration_method,
    fit_calibrator,
    plot_reliability,
)
from ecgml.evaluation.figures import save_figure
from ecgml.evaluation.patients import check_aggregate
from ecgml.evaluation.subgroups import (
    MIN_PATIENTS,
    plot_subgroups,
    resolve_subgroup_columns,
    subgroup_table,
)
from ecgml.evaluation.utility import (
    DEFAULT_DECISION_RANGE,
    DEFAULT_PREVALENCES,
    DEFAULT_SENSITIVITIES,
    check_prevalences,
    decision_curve,
    decision_curve_summary,
    decision_grid,
    operating_points,
    plot_decision_curve,
    prevalence_key,
    prevalence_metrics,
)

log = logging.getLogger(__name__)

#: ``calibration=given``: the rows were recalibrated upstream (each cross-validation fold by its
#: own calibrator); keep ``y_prob`` and read the raw scores from ``y_prob_raw``.
GIVEN = "given"
CI_SUFFIXES = ("", "_ci_low", "_ci_high")


#: The fewest positive validation patients a threshold rests on without a warning.
MIN_THRESHOLD_POSITIVES = 20


@dataclass(frozen=True)
class ClinicalSettings:
    """The clinical part of the ``evaluation`` config group."""

    calibration: str = "temperature"
    prevalences: tuple[float, ...] = DEFAULT_PREVALENCES
    sensitivities: tuple[float, ...] = DEFAULT_SENSITIVITIES
    subgroups: tuple[str, ...] | None = None
    min_patients: int = MIN_PATIENTS
    aggregate: str = "mean"  # patient level: mean / median / max of the beats' probabilities
    #: The decision curve's range of threshold probabilities (the clinically plausible ones).
    decision_thresholds: tuple[float, float] = DEFAULT_DECISION_RANGE
    #: Fewer positive validation patients than this: the threshold is flagged as fragile.
    min_threshold_positives: int = MIN_THRESHOLD_POSITIVES

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)
        ends = [float(t) for t in self.decision_thresholds]
        if len(ends) != 2 or not 0.0 < ends[0] < ends[1] < 1.0:
            raise EcgmlError(
                f"evaluation.decision_thresholds={ends} is not a range inside (0, 1): give "
                "the lowest and highest threshold probability, e.g. [0.01,0.5]"
            )
        object.__setattr__(self, "decision_thresholds", (ends[0], ends[1]))
        object.__setattr__(self, "prevalences", check_prevalences(self.prevalences))
        if self.calibration != GIVEN:
            check_calibration_method(self.calibration)
        for s in self.sensitivities:
            if not 0.0 < float(s) <= 1.0:
                raise EcgmlError(
                    f"evaluation.operating_sensitivities={s} is not in (0, 1]: give target "
                    "sensitivities as fractions, e.g. [0.9,0.95]"
                )


def clinical_metric_keys(prevalences: Sequence[float] = DEFAULT_PREVALENCES) -> list[str]:
    """The end-of-run calibration and prevalence keys of docs/contracts.md."""
    names = [*CALIBRATION_METRICS, *(f"{m}_raw" for m in CALIBRATION_METRICS)]
    for p in check_prevalences(prevalences):
        names += [f"ppv_at_{prevalence_key(p)}", f"npv_at_{prevalence_key(p)}"]
    return [f"test/{name}{s}" for name in names for s in CI_SUFFIXES]


def recalibrate(df: pd.DataFrame, method: str) -> tuple[pd.DataFrame, Calibrator]:
    """(a copy with ``y_prob`` recalibrated and ``y_prob_raw`` the model's own, the calibrator).

    The calibrator is fitted on the ``val`` rows' raw scores (``y_prob_raw`` when the frame
    already has it, so re-evaluating a run refits from the model's own outputs, never stacks).
    """
    out = df.copy()
    if method == GIVEN:
        if "y_prob_raw" not in out.columns:
            out["y_prob_raw"] = out["y_prob"]
        return out, Calibrator("none", note="recalibrated upstream (per fold)")
    raw = out["y_prob_raw"] if "y_prob_raw" in out.columns else out["y_prob"]
    out["y_prob_raw"] = raw.to_numpy(dtype=float)
    val = out["split"] == "val"
    check_calibration_method(method, int(val.sum()))
    if method != "none" and not val.any():
        calibrator = Calibrator("none", note="no validation rows: calibration cannot be fitted")
        log.warning("calibration=%s: %s", method, calibrator.note)
    else:
        calibrator = fit_calibrator(out.loc[val, "y_true"], out.loc[val, "y_prob_raw"], method)
    out["y_prob"] = calibrator.apply(out["y_prob_raw"].to_numpy())
    log.info("calibration: %s", calibrator.describe())
    return out, calibrator


@dataclass
class ClinicalResults:
    """The clinical evaluation of the test beats: MLflow metrics and the tables behind files."""

    metrics: dict[str, float]
    calibrator: Calibrator
    decision_curve: pd.DataFrame = field(repr=False)
    operating_points: pd.DataFrame = field(repr=False)
    subgroups: pd.DataFrame = field(repr=False)

    @property
    def decision_summary(self) -> str:
        return decision_curve_summary(self.decision_curve)


def _calibration_keys(test: pd.DataFrame, plan: BootstrapPlan | None, level: float) -> dict:
    ids, y = test["patient_id"].to_numpy(), test["y_true"].to_numpy()
    recal = calibration_with_ci(y, test["y_prob"].to_numpy(), ids, plan, level)
    raw = calibration_with_ci(y, test["y_prob_raw"].to_numpy(), ids, plan, level)
    metrics = {f"test/{k}": float(v) for k, v in recal.items()}
    for m in CALIBRATION_METRICS:
        for s in CI_SUFFIXES:
            metrics[f"test/{m}_raw{s}"] = float(raw[f"{m}{s}"])
    return metrics


def clinical_results(
    val: pd.DataFrame,
    test: pd.DataFrame,
    threshold: float,
    plan: BootstrapPlan | None,
    calibrator: Calibrator,
    settings: ClinicalSettings,
    n_bootstrap: int,
    seed: int,
    level: float,
) -> ClinicalResults:
    """Calibration, utility and subgroup results of the (recalibrated) test beats."""
    metrics = _calibration_keys(test, plan, level)
    ids, y = test["patient_id"].to_numpy(), test["y_true"].to_numpy()
    prevalence = prevalence_metrics(
        plan, ids, y, test["y_pred"].to_numpy(), settings.prevalences, level
    )
    metrics.update({f"test/{k}": float(v) for k, v in prevalence.items()})
    curve = decision_curve(
        y,
        test["y_prob"].to_numpy(),
        decision_grid(*settings.decision_thresholds),
        patient_ids=ids,
        plan=plan,
        level=level,
    )
    points = operating_points(
        val["y_true"].to_numpy(),
        val["y_prob"].to_numpy(),
        y,
        test["y_prob"].to_numpy(),
        ids,
        plan=plan,
        sensitivities=settings.sensitivities,
        prevalences=settings.prevalences,
        level=level,
    )
    columns = resolve_subgroup_columns(test, settings.subgroups)
    groups = subgroup_table(
        test,
        columns,
        threshold,
        n_bootstrap=n_bootstrap,
        seed=seed,
        level=level,
        min_patients=settings.min_patients,
        aggregate=settings.aggregate,
    )
    return ClinicalResults(metrics, calibrator, curve, points, groups)


def write_clinical_outputs(
    out_dir: Path,
    test: pd.DataFrame,
    clinical: ClinicalResults,
    overall: dict[str, float],
    title: str = "",
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Path]:
    """``figures/{calibration,decision_curve,subgroups}.png``, ``decision_curve.csv``,
    ``operating_points.csv`` and ``subgroups.csv`` under ``out_dir``."""
    name = f"{title} — " if title else ""
    figures = {
        "calibration": plot_reliability(
            test["y_true"].to_numpy(),
            test["y_prob_raw"].to_numpy(),
            test["y_prob"].to_numpy(),
            test["patient_id"].to_numpy(),
            seed=seed,
            level=level,
            title=f"{name}Calibration, test beats",
        ),
        "decision_curve": plot_decision_curve(
            clinical.decision_curve, title=f"{name}Decision curve, test beats"
        ),
        "subgroups": plot_subgroups(
            clinical.subgroups, "auroc", overall=overall, title=f"{name}AUROC by subgroup"
        ),
    }
    written = {k: save_figure(f, out_dir / "figures" / f"{k}.png") for k, f in figures.items()}
    tables = {
        "decision_curve.csv": clinical.decision_curve,
        "operating_points.csv": clinical.operating_points,
        "subgroups.csv": clinical.subgroups,
    }
    for file_name, frame in tables.items():
        written[file_name] = out_dir / file_name
        frame.to_csv(written[file_name], index=False)
    return written


def _fmt(metrics: dict[str, float], key: str, digits: int = 3, percent: bool = False) -> str:
    value, low, high = (metrics.get(f"{key}{s}", np.nan) for s in CI_SUFFIXES)
    if not np.isfinite(value):
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    point = f"{scale * value:.{digits}f}{unit}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return point
    return f"{point} ({scale * low:.{digits}f}–{scale * high:.{digits}f})"


def clinical_markdown(clinical: ClinicalResults, settings: ClinicalSettings) -> str:
    """The ``results.md`` sections on calibration, clinical utility and subgroups."""
    m = clinical.metrics
    rows = [
        f"| {metric} | {_fmt(m, f'test/{metric}_raw')} | {_fmt(m, f'test/{metric}')} |"
        for metric in CALIBRATION_METRICS
    ]
    lines = [
        "## Calibration",
        "",
        f"Recalibration: {clinical.calibrator.describe()}. Test beats, 95% CIs by the same "
        "patient-level bootstrap.",
        "",
        "| metric | model's own | recalibrated |",
        "|---|---|---|",
        *rows,
        "",
        "## Clinical utility",
        "",
        f"Decision curve: {clinical.decision_summary}.",
        "",
        "PPV / NPV at other prevalences (Bayes' rule from the test sensitivity and specificity):",
        "",
        "| prevalence | PPV | NPV |",
        "|---|---|---|",
    ]
    for p in settings.prevalences:
        key = prevalence_key(p)
        lines.append(
            f"| {p:.0%} | {_fmt(m, f'test/ppv_at_{key}', 1, True)} | "
            f"{_fmt(m, f'test/npv_at_{key}', 1, True)} |"
        )
    lines += ["", *_subgroup_lines(clinical.subgroups), ""]
    return "\n".join(lines)


def _subgroup_lines(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return ["## Subgroups", "", "No subgroup column (center, device) in the predictions."]
    lines = [
        "## Subgroups",
        "",
        "| subgroup | value | patients | AUROC (95% CI) | heterogeneity p |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        flag = " (few: unreliable)" if row.small else ""
        auroc = _fmt(row._asdict(), "auroc", 2)
        p = "n/a" if not np.isfinite(row.heterogeneity_p) else f"{row.heterogeneity_p:.3g}"
        lines.append(f"| {row.subgroup} | {row.value} | {row.n_patients}{flag} | {auroc} | {p} |")
    notes = table.drop_duplicates("subgroup").dropna(subset=["heterogeneity_note"])
    notes = notes[notes["heterogeneity_note"].astype(str).str.strip() != ""]
    if not notes.empty:
        lines.append("")
        for r in notes.itertuples(index=False):
            tested = "" if np.isfinite(r.heterogeneity_p) else "not tested: "
            lines.append(f"Heterogeneity by {r.subgroup}: {tested}{r.heterogeneity_note}.")
    return lines
