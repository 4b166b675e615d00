"""The few lines ``python -m ecgml.train`` prints at the end of a run."""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.pipeline.context import RunResult
from ecgml.pipeline.crossval import CrossValResult
from ecgml.pipeline.units import run_unit
from ecgml.tasks import run_task
from ecgml.tracking import resolve_store
from ecgml.tracking.runs import run_page_url, run_subject


def format_summary(cfg: DictConfig, result: RunResult | CrossValResult, seconds: float) -> str:
    """What ``ecgml.train`` prints last: the task's headline results, where to find the run."""
    store = resolve_store(cfg.logger.tracking_uri)
    ui = (
        "make ui"
        if store.artifact_root and store.artifact_root.parent.name == "mlruns"
        else f"mlflow ui --backend-store-uri {store.tracking_uri}"
    )
    experiment = cfg.logger.experiment_name or f"ecgml-{run_subject(cfg)}"
    task = run_task(cfg)
    return "\n".join(
        [
            "",
            f"ecgml train: {task.summary_header(cfg)}, split={cfg.split.name}, "
            f"seed={cfg.seed} ({seconds:.0f} s)",
            *task.summary_lines(cfg, result.metrics, f"{run_unit(cfg).name}s", result.threshold),
            f"  experiment: {experiment}",
            f"  open the UI: {ui}   (tracking URI {store.tracking_uri})",
            f"  run page: {run_page_url(result.experiment_id, result.run_id)}",
            f"run_id: {result.run_id}",
        ]
    )
