"""A Hydra callback that gives every multirun/sweep one MLflow parent run.

On multirun start it opens the parent in the experiment the jobs will use (``logger.
experiment_name``, else ``ecgml-<first job's disorder>``) and publishes it through environment
variables (:mod:`ecgml.tracking`), so each job's run becomes a child in that experiment. On
multirun end it records the children's states and closes it; if the process dies first, an
``atexit`` hook marks it FAILED (KILLED on Ctrl-C). A persistent Optuna study (storage and
study name) has one parent for all its sweeps and workers: the process that creates the study
opens it and stores its id in the study (user attribute ``mlflow_parent_run_id``); a resumed
sweep, or a second worker started at the same time, re-opens that run
(:func:`ecgml.sweep.shared.study_parent`). A worker that ends while trials still run elsewhere
leaves the parent RUNNING for the last one to close.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml import run_subject
from ecgml.sweep.context import DEFAULT_OBJECTIVE
from ecgml.sweep.storage import study_storage
from ecgml.tracking import (
    EXPERIMENT_ENV,
    NOTE_TAG,
    PARENT_RUN_ENV,
    ensure_experiment,
    git_state,
    open_run,
    resolve_store,
)
from ecgml.tracking.artifacts import write_text_artifact
from ecgml.tracking.runs import run_page_url

log = logging.getLogger("ecgml.sweep")
STUDY_KEY_TAG = "ecgml.study_key"
#: The parent's tag naming its best finished child (by the sweep's objective).
BEST_RUN_TAG = "ecgml.best_run_id"


def first_job_choice(config: DictConfig, group: str) -> str | None:
    """The value the first job gets for ``group`` when the command line sweeps it."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    for override in overrides:
        if override.key_or_group == group and override.is_discrete_sweep():
            return str(next(iter(override.sweep_string_iterator())))
    return None


def sweep_experiment(config: DictConfig) -> str:
    if config.logger.experiment_name:
        return str(config.logger.experiment_name)
    disorder = first_job_choice(config, "disorder") or config.disorder.name
    task = first_job_choice(config, "task") or str(config.task.get("name", "binary"))
    return f"ecgml-{run_subject(task, str(disorder))}"


def study_key(config: DictConfig) -> str | None:
    """Identity of a persistent Optuna study (storage + name), to re-open its parent on resume."""
    sweeper = config.hydra.sweeper
    storage = study_storage(config)
    if not (storage and sweeper.get("study_name")):
        return None
    identity = f"{storage}#{sweeper.study_name}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def parent_run_name(config: DictConfig) -> str:
    sweeper = config.hydra.sweeper
    if sweeper.get("study_name"):
        return f"sweep-{sweeper.study_name}"
    return f"{config.task_name}-multirun-{Path(str(config.hydra.sweep.dir)).name}"


def sweep_description(config: DictConfig) -> dict[str, Any]:
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    return {
        "command_line_overrides": list(config.hydra.overrides.task),
        "sweeper": sweeper,
        "launcher": str(config.hydra.launcher.get("_target_")),
        "optimized_metric": config.get("optimized_metric"),
        "sweep_dir": str(config.hydra.sweep.dir),
    }


