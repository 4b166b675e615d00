"""What a training job needs to know about the sweep it runs in (if any).

A multirun/sweep parent publishes itself through environment variables (so it reaches jobs in
this process and in launcher subprocesses alike); an Optuna trial run in-process is handed to the
job through :func:`ecgml.sweep.callbacks.trial_callbacks` (the sweeper calls
:func:`activate_trial` around each job). The environment variables live in :mod:`ecgml.tracking`.

The sweep objective is ``cfg.optimized_metric`` (set by ``hparams_search``): the job returns it
through :func:`objective_value`, which looks it up in the run result's evaluation metrics and in
its fit metrics (Lightning's last ``callback_metrics``: ``val/auroc_best`` lives there), and fails
loudly when it is absent. This module imports no lightning and no other sweep module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ecgml.tracking import EXPERIMENT_ENV, PARENT_RUN_ENV, parent_run

__all__ = ["EXPERIMENT_ENV", "PARENT_RUN_ENV", "parent_run"]
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


class RunOutcome(Protocol):
    """What :func:`objective_value` reads of a run result (``ecgml.pipeline.RunResult``)."""

    @property
    def metrics(self) -> Mapping[str, Any]: ...

    @property
    def fit_metrics(self) -> Mapping[str, Any]: ...


_active: ActiveTrial | None = None


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


def objective_value(cfg: Any, result: RunOutcome) -> float:
    """The value of ``cfg.optimized_metric`` (default ``test/auroc``) for this job.

    Looked up in the evaluation ``result.metrics`` first, then in ``result.fit_metrics``.
    NaN stays NaN (the sweeper records such a trial as failed); a configured name that the job
    did not produce raises :class:`ObjectiveMetricMissing`.
    """
    configured = cfg.get("optimized_metric")
    name = str(configured or DEFAULT_OBJECTIVE)
    available = {**_as_floats(result.fit_metrics), **_as_floats(result.metrics)}
    if name not in available and not configured:
        return math.nan
    if name not in available:
        raise ObjectiveMetricMissing(
            f"optimized_metric={name!r} is not a metric this job produced: use one of "
            f"{', '.join(sorted(available))}"
        )
    value = available[name]
    return value if math.isfinite(value) else math.nan
