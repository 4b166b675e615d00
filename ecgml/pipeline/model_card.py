"""``model_card.md``: one page a clinician or a reviewer reads before trusting a run.

Written for every training run (and put in the registered model version's description by
``ecgml.promote``). It gathers what the run measured — discrimination with CIs, calibration,
clinical utility, subgroups, explainability — beside what it is for, the data it saw, its
known limitations and a TRIPOD+AI checklist that says which items the run reports and which
it cannot. Nothing in it is free text about the model's quality: every number comes from the
run's own evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
from omegaconf import DictConfig

from ecgml.data.datamodule import BeatTable
from ecgml.evaluation import Evaluation
from ecgml.evaluation.clinical import ClinicalSettings, clinical_markdown
from ecgml.evaluation.metrics import METRICS
from ecgml.pipeline.validation_report import checklist_summary

MODEL_CARD = "model_card.md"
#: Fewer test patients than this make every CI wide enough to say so in the limitations.
SMALL_TEST_PATIENTS = 100


@dataclass(frozen=True)
class CardInputs:
    """Everything the card reads: the composed config, the data, the run's results."""

    cfg: DictConfig
    run_id: str
    table: BeatTable
    metrics: Mapping[str, float]
    evaluation: Evaluation
    settings: ClinicalSettings
    git_commit: str = "unknown"
    #: The validation report's TRIPOD+AI rows (:func:`~ecgml.pipeline.validation_report.
    #: report_rows`): the card's checklist is their summary.
    checklist: list[tuple[str, str, str, str]] = field(default_factory=list)


def _num(metrics: Mapping[str, float], key: str, digits: int = 3, percent: bool = False) -> str:
    value = metrics.get(key, math.nan)
    low, high = metrics.get(f"{key}_ci_low", math.nan), metrics.get(f"{key}_ci_high", math.nan)
    if value is None or not math.isfinite(value):
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = f"{scale * value:.{digits}f}{unit}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" ({scale * low:.{digits}f}–{scale * high:.{digits}f})"
    return text


def _intended_use(cfg: DictConfig) -> list[str]:
    disorder, negative = cfg.disorder.name, cfg.disorder.negative
    return [
        "## Intended use",
        "",
        f"- **Task**: tell {disorder} from {negative} in one lead-II heartbeat cut from a "
        "resting 10 s ECG (a beat store or a digitized paper ECG); output a probability and a "
        "yes/no decision at the threshold below. A patient's probability is the mean of its "
        "beats'.",
        "- **Population**: adults like the training cohort (the reference study: heart-failure "
        "patients with a serum electrolyte measured close to the ECG). Other populations, "
        "paediatric ECGs, paced rhythms and non-sinus rhythms are out of scope.",
        "- **Use**: research and triage support only — flag patients for a laboratory test. "
        "Not a substitute for serum electrolytes; not cleared for clinical decisions.",
        "",
    ]


def _data_source(cfg: DictConfig) -> str:
    data = cfg.data
    if data.source == "synthetic":
        c = data.cohort
        return (
            f"ecgml's synthetic cohort (scale {c.scale}, cohort seed {c.seed}, severity "
            f"{c.get('severity', 1.0)}): known ground truth, **no real patients**"
        )
    return "a user beat store (`data=beats`)"


def _data_lines(inputs: CardInputs) -> list[str]:
    table, cfg = inputs.table, inputs.cfg
    splits = table.splits
    lines = [
        "## Data",
        "",
        f"- Source: {_data_source(cfg)}; dataset digest `{table.digest}`.",
        f"- Labels: {cfg.disorder.name} = 1, {cfg.disorder.negative} = 0; "
        f"{table.summary.n_patients} patients ({table.summary.n_positive_patients} positive, "
        f"{table.summary.n_negative_patients} negative), {table.summary.n_beats} beats; "
        f"{table.summary.n_conflicting_patients} patients with more than one group excluded.",
        f"- Split: `{cfg.split.name}` by patient (no patient in two subsets), seed "
        f"{cfg.split.get('seed', cfg.seed)}.",
        "",
        "| split | patients | positive patients | beats |",
        "|---|---|---|---|",
    ]
    beats = table.meta.groupby("split").size()
    for name in ("train", "val", "test"):
        part = splits[splits["split"] == name]
        lines.append(
            f"| {name} | {len(part)} | {int(part['y'].sum())} | {int(beats.get(name, 0))} |"
        )
    lines += [
        "",
        f"- Input: {table.seq_len} samples at {table.fs:g} Hz, R-peak at sample "
        f"{table.r_index}, zero-padded (`data.align={cfg.data.align}`).",
        "",
    ]
    return lines