class MlflowSweepParent(Callback):
    """``hydra.callbacks.mlflow_sweep_parent`` in ``conf/hydra/default.yaml``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.client: MlflowClient | None = None
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or os.environ.get(PARENT_RUN_ENV):
            return  # a nested multirun stays under the outer parent
        if study_key(config):  # a persistent study: it may already be finished
            # deferred: optuna_sweeper imports optuna (~2.5 s); plain multiruns never need it
            from ecgml.sweep.optuna_sweeper import refuse_finished_study

            refuse_finished_study(config)
        store = resolve_store(config.logger.tracking_uri)
        experiment = sweep_experiment(config)
        experiment_id = ensure_experiment(store, experiment)
        self.client = MlflowClient(store.tracking_uri)
        key = study_key(config)
        if key:
            self.run_id = self.study_parent(config, experiment_id, key)
        else:
            self.run_id = self.create(config, experiment_id, None)
        self.log_description(config)
        os.environ[PARENT_RUN_ENV] = self.run_id
        os.environ[EXPERIMENT_ENV] = experiment
        atexit.register(self.close_if_open)
        log.info("MLflow parent run %s in experiment %s", self.run_id, experiment)

    def create(self, config: DictConfig, experiment_id: str, key: str | None) -> str:
        assert self.client is not None
        tags = {**git_state(), "ecgml.sweep": "true", "ecgml.sweeper": sweeper_name(config)}
        if key:
            tags[STUDY_KEY_TAG] = key
        return open_run(self.client, experiment_id, parent_run_name(config), tags)

    def study_parent(self, config: DictConfig, experiment_id: str, key: str) -> str:
        """The study's one parent, shared by every worker (deferred imports: optuna, ~2.5 s)."""
        # deferred: ecgml.sweep.shared imports optuna (~2.5 s), needed by sweeps only
        from ecgml.sweep.shared import open_storage, study_parent

        sweeper = config.hydra.sweeper
        storage = open_storage(str(study_storage(config)))
        return study_parent(
            storage,
            str(sweeper.study_name),
            str(sweeper.get("direction") or "maximize"),
            create=lambda: self.create(config, experiment_id, key),
            reopen=lambda run_id: self.reopen(experiment_id, key, run_id),
        )

    def reopen(self, experiment_id: str, key: str, run_id: str | None = None) -> str | None:
        """Re-open ``run_id`` (else the run tagged with the study's key); None when not found."""
        assert self.client is not None
        if run_id is None:
            found = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`{STUDY_KEY_TAG}` = '{key}'", max_results=1
            )
            if not found:
                return None
            run_id = found[0].info.run_id
        else:
            try:
                self.client.get_run(run_id)
            except MlflowException:  # recorded in another tracking store
                return None
        self.client.update_run(run_id, status="RUNNING")
        log.info("the study's MLflow parent run is %s", run_id)
        return run_id

    def log_description(self, config: DictConfig) -> None:
        assert self.client is not None and self.run_id is not None
        text = OmegaConf.to_yaml(OmegaConf.create(sweep_description(config)))
        write_text_artifact(self.client, self.run_id, text, "sweep_config.yaml")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_id is None or self.client is None:
            return
        children = self.client.search_runs(
            [self.client.get_run(self.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            max_results=10000,
        )
        states = Counter(run.info.status for run in children)
        self.client.log_metric(self.run_id, "sweep/n_children", float(len(children)))
        self.mark_best(config, children)
        for state, count in states.items():
            self.client.log_metric(self.run_id, f"sweep/children_{state.lower()}", float(count))
        busy = trials_elsewhere(config)
        if busy:  # another worker still runs trials of the study: it closes the parent
            log.info("leaving parent run %s RUNNING: %d trial(s) run elsewhere", self.run_id, busy)
            os.environ.pop(PARENT_RUN_ENV, None)
            os.environ.pop(EXPERIMENT_ENV, None)
            self.run_id = None
            return
        self.close("FINISHED")

    def mark_best(self, config: DictConfig, children: list[Any]) -> None:
        """Tag the parent with its best finished child (``ecgml.best_run_id``) and describe it,
        with a link to that run's page."""
        assert self.client is not None and self.run_id is not None
        metric = str(config.get("optimized_metric") or DEFAULT_OBJECTIVE)
        direction = objective_direction(config)
        best = best_child(children, metric, direction)
        if best is None:
            return
        value = best.data.metrics[metric]
        self.client.set_tag(self.run_id, BEST_RUN_TAG, best.info.run_id)
        link = run_page_url(best.info.experiment_id, best.info.run_id)
        self.client.set_tag(
            self.run_id,
            NOTE_TAG,
            f"sweep of {len(children)} runs · best {metric} {value:.4f} ({direction}): "
            f"[{best.info.run_name}]({link})",
        )

    def close(self, status: str) -> None:
        if self.run_id is None or self.client is None:
            return
        self.client.set_terminated(self.run_id, status)
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(EXPERIMENT_ENV, None)
        self.run_id = None

    def close_if_open(self) -> None:
        """At exit without ``on_multirun_end``: the sweep raised or was interrupted."""
        interrupted = isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)
        try:
            self.close("KILLED" if interrupted else "FAILED")
        except Exception:  # the store may be gone at interpreter exit; nothing left to do
            log.debug("could not close the parent run", exc_info=True)


def objective_direction(config: DictConfig) -> str:
    """``maximize`` or ``minimize``: the sweeper's, else the task's (default: maximize)."""
    sweeper = config.hydra.sweeper.get("direction") if "hydra" in config else None
    task = config.get("task")
    found = sweeper or (task.get("direction") if task is not None else None)
    return str(found or "maximize")


def best_child(children: list[Any], metric: str, direction: str) -> Any | None:
    """The FINISHED child with the best finite ``metric`` (None when no child has one)."""
    scored = [
        run
        for run in children
        if run.info.status == "FINISHED" and math.isfinite(run.data.metrics.get(metric, math.nan))
    ]
    if not scored:
        return None
    sign = -1.0 if direction == "minimize" else 1.0
    return max(scored, key=lambda run: sign * run.data.metrics[metric])


def trials_elsewhere(config: DictConfig) -> int:
    """Trials of the persistent study still running (0 without one)."""
    if not study_key(config):
        return 0
    # deferred: ecgml.sweep.shared imports optuna (~2.5 s), needed by sweeps only
    from ecgml.sweep.shared import busy_elsewhere, open_storage

    return busy_elsewhere(
        open_storage(str(study_storage(config))), str(config.hydra.sweeper.study_name)
    )


def sweeper_name(config: DictConfig) -> str:
    return str(config.hydra.sweeper.get("_target_", "")).rsplit(".", 1)[-1]
