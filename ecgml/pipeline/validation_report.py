"""``validation_report.md`` / ``.html``: a finished run read against TRIPOD+AI, item by item.

Built from what the run *logged* (its metrics, params, tags and artifact names, read back from
the tracking store), so every training run — any task, any unit, a holdout run or a k-fold
parent — gets one, and ``python -m ecgml.evaluate run_id=…`` rebuilds it after re-evaluating.
Each of the 27 TRIPOD+AI items (Collins et al., BMJ 2024) is marked ``reported`` (with the
run's own evidence: numbers with their CIs, the file that holds the rest), ``not applicable``
(with why) or ``missing`` (what the study itself has to add: a training run cannot know its
ethics approval). The model card's checklist is a summary of the same rows
(:func:`checklist_summary`): one source.

The HTML is one self-contained file (figures embedded), so MLflow's artifact view shows it.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecgml.tracking.artifacts import log_files

REPORT_MD = "validation_report.md"
REPORT_HTML = "validation_report.html"
REPORTED, NOT_APPLICABLE, MISSING = "reported", "not applicable", "missing"
#: Figures embedded in the HTML when the run logged them (path, caption).
FIGURES = (
    ("figures/roc_patient.png", "ROC, patient level"),
    ("figures/roc.png", "ROC"),
    ("figures/calibration.png", "Calibration, with the probability histogram"),
    ("figures/decision_curve.png", "Decision curve"),
    ("figures/scatter.png", "Estimate vs measured"),
    ("figures/bland_altman.png", "Bland–Altman"),
    ("figures/subgroups.png", "Subgroups"),
)
STUDY = "outside a training run: the study reports it"


@dataclass(frozen=True)
class RunEvidence:
    """What a finished run logged, as the report reads it."""

    run_id: str
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    tags: Mapping[str, str]
    artifacts: frozenset[str]
    children: int = 0  # a cross-validation parent's fold runs
    read_file: Callable[[str], bytes | None] = field(default=lambda _: None, repr=False)

    @classmethod
    def of_run(cls, client: Any, run_id: str, into: Path) -> RunEvidence:
        """Read ``run_id`` back from the tracking store (figures downloaded under ``into``)."""
        run = client.get_run(run_id)
        names = frozenset(_artifact_names(client, run_id))
        children = client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000
        )

        def read(path: str) -> bytes | None:
            if path not in names:
                return None
            try:
                return Path(client.download_artifacts(run_id, path, str(into))).read_bytes()
            except Exception:  # a figure that cannot be fetched is left out, not fatal
                return None

        return cls(
            run_id,
            dict(run.data.metrics),
            dict(run.data.params),
            dict(run.data.tags),
            names,
            len(children),
            read,
        )

    def value(self, key: str, digits: int = 3) -> str | None:
        """``key`` with its CI (``0.912 (0.850–0.960)``), or None when not logged."""
        value = self.metrics.get(key)
        if value is None or not math.isfinite(value):
            return None
        low, high = self.metrics.get(f"{key}_ci_low"), self.metrics.get(f"{key}_ci_high")
        text = f"{value:.{digits}f}"
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            text += f" ({low:.{digits}f}–{high:.{digits}f})"
        return text

    def has(self, *paths: str) -> list[str]:
        return [p for p in paths if p in self.artifacts]

    @property
    def task(self) -> str:
        """The run's ``task`` tag (runs from before it: the ``task.name`` param)."""
        return str(self.tags.get("task", self.params.get("task.name", "binary")))

    @property
    def serum(self) -> bool:
        """A serum run: it logged the regression metrics."""
        return "test/mae" in self.metrics or "test_patient/mae" in self.metrics


def _artifact_names(client: Any, run_id: str, path: str | None = None, depth: int = 0) -> list[str]:
    names = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            if depth < 2 and not item.path.startswith("checkpoints"):
                names += _artifact_names(client, run_id, item.path, depth + 1)
        else:
            names.append(item.path)
    return names


Row = tuple[str, str, str, str]  # (item, topic, status, evidence)
ItemRule = Callable[[RunEvidence], tuple[str, str]]


def _files(ev: RunEvidence, *paths: str) -> str:
    found = ev.has(*paths)
    return ", ".join(f"`{p}`" for p in found)


def _data(ev: RunEvidence) -> tuple[str, str]:
    source = ev.params.get("data.source", "?")
    digest = ev.tags.get("dataset.digest")
    text = f"data.source={source}"
    if ev.params.get("data.path") not in (None, "", "None"):
        text += f", data.path={ev.params['data.path']}"
    if digest:
        text += f"; dataset digest `{digest}`"
    if source == "synthetic":
        text += " (the synthetic cohort: no patients, no accrual dates)"
    return REPORTED, text