def _model_lines(cfg: DictConfig, metrics: Mapping[str, float], git_commit: str) -> list[str]:
    backbone = cfg.model.get("backbone")
    target = backbone.get("_target_", "") if backbone is not None else ""
    return [
        "## Model",
        "",
        f"- `model={cfg.model.name}` ({target or 'scikit-learn'}), seed {cfg.seed}, "
        f"ensemble of {cfg.training.get('ensemble', 1)}; git commit `{git_commit}`; the whole "
        "composed config is the run's `config.yaml`.",
        f"- Decision threshold {metrics.get('test/threshold', math.nan):.4g}, chosen on the "
        f"validation patients (rule `{cfg.evaluation.threshold_rule}`).",
        "",
    ]


def _performance_lines(metrics: Mapping[str, float]) -> list[str]:
    lines = [
        "## Performance (test split, 95% CIs)",
        "",
        "| metric | beat level | patient level |",
        "|---|---|---|",
    ]
    for m in METRICS:
        percent = m not in ("auroc", "f1", "mcc")
        digits = 1 if percent else 3
        lines.append(
            f"| {m} | {_num(metrics, f'test/{m}', digits, percent)} | "
            f"{_num(metrics, f'test_patient/{m}', digits, percent)} |"
        )
    lines += [
        "",
        f"{int(metrics.get('test/n_beats', 0))} test beats from "
        f"{int(metrics.get('test/n_patients', 0))} patients. Accuracy, sensitivity, "
        "specificity, precision and NPV at one threshold mislead on their own: read them with "
        "the calibration and the decision curve below.",
        "",
    ]
    return lines


def _operating_point_lines(points: pd.DataFrame, settings: ClinicalSettings) -> list[str]:
    if points.empty or "sensitivity" not in points.columns:
        return []
    head = " | ".join(f"PPV at {p:.0%}" for p in settings.prevalences)
    lines = [
        "Operating points (threshold chosen on validation to reach the target sensitivity):",
        "",
        f"| target sensitivity | threshold | test sensitivity | test specificity | {head} |",
        "|---|---|---|---|" + "---|" * len(settings.prevalences),
    ]
    for row in points.to_dict("records"):
        ppvs = " | ".join(_num(row, f"ppv_at_{p:g}", 1, percent=True) for p in settings.prevalences)
        lines.append(
            f"| {row['target_sensitivity']:.0%} | {row.get('threshold', math.nan):.3g} | "
            f"{_num(row, 'sensitivity', 1, True)} | {_num(row, 'specificity', 1, True)} | "
            f"{ppvs} |"
        )
    return [*lines, ""]


