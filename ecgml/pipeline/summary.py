"""The few lines ``python -m ecgml.train`` prints at the end of a run."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from ecgml.data.tasks import TaskSpec, task_spec
from ecgml.pipeline.crossval import CrossValResult
from ecgml.pipeline.run import RunResult
from ecgml.tracking import resolve_store
from ecgml.tracking.runs import run_subject


def _ci(m: dict[str, float], key: str, pct: bool) -> str:
    scale, unit, digits = (100.0, "%", 1) if pct else (1.0, "", 3)
    low, high = m.get(f"{key}_ci_low", np.nan), m.get(f"{key}_ci_high", np.nan)
    return (
        f"{m.get(key, np.nan) * scale:.{digits}f}{unit} "
        f"(95% CI {low * scale:.{digits}f}–{high * scale:.{digits}f})"
    )


def format_summary(cfg: DictConfig, result: RunResult | CrossValResult, seconds: float) -> str:
    m = result.metrics
    store = resolve_store(cfg.logger.tracking_uri)
    ui = (
        "make ui"
        if store.artifact_root and store.artifact_root.parent.name == "mlruns"
        else f"mlflow ui --backend-store-uri {store.tracking_uri}"
    )
    folds = (
        [
            f"  {int(m['cv/n_folds'])} folds, pooled out-of-fold test predictions; "
            f"fold AUROC {m.get('cv/auroc_mean', np.nan):.3f} "
            f"± {m.get('cv/auroc_sd', np.nan):.3f} (mean ± SD)"
        ]
        if "cv/n_folds" in m
        else []
    )
    experiment = cfg.logger.experiment_name or f"ecgml-{run_subject(cfg)}"
    task = task_spec(cfg)
    if not task.is_binary:
        return "\n".join(
            [
                "",
                f"ecgml train: task={task.name}, model={cfg.model.name}, "
                f"split={cfg.split.name}, seed={cfg.seed} ({seconds:.0f} s)",
                *task_lines(task, m),
                f"  experiment: {experiment}",
                f"  open the UI: {ui}   (tracking URI {store.tracking_uri})",
                f"run_id: {result.run_id}",
            ]
        )
    return "\n".join(
        [
            "",
            f"ecgml train: {cfg.disorder.positive} vs {cfg.disorder.negative}, "
            f"model={cfg.model.name}, split={cfg.split.name}, seed={cfg.seed} "
            f"({seconds:.0f} s)",
            f"  test {unit_word(cfg)} {int(m.get('test/n_beats', 0))} from "
            f"{int(m.get('test/n_patients', 0))} patients, "
            f"threshold {m.get('test/threshold', np.nan):.3f} "
            f"({cfg.evaluation.threshold_rule} on validation)",
            *folds,
            f"  test AUROC     {_ci(m, 'test/auroc', pct=False)}",
            f"  test accuracy  {_ci(m, 'test/accuracy', pct=True)}",
            f"  experiment: {experiment}",
            f"  open the UI: {ui}   (tracking URI {store.tracking_uri})",
            f"run_id: {result.run_id}",
        ]
    )


def task_lines(task: TaskSpec, m: dict[str, float]) -> list[str]:
    """The headline test metrics of a multi-label or regression run."""
    if task.kind == "multilabel":
        lines = [f"  test macro AUROC      {_ci(m, 'test/macro_auroc', pct=False)}"]
        lines += [f"  test {d:<16} {_ci(m, f'test/{d}/auroc', pct=False)}" for d in task.outputs]
        return lines
    lines = [
        f"  test beats {int(m.get('test/n_beats', 0))} from "
        f"{int(m.get('test/n_patients', 0))} patients",
        f"  test MAE (mmol/L)     {_ci(m, 'test/mae', pct=False)}",
        f"  test Pearson r        {_ci(m, 'test/pearson_r', pct=False)}",
    ]
    lines += [
        f"  test {d} AUROC {_ci(m, f'test/{d}_auroc', pct=False)}" for d in task.serum["disorders"]
    ]
    return lines


def unit_word(cfg: DictConfig) -> str:
    """What one scored row is: a beat, or a whole record (``data.unit=record``)."""
    record = cfg.data.get("unit") == "record" or cfg.data.get("source") == "records"
    return "records" if record else "beats"