def _participants(ev: RunEvidence) -> tuple[str, str]:
    n = ev.metrics.get("test/n_patients")
    text = f"test patients {int(n)}" if n is not None else "counts in the splits file"
    files = _files(ev, "splits.csv", "skipped_records.csv")
    return REPORTED, f"{text}; {files}" if files else text


def _preparation(ev: RunEvidence) -> tuple[str, str]:
    keys = ("data.unit", "data.leads", "data.fs", "data.beat_length", "data.baseline", "data.align")
    shown = [f"{k}={ev.params[k]}" for k in keys if k in ev.params]
    return REPORTED, "; ".join(shown) + " (all settings in `config.yaml`)"


def _outcome(ev: RunEvidence) -> tuple[str, str]:
    if ev.serum:
        return REPORTED, f"serum {ev.task} in mmol/L (the store's `{ev.task}` column)"
    disorder = ev.params.get("disorder.name", ev.tags.get("disorder", "?"))
    negative = ev.params.get("disorder.negative", "normal")
    return REPORTED, f"task {ev.task}: {disorder} vs {negative} (disorder config)"


def _sample_size(ev: RunEvidence) -> tuple[str, str]:
    n = ev.metrics.get("test/n_patients")
    count = f"{int(n)} test patients" if n is not None else "the split counts"
    return MISSING, f"{count}; no formal sample-size calculation (the study's to justify)"


def _missing_data(ev: RunEvidence) -> tuple[str, str]:
    skipped = [k for k in ev.metrics if k.startswith("records/")]
    if "skipped_records.csv" in ev.artifacts or skipped:
        return REPORTED, "records left out with their reason: `skipped_records.csv`; no imputation"
    return REPORTED, "beats rejected by the quality filter are counted; no imputation"


def _methods(ev: RunEvidence) -> tuple[str, str]:
    model = ev.params.get("model.name", "?")
    split = ev.params.get("split.name", "?")
    n_boot = ev.params.get("evaluation.n_bootstrap", "?")
    level = ev.params.get("evaluation.ci_level", "0.95")
    text = (
        f"model {model}; split {split} (patient level); {n_boot} patient-level bootstrap "
        f"resamples, {level} CIs"
    )
    if ev.children:
        text += f"; {ev.children} fold runs, out-of-fold predictions pooled"
    return REPORTED, text


def _imbalance(ev: RunEvidence) -> tuple[str, str]:
    if ev.serum:
        return NOT_APPLICABLE, "a serum value, no classes"
    return REPORTED, f"loss weight training.pos_weight={ev.params.get('training.pos_weight', '?')}"


def _fairness(ev: RunEvidence) -> tuple[str, str]:
    files = _files(ev, "subgroups.csv", "results_by_center.csv", "results_by_device.csv")
    if files:
        minimum = ev.params.get("evaluation.min_subgroup_patients", "?")
        return REPORTED, f"{files} (cells under {minimum} patients flagged)"
    return MISSING, "no subgroup table: the data have no center/device column"


def _output(ev: RunEvidence) -> tuple[str, str]:
    if ev.serum:
        level = ev.params.get("evaluation.interval_level", "0.9")
        return REPORTED, (
            f"mmol/L with a conformal {level} interval and severity probabilities "
            "(`patient_predictions.csv`)"
        )
    threshold = ev.value("test/threshold")
    rule = ev.params.get("evaluation.threshold_rule", "?")
    for setting in ev.tags.get("ecgml.evaluation", "").split():  # a later ecgml.evaluate's
        if setting.startswith("threshold_rule="):
            rule = setting.removeprefix("threshold_rule=")
    text = "a recalibrated probability per beat, a patient's mean"
    return REPORTED, f"{text}; threshold {threshold or 'per output'} ({rule}, chosen on validation)"


def _training_vs_evaluation(ev: RunEvidence) -> tuple[str, str]:
    external = ev.params.get("split.name") == "leave_center_out"
    kind = "leave-center-out (external by center)" if external else "internal (same centers)"
    return REPORTED, f"{kind}; training, validation and test patients disjoint (`splits.csv`)"


def _open_science(ev: RunEvidence) -> tuple[str, str]:
    commit = ev.tags.get("git.commit", "unknown")
    dirty = " (uncommitted changes)" if ev.tags.get("git.dirty") == "True" else ""
    return (
        REPORTED,
        f"code: git commit `{commit}`{dirty}; `config.yaml`; funding, protocol: {STUDY}",
    )


def _development(ev: RunEvidence) -> tuple[str, str]:
    epochs = [k for k in ev.metrics if k.startswith(("val/", "train/"))]
    files = _files(ev, "checkpoints/last.ckpt")
    text = f"per-epoch curves ({len(epochs)} keys)" if epochs else "one fit per fold"
    return REPORTED, text + (f"; {files}" if files else "")