def _explain_lines(cfg: DictConfig, metrics: Mapping[str, float]) -> list[str]:
    lines = ["## Explainability", ""]
    if "explain/n_beats" not in metrics:
        return [*lines, "Not computed for this run (`explain.enabled=false` or no network).", ""]
    regions = sorted(
        (
            k
            for k in metrics
            if k.startswith("explain/") and k.endswith("_region_fraction_positive")
        ),
        key=lambda k: -metrics[k] if math.isfinite(metrics[k]) else 0.0,
    )
    top = regions[0].removeprefix("explain/").split("_region")[0].upper() if regions else "n/a"
    share = metrics.get(regions[0], math.nan) if regions else math.nan
    sanity = metrics.get("explain/sanity_passed", math.nan)
    sanity_text = "n/a" if not math.isfinite(sanity) else ("passed" if sanity else "FAILED")
    return [
        *lines,
        f"- Gradient saliency on {int(metrics['explain/n_beats'])} test beats "
        f"(`explain.method={cfg.explain.get('method', 'saliency')}`): the beats with the "
        f"disorder put the largest share of their saliency on the **{top}** region "
        f"({share:.0%} of the saliency mass on average).",
        f"- Randomized-weights sanity check (Adebayo et al.): {sanity_text}; saliency profile "
        f"similarity to a random network {metrics.get('explain/sanity_similarity', math.nan):.2f}.",
        "- Details: `explain/explain.md`, overlays in `explain/`.",
        "",
    ]


def _limitations(inputs: CardInputs) -> list[str]:
    cfg, m = inputs.cfg, inputs.metrics
    items = [
        "One beat of one lead: rhythm, the other leads and beat-to-beat variation are unseen.",
        "Electrolyte levels are binarized (disorder vs normal); severity and mixed disorders "
        "are not modelled by this run.",
    ]
    if cfg.data.source == "synthetic":
        items.append(
            "Trained and tested on synthetic beats: the figures show what the pipeline can "
            "learn from the cohort's encoded effects, not how it performs on patients."
        )
    if cfg.split.name != "leave_center_out":
        items.append(
            "Internal validation only (patients of the same centers and devices in every "
            "split): no external validation."
        )
    n_test = int(m.get("test/n_patients", 0))
    if n_test < SMALL_TEST_PATIENTS:
        items.append(f"Small test set ({n_test} patients): every CI above is wide.")
    small = inputs.evaluation.clinical.subgroups
    if not small.empty and bool(small["small"].any()):
        items.append(
            "Some subgroup cells have fewer than "
            f"{inputs.settings.min_patients} patients (flagged in the table)."
        )
    calibrator = inputs.evaluation.calibrator
    if calibrator.method == "none" and calibrator.note:
        items.append(f"No recalibration: {calibrator.note}.")
    items.append(
        "Prevalence-adjusted PPV/NPV assume the test sensitivity and specificity transfer to "
        "the new setting."
    )
    return ["## Known limitations", "", *(f"- {item}" for item in items), ""]


def _tripod_lines(inputs: CardInputs) -> list[str]:
    """The validation report's item statuses, one line each (the report holds the evidence)."""
    rows = inputs.checklist
    summary = checklist_summary(rows)
    return [
        "## TRIPOD+AI checklist (Collins et al., BMJ 2024)",
        "",
        f"{summary}; each item with this run's evidence in `validation_report.html` "
        "(`validation_report.md`).",
        "",
        "| item | topic | status |",
        "|---|---|---|",
        *(f"| {n} | {topic} | {status} |" for n, topic, status, _ in rows),
        "",
    ]


def model_card_markdown(inputs: CardInputs) -> str:
    """The ``model_card.md`` text of one run."""
    cfg, m = inputs.cfg, inputs.metrics
    clinical = clinical_markdown(inputs.evaluation.clinical, inputs.settings).strip()
    lines = [
        f"# Model card: {cfg.disorder.name} vs {cfg.disorder.negative} ({cfg.model.name})",
        "",
        f"MLflow run `{inputs.run_id}`. Generated by ecgml from this run's own evaluation; "
        "every number has its 95% CI (Wilson for proportions, patient-level stratified "
        "bootstrap otherwise).",
        "",
        *_intended_use(cfg),
        *_data_lines(inputs),
        *_model_lines(cfg, m, inputs.git_commit),
        *_performance_lines(m),
        clinical,
        "",
        *_operating_point_lines(inputs.evaluation.clinical.operating_points, inputs.settings),
        *_explain_lines(cfg, m),
        *_limitations(inputs),
        *_tripod_lines(inputs),
    ]
    return "\n".join(lines)
