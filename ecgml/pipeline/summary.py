"""The few lines ``python -m ecgml.train`` prints at the end of a run."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from ecgml.pipeline.crossval import CrossValResult
from ecgml.pipeline.run import RunResult
from ecgml.tracking import resolve_store


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
    experiment = cfg.logger.experiment_name or f"ecgml-{cfg.disorder.name}"
    return "\n".join(
        [
            "",
            f"ecgml train: {cfg.disorder.positive} vs {cfg.disorder.negative}, "
            f"model={cfg.model.name}, split={cfg.split.name}, seed={cfg.seed} "
            f"({seconds:.0f} s)",
            f"  test beats {int(m.get('test/n_beats', 0))} from "
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
