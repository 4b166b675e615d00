"""What a training job needs to know about the sweep it runs in (if any).

A multirun/sweep parent publishes itself through environment variables (so it reaches jobs in
this process and in launcher subprocesses alike); an Optuna trial run in-process is handed to the
job through :func:`trial_callbacks` (the sweeper calls :func:`activate_trial` around each job).

The sweep objective is ``cfg.optimized_metric`` (set by ``hparams_search``): the job returns it
through :func:`objective_value`, which looks it up in the run's evaluation metrics and in the
last values Lightning logged (``val/auroc_best`` lives there), and fails loudly when it is absent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

PARENT_RUN_ENV = "ECGML_PARENT_RUN_ID"
EXPERIMENT_ENV = "ECGML_SWEEP_EXPERIMENT"
DEFAULT_OBJECTIVE = "test/auroc"


class ObjectiveMetricMissing(KeyError):
    """The configured ``optimized_metric`` is not among the metrics the job produced.

    Not an :class:`~ecgml.errors.EcgmlError` on purpose: the CLI would turn that into
    ``sys.exit`` inside the job, while the sweeper must see it and stop the whole sweep.
    """

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class ActiveTrial:
    """The Optuna trial the current in-process job belongs to."""

    trial: Any  # optuna.Trial
    monitor: str  # the per-epoch metric reported to the pruner
    prune: bool
    pruned_at_epoch: int | None = None
    run_id: str | None = None
    fit_metrics: dict[str, float] = field(default_factory=dict)


_active: ActiveTrial | None = None
_last_fit_metrics: dict[str, float] = {}


def parent_run() -> tuple[str | None, str | None]:
    """``(parent_run_id, experiment_name)`` of the enclosing multirun, or ``(None, None)``."""
    return os.environ.get(PARENT_RUN_ENV) or None, os.environ.get(EXPERIMENT_ENV) or None


def active_trial() -> ActiveTrial | None:
    return _active


@contextmanager
def activate_trial(trial: Any, monitor: str, prune: bool) -> Iterator[ActiveTrial]:
    """Make ``trial`` visible to the job run inside the ``with`` block (in-process launchers)."""
    global _active
    _active = ActiveTrial(trial, monitor, prune)
    try:
        yield _active
    finally:
        _active = None


def _as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def trial_callbacks(cfg: Any) -> list[Any]:
    """Lightning callbacks a job needs: the metrics recorder always, Optuna pruning in a trial."""
    from ecgml.sweep.callbacks import MetricsRecorder, OptunaPruning  # lightning: import late

    _last_fit_metrics.clear()
    callbacks: list[Any] = [MetricsRecorder()]
    if _active is not None:
        callbacks.append(OptunaPruning(_active))
    return callbacks


def record_fit_metrics(metrics: Mapping[str, Any]) -> None:
    """For jobs without Lightning (e.g. ``model=features_lr``): their per-epoch equivalents."""
    _last_fit_metrics.clear()
    _last_fit_metrics.update(_as_floats(metrics))


def objective_value(cfg: Any, metrics: Mapping[str, Any]) -> float:
    """The value of ``cfg.optimized_metric`` (default ``test/auroc``) for this job.

    Looked up in the evaluation ``metrics`` first, then in the last logged per-epoch metrics.
    NaN stays NaN (the sweeper records such a trial as failed); a configured name that the job
    did not produce raises :class:`ObjectiveMetricMissing`.
    """
    configured = cfg.get("optimized_metric")
    name = str(configured or DEFAULT_OBJECTIVE)
    available = {**_last_fit_metrics, **_as_floats(metrics)}
    if name not in available and not configured:
        return math.nan
    if name not in available:
        raise ObjectiveMetricMissing(
            f"optimized_metric={name!r} is not a metric this job produced: use one of "
            f"{', '.join(sorted(available))}"
        )
    value = available[name]
    return value if math.isfinite(value) else math.nan