def _specification(ev: RunEvidence) -> tuple[str, str]:
    return REPORTED, (
        "the logged model (`ecgml_model.json`: architecture, preparation, threshold, "
        "calibration); backbone settings model.* in `config.yaml`"
    )


def _performance(ev: RunEvidence) -> tuple[str, str]:
    parts = []
    if ev.serum:
        for key, name in (
            ("test_patient/mae", "MAE (patients)"),
            ("test_patient/pearson_r", "r"),
            ("test_patient/interval_coverage", "interval coverage"),
        ):
            if (text := ev.value(key)) is not None:
                parts.append(f"{name} {text}")
        parts += [
            f"{k.removeprefix('test_patient/')} {ev.value(k)}"
            for k in sorted(ev.metrics)
            if k.startswith("test_patient/auroc_")
            and not k.endswith(("_ci_low", "_ci_high"))
            and ev.value(k)
        ]
    else:
        for key, name in (
            ("test_patient/auroc", "AUROC (patients)"),
            ("test/auroc", "AUROC (beats)"),
            ("test_patient/macro_auroc", "macro AUROC (patients)"),
            ("test/brier", "Brier"),
            ("test/calibration_slope", "calibration slope"),
        ):
            if (text := ev.value(key)) is not None:
                parts.append(f"{name} {text}")
        prevalences = sorted(
            k.removeprefix("test/ppv_at_")
            for k in ev.metrics
            if k.startswith("test/ppv_at_") and not k.endswith(("_ci_low", "_ci_high"))
        )
        for prevalence in prevalences:
            ppv, npv = ev.value(f"test/ppv_at_{prevalence}"), ev.value(f"test/npv_at_{prevalence}")
            if ppv and npv:
                parts.append(f"PPV/NPV at prevalence {prevalence}: {ppv} / {npv}")
        if "figures/decision_curve.png" in ev.artifacts:
            span = ev.params.get("evaluation.decision_thresholds", "?")
            parts.append(f"decision curve over threshold probabilities {span}")
    files = _files(
        ev,
        "figures/calibration.png",
        "figures/decision_curve.png",
        "operating_points.csv",
        "decision_curve.csv",
        "results.md",
    )
    status = REPORTED if parts else MISSING
    return status, "; ".join(parts) + (f"; {files}" if files else "")


def _updating(ev: RunEvidence) -> tuple[str, str]:
    calibration = ev.tags.get("ecgml.calibration")
    if calibration:
        return REPORTED, f"recalibration on validation: {calibration}"
    if ev.serum:
        return REPORTED, "intervals calibrated on the validation patients (conformal)"
    return NOT_APPLICABLE, "no recalibration logged"


def _explainability(ev: RunEvidence) -> tuple[str, str]:
    files = _files(ev, "explain/explain.md", "explain/stats.csv")
    if files:
        return REPORTED, f"gradient saliency with its randomization sanity check: {files}"
    return NOT_APPLICABLE, "explain.enabled=false or a unit without saliency"


def _limitations(ev: RunEvidence) -> tuple[str, str]:
    items = []
    if ev.params.get("data.source") == "synthetic":
        items.append("synthetic data: what the pipeline learns, not patient performance")
    if ev.params.get("split.name") != "leave_center_out":
        items.append("internal validation only")
    n = ev.metrics.get("test/n_patients", 0)
    if n < 100:
        items.append(f"small test set ({int(n)} patients): wide CIs")
    return REPORTED, "; ".join(items) or "none found by the run; the study's discussion"


def _usability(ev: RunEvidence) -> tuple[str, str]:
    return REPORTED, (
        "`python -m ecgml.promote run_id=…`, then `ecgml.predict` or `mlflow models serve` "
        "(request and response schema in the logged model)"
    )


def _study(_: RunEvidence) -> tuple[str, str]:
    return MISSING, STUDY


def _intended(ev: RunEvidence) -> tuple[str, str]:
    return REPORTED, f"{_outcome(ev)[1]}, from the ECG; the run page's description"


#: The 27 TRIPOD+AI items and how a run shows each.
ITEMS: tuple[tuple[str, str, ItemRule], ...] = (
    ("1", "Title", _study),
    ("2", "Abstract", _study),
    ("3", "Background: context, intended use, inequalities", _intended),
    ("4", "Objectives (development and internal validation)", _methods),
    ("5", "Data: sources, dates, provenance", _data),
    ("6", "Participants: setting, eligibility", _participants),
    ("7", "Data preparation", _preparation),
    ("8", "Outcome", _outcome),
    ("9", "Predictors (the ECG input)", _preparation),
    ("10", "Sample size", _sample_size),
    ("11", "Missing data and exclusions", _missing_data),
    ("12", "Analytical methods: split, model, performance measures", _methods),
    ("13", "Class imbalance", _imbalance),
    ("14", "Fairness: subgroups", _fairness),
    ("15", "Model output", _output),
    ("16", "Training versus evaluation data", _training_vs_evaluation),
    ("17", "Ethical approval", _study),
    (
        "18",
        "Open science: funding, conflicts, protocol, registration, data and code",
        _open_science,
    ),
    ("19", "Patient and public involvement", _study),
    ("20", "Participants (results): flow and characteristics", _participants),
    ("21", "Model development", _development),
    ("22", "Model specification", _specification),
    ("23", "Model performance: discrimination, calibration, utility, severity", _performance),
    ("24", "Model updating (recalibration)", _updating),
    ("25", "Interpretation (incl. explainability)", _explainability),
    ("26", "Limitations", _limitations),
    ("27", "Usability in its context", _usability),
)


def report_rows(ev: RunEvidence) -> list[Row]:
    """One row per TRIPOD+AI item: (item, topic, status, evidence)."""
    return [(number, topic, *rule(ev)) for number, topic, rule in ITEMS]


def checklist_summary(rows: list[Row]) -> str:
    """``24 reported, 0 not applicable, 3 missing`` (the model card's line)."""
    counts = {s: sum(1 for r in rows if r[2] == s) for s in (REPORTED, NOT_APPLICABLE, MISSING)}
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def report_markdown(ev: RunEvidence) -> str:
    rows = report_rows(ev)
    lines = [
        f"# Validation report (TRIPOD+AI): run `{ev.run_id}`",
        "",
        f"Task {ev.task}. Every TRIPOD+AI item (Collins et al., BMJ 2024) against this run's "
        f"own logged evidence: {checklist_summary(rows)}.",
        "",
        "| item | topic | status | evidence |",
        "|---|---|---|---|",
        *(f"| {n} | {topic} | {status} | {text} |" for n, topic, status, text in rows),
        "",
    ]
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;width:100%;font-size:14px}"
    "td,th{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}"
    "th{background:#f4f4f4}.reported{color:#1a7f37}.missing{color:#b35900}"
    ".na{color:#666}figure{display:inline-block;margin:8px;width:46%}"
    "figure img{width:100%}figcaption{font-size:13px;color:#555}"
)


def report_html(ev: RunEvidence) -> str:
    """The same rows as one self-contained HTML page, with the run's key figures embedded."""
    rows = report_rows(ev)
    css_class = {REPORTED: "reported", NOT_APPLICABLE: "na", MISSING: "missing"}
    body = "".join(
        f"<tr><td>{n}</td><td>{html.escape(topic)}</td><td class='{css_class[status]}'>"
        f"{status}</td><td>{html.escape(text).replace('`', '')}</td></tr>"
        for n, topic, status, text in rows
    )
    figures = []
    for path, caption in FIGURES:
        data = ev.read_file(path)
        if data:
            encoded = base64.b64encode(data).decode("ascii")
            figures.append(
                f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
                f"{encoded}'><figcaption>{html.escape(caption)} (<code>{path}</code>)"
                "</figcaption></figure>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Validation report {html.escape(ev.run_id)}</title><style>{_CSS}</style></head>"
        f"<body><h1>Validation report (TRIPOD+AI)</h1><p>Run <code>{html.escape(ev.run_id)}"
        f"</code>, task {html.escape(ev.task)}: {checklist_summary(rows)}.</p>"
        "<table><tr><th>item</th><th>topic</th><th>status</th><th>evidence</th></tr>"
        f"{body}</table>{''.join(figures)}</body></html>"
    )


@contextmanager
def run_evidence(client: Any, run_id: str) -> Iterator[RunEvidence]:
    """What ``run_id`` logged, read back once; its figures are fetched into a temporary
    folder that lives as long as the context."""
    with tempfile.TemporaryDirectory(prefix="ecgml-report-") as tmp:
        yield RunEvidence.of_run(client, run_id, Path(tmp))


def write_validation_report(client: Any, evidence: RunEvidence) -> list[str]:
    """Log both report files at the root of the run ``evidence`` was read from."""
    with tempfile.TemporaryDirectory(prefix="ecgml-report-") as tmp:
        folder = Path(tmp)
        (folder / REPORT_MD).write_text(report_markdown(evidence), encoding="utf-8")
        (folder / REPORT_HTML).write_text(report_html(evidence), encoding="utf-8")
        return log_files(client, evidence.run_id, [folder / REPORT_MD, folder / REPORT_HTML])


def log_validation_report(client: Any, run_id: str) -> list[str]:
    """Build the report from what ``run_id`` logged and log both files at its root."""
    with run_evidence(client, run_id) as evidence:
        return write_validation_report(client, evidence)
