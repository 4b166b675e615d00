"""The project's Optuna sweeper (current Optuna, ask/tell), behind the Hydra plugin
``hydra/sweeper=ecgml_optuna`` (``hydra_plugins/ecgml_optuna_sweeper``).

- Each trial is one Hydra job (one MLflow child run). With the in-process launcher the trial is
  handed to the job (:func:`ecgml.sweep.context.activate_trial`), which reports validation AUROC
  every epoch so the pruner can stop it; other launchers (joblib, submitit) run without pruning.
- A trial that raises or returns NaN is told to the study as failed and the sweep goes on; a
  misspelled ``optimized_metric`` stops the sweep (every trial would fail the same way).
- With ``storage`` (a sqlite file or a SQLAlchemy URL) and ``study_name`` the study persists:
  re-running the same command resumes it, ``n_trials`` counts the study's trials in total, and
  several processes or machines can feed one study (:mod:`ecgml.sweep.shared`): each asks for a
  trial only while the study has fewer than ``n_trials``, and a trial that two workers asked for
  at the same moment beyond ``n_trials`` is dropped (FAIL, user attribute ``surplus``, not
  counted). Heartbeats mark a killed worker's trial FAIL and a retry re-runs its parameters.
- A parallel launcher (``hydra/launcher=joblib hydra.launcher.n_jobs=2``) gets batches of
  ``n_jobs`` trials (the sweeper's ``n_jobs``, else the launcher's).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ecgml import run_subject as subject_of
from ecgml.errors import EcgmlError
from ecgml.schemas import plain_dict
from ecgml.sweep.context import ObjectiveMetricMissing, activate_trial
from ecgml.sweep.search_space import SearchSpace, parse_search_space, trial_overrides
from ecgml.sweep.shared import (
    CREATOR_ATTR,
    create_or_load,
    fail_stale_trials,
    heartbeats,
    open_storage,
    redone_numbers,
    study_direction,
    worker_id,
)
from ecgml.sweep.storage import SQLITE, storage_url, study_storage
from ecgml.tracking import parent_run, resolve_store

log = logging.getLogger("ecgml.sweep")
INTERRUPTED_ATTR = "interrupted"
SURPLUS_ATTR = "surplus"  # asked beyond n_trials by a worker racing another one
COUNTED_STATES = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.FAIL,
    TrialState.RUNNING,
    TrialState.WAITING,
)
PRUNED_TAG = "optuna.pruned_at_epoch"


@dataclass
class SweepSettings:
    """``hydra.sweeper`` (see ``ecgml_optuna`` in the plugin for the documented defaults)."""

    direction: str = "maximize"
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    monitor: str = "val/auroc"
    params: dict[str, Any] = field(default_factory=dict)
    enqueue_trials: list[dict[str, Any]] = field(default_factory=list)
    max_failures_in_a_row: int = 5
    heartbeat_interval: int | None = 60
    grace_period: int | None = 120
    max_retry: int | None = 1


def accepted(factory: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``factory`` takes. Hydra merges ``sampler``/``pruner`` dicts, so
    ``sampler.name=random`` on top of a TPE config keeps TPE-only keys: those are dropped."""
    names = set(inspect.signature(factory).parameters)
    dropped = sorted(set(kwargs) - names)
    if dropped:
        log.info("%s ignores %s", factory.__name__, ", ".join(dropped))
    return {k: v for k, v in kwargs.items() if k in names}


def _require_cmaes() -> None:
    try:
        import cmaes  # noqa: F401  (optional dependency, checked only when CMA-ES is chosen)
    except ImportError:
        raise EcgmlError(
            "sampler cmaes needs the 'cmaes' package: pip install cmaes (or use tpe/random)"
        ) from None


SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "cma-es": optuna.samplers.CmaEsSampler,
    "cma_es": optuna.samplers.CmaEsSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
    "nop": optuna.pruners.NopPruner,
    "null": optuna.pruners.NopPruner,
}


def _from_spec(table: Mapping[str, Any], spec: Mapping[str, Any], default: str, kind: str) -> Any:
    """``(factory, kwargs it accepts, name)`` for ``hydra.sweeper.<kind>`` = ``spec``."""
    kwargs = dict(spec)
    name = str(kwargs.pop("name", default)).lower()
    if name not in table:
        known = ", ".join(dict.fromkeys(k for k in table if "-" not in k and "_" not in k))
        raise EcgmlError(f"hydra.sweeper.{kind}.name={name!r} is unknown: use {known}")
    factory = table[name]
    return factory, accepted(factory, kwargs), name


def make_sampler(spec: Mapping[str, Any], space: SearchSpace) -> optuna.samplers.BaseSampler:
    factory, kwargs, name = _from_spec(SAMPLERS, spec, "tpe", "sampler")
    if factory is optuna.samplers.CmaEsSampler:
        _require_cmaes()
    if name == "grid":
        return factory(space.grid(), **kwargs)
    return factory(**kwargs)


def make_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    factory, kwargs, _ = _from_spec(PRUNERS, spec, "median", "pruner")
    return factory(**kwargs)


def counted(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials towards ``n_trials``: finished ones, ones running or waiting (here or elsewhere),
    but not those a Ctrl-C interrupted (re-done on resume), not a killed worker's trial that a
    retry replaces, and not a surplus one."""
    redone = redone_numbers(trials)
    return [
        t
        for t in trials
        if t.state in COUNTED_STATES
        and not t.user_attrs.get(INTERRUPTED_ATTR)
        and not t.user_attrs.get(SURPLUS_ATTR)
        and t.number not in redone
    ]


def is_surplus(trials: Sequence[optuna.trial.FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` goes beyond ``n_trials``: the trials before it count, but a
    killed worker's trial that a retry (this one or a later one) replaces does not."""
    redone = redone_numbers(trials)
    before = [t for t in trials if t.number < number and t.number not in redone]
    return len(counted(before)) >= n_trials


def counted_trials(study: optuna.Study) -> int:
    return len(counted(study.get_trials(deepcopy=False)))


@contextlib.contextmanager
def _ctrl_c_remembered() -> Iterator[threading.Event]:
    """Remember a Ctrl-C even when Python swallows its KeyboardInterrupt.

    A SIGINT that lands in a garbage-collection callback (SQLAlchemy's, say) is printed as
    "Exception ignored" and lost, so the sweep would go on. The handler still raises as usual,
    and also sets the event, which the sweep checks between trials.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


class OptunaSweep:
    """One sweep: builds the study, launches trials through Hydra's launcher, tells results."""

    def __init__(
        self, settings: SweepSettings, launcher: Launcher, config: DictConfig, arguments: list[str]
    ) -> None:
        self.settings = settings
        self.launcher = launcher
        self.config = config
        self.space = parse_search_space(settings.params, arguments)
        if not self.space.distributions:
            raise EcgmlError(
                "the Optuna sweep has nothing to search: set hydra.sweeper.params "
                "(e.g. hparams_search=cnn1d) or pass key=interval(a,b) on the command line"
            )
        self.in_process = type(launcher).__name__ == "BasicLauncher"
        self.job_index = 0
        self.failures_in_a_row = 0
        self.storage: optuna.storages.RDBStorage | None = None

    def make_study(self) -> optuna.Study:
        s = self.settings
        url = storage_url(s.storage)
        if url:
            self.storage = open_storage(url, s.heartbeat_interval, s.grace_period, s.max_retry)
        sampler, pruner = make_sampler(s.sampler, self.space), make_pruner(s.pruner)
        if self.storage is not None and s.study_name:
            study, created = create_or_load(
                self.storage, s.study_name, s.direction, sampler=sampler, pruner=pruner
            )
            if not (created or study.user_attrs.get(CREATOR_ATTR) == worker_id()):
                # another worker, or a resumed study: a seeded sampler would repeat the trials
                # its creator sampled; only the creator keeps the configured seed
                sampler.reseed_rng()
        else:
            study = optuna.create_study(
                storage=self.storage,
                sampler=sampler,
                pruner=pruner,
                study_name=s.study_name,
                direction=study_direction(s.direction),
                load_if_exists=True,
            )
        # the objective's name, for optuna-dashboard and the study's reports (not "Objective 0");
        # experimental since Optuna 3.2 and stable in use: its warning is not the user's to act on
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([self.objective_name])
        if study.get_trials(deepcopy=False):
            log.info(
                "resuming study %r: %d trial(s) so far", study.study_name, counted_trials(study)
            )
        else:
            for params in s.enqueue_trials:
                study.enqueue_trial(dict(params), skip_if_exists=True)
        return study

    @property
    def batch_size(self) -> int:
        """Trials per launch: 1 in process; else the sweeper's ``n_jobs`` when set above 1,
        else the launcher's (joblib's ``n_jobs``; -1 means every CPU)."""
        if self.in_process:
            return 1
        if self.settings.n_jobs > 1:
            return self.settings.n_jobs
        launcher_jobs = int(getattr(self.launcher, "joblib", {}).get("n_jobs") or 1)
        return max(1, os.cpu_count() or 1) if launcher_jobs < 0 else max(1, launcher_jobs)

    def run(self) -> optuna.Study:
        study = self.make_study()
        batch = self.batch_size
        if not self.in_process:
            log.warning(
                "launcher %s runs jobs out of process, %d at a time: no pruning",
                type(self.launcher).__name__,
                batch,
            )
        trials: list[optuna.Trial] = []
        try:
            with _ctrl_c_remembered() as interrupted:
                while (wanted := self.wanted(study)) > 0:
                    trials = []  # filled one by one: a Ctrl-C between asks still sees them
                    with heartbeats(self.storage, trials):
                        self.ask_batch(study, min(batch, wanted), trials)
                        if trials:
                            self.run_batch(study, trials)
                    if interrupted.is_set():  # Python swallowed the KeyboardInterrupt somewhere
                        raise KeyboardInterrupt
        except (KeyboardInterrupt, SystemExit):
            for trial in trials:  # interrupted trials are re-done when the study resumes
                trial.set_user_attr(INTERRUPTED_ATTR, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        return study

    @property
    def heartbeat(self) -> bool:
        return bool(self.storage is not None and self.storage.get_heartbeat_interval())

    def wanted(self, study: optuna.Study) -> int:
        """Trials to ask for now. With heartbeats, a worker with nothing left to ask waits for
        the trials running elsewhere, up to ``grace_period`` + 2 heartbeats: if their worker
        died, it runs their retries (a trial that never beat, e.g. from a sweep without
        heartbeats, is never stale: hence the bound)."""
        deadline: float | None = None
        while True:
            if self.heartbeat:
                fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            # an ask pops a waiting trial (a retry, an enqueued one) before it creates one
            started = [t for t in counted(trials) if t.state != TrialState.WAITING]
            wanted = max(self.settings.n_trials - len(started), 0)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if wanted > 0 or not (self.heartbeat and running):
                return wanted
            assert self.storage is not None
            interval = float(self.storage.get_heartbeat_interval() or 1)
            if deadline is None:
                deadline = time.monotonic() + float(self.storage.grace_period or 0) + 2 * interval
            elif time.monotonic() > deadline:
                return 0
            log.info(
                "study %r: waiting for %d trial(s) running elsewhere", study.study_name, running
            )
            time.sleep(min(5.0, interval))

    def ask_batch(self, study: optuna.Study, size: int, trials: list[optuna.Trial]) -> None:
        """Ask up to ``size`` trials into ``trials`` (the heartbeat thread reads the list);
        a trial beyond ``n_trials`` (another worker asked at the same moment) is dropped."""
        for _ in range(size):
            with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize"
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask(self.space.distributions)
            if self.storage is not None and self.is_surplus(study, trial):
                trial.set_user_attr(SURPLUS_ATTR, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                log.info(
                    "trial %d dropped: the study has its %d trials",
                    trial.number,
                    self.settings.n_trials,
                )
                return
            trials.append(trial)
            if self.storage is not None and self.heartbeat:
                self.storage.record_heartbeat(trial._trial_id)

    def is_surplus(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        trials = study.get_trials(deepcopy=False)
        return is_surplus(trials, trial.number, self.settings.n_trials)

    def run_subject(self) -> str:
        """A trial's run-name prefix: its disorder (binary task), else the task's name."""
        task = self.config.get("task")
        return subject_of(str(task.get("name", "binary")) if task else "binary", "${disorder.name}")

    def overrides_for(self, trial: optuna.Trial) -> list[str]:
        return [
            *trial_overrides(self.space, trial.params),
            f"++logger.tags.optuna_trial={trial.number}",
            f"++logger.tags.optuna_study={trial.study.study_name}",
            f"++logger.run_name={self.run_subject()}-${{model.name}}-trial{trial.number}",
        ]

    def run_batch(self, study: optuna.Study, trials: list[optuna.Trial]) -> None:
        overrides = [self.overrides_for(t) for t in trials]
        try:
            if self.in_process:
                prune = not isinstance(study.pruner, optuna.pruners.NopPruner)
                with activate_trial(trials[0], self.settings.monitor, prune) as active:
                    returns = self.launcher.launch(overrides, initial_job_idx=self.job_index)
                pruned = [active.pruned_at_epoch is not None]
                if active.run_id:
                    trials[0].set_user_attr("mlflow_run_id", active.run_id)
            else:
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_index)
                pruned = [False] * len(trials)
            # DDP ranks (spawned) and launcher workers report only through the run they logged
            pruned = [p or self.pruned_in_run(t) for t, p in zip(trials, pruned, strict=True)]
        except SystemExit as exit_:
            if exit_.code != EcgmlError.exit_code:
                raise  # e.g. Lightning turns Ctrl-C into exit(1): stop the sweep
            # a user error inside the job (ecgml.cli exits with 2): this trial failed
            returns = [self.failed_return(f"job exited with code {exit_.code}") for _ in trials]
            pruned = [False] * len(trials)
        self.job_index += len(trials)
        for trial, result, was_pruned in zip(trials, returns, pruned, strict=True):
            self.tell(study, trial, result, was_pruned)

    def trial_run_id(self, trial: optuna.Trial) -> str | None:
        """The MLflow run of ``trial``: handed over in process, else found by its tags."""
        known = trial.user_attrs.get("mlflow_run_id")
        if known:
            return str(known)
        parent, _ = parent_run()
        try:
            if parent:
                experiments = [self.client.get_run(parent).info.experiment_id]
            else:
                experiments = [e.experiment_id for e in self.client.search_experiments()]
            found = self.client.search_runs(
                experiments,
                filter_string=(
                    f"tags.optuna_study = '{trial.study.study_name}' "
                    f"and tags.optuna_trial = '{trial.number}'"
                ),
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        except MlflowException:
            return None
        if not found:
            return None
        run_id = found[0].info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        return run_id

    def pruned_in_run(self, trial: optuna.Trial) -> bool:
        """The pruning callback tagged the trial's run (a DDP rank zero, say)."""
        run_id = self.trial_run_id(trial)
        if not run_id:
            return False
        try:
            return PRUNED_TAG in self.client.get_run(run_id).data.tags
        except MlflowException:
            return False

    @staticmethod
    def failed_return(reason: str) -> JobReturn:
        ret = JobReturn()
        ret.status = JobStatus.FAILED
        ret._return_value = RuntimeError(reason)
        return ret

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn, pruned: bool) -> None:
        state = self._tell(study, trial, ret, pruned)
        run_id = self.trial_run_id(trial)
        if run_id:
            self.client.set_tag(run_id, "optuna.state", state.name)

    @functools.cached_property
    def client(self) -> MlflowClient:
        return MlflowClient(resolve_store(self.config.logger.get("tracking_uri")).tracking_uri)

    def _tell(
        self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn, pruned: bool
    ) -> TrialState:
        value = ret._return_value
        if ret.status == JobStatus.FAILED and isinstance(value, ObjectiveMetricMissing):
            study.tell(trial, state=TrialState.FAIL)
            raise EcgmlError(str(value))
        if pruned or isinstance(value, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            log.info("trial %d pruned", trial.number)
            self.failures_in_a_row = 0
            return TrialState.PRUNED
        if ret.status == JobStatus.COMPLETED and _is_finite_number(value):
            study.tell(trial, float(value), skip_if_finished=True)
            log.info("trial %d: %s = %.4f", trial.number, self.objective_name, float(value))
            self.failures_in_a_row = 0
            return TrialState.COMPLETE
        reason = repr(value) if ret.status == JobStatus.FAILED else f"returned {value!r}"
        trial.set_user_attr("fail_reason", reason[:1000])
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        log.warning("trial %d failed (%s); the sweep goes on", trial.number, reason[:300])
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.settings.max_failures_in_a_row:
            raise EcgmlError(
                f"{self.failures_in_a_row} trials in a row failed (last: {reason[:300]}): "
                "fix the job (run one trial without -m) before sweeping"
            )
        return TrialState.FAIL

    @property
    def objective_name(self) -> str:
        return str(self.config.get("optimized_metric") or "objective")


def _is_finite_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def study_summary(study: optuna.Study, objective: str) -> dict[str, Any]:
    """Counts per state and the best trial (if any completed)."""
    states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "optimized_metric": objective,
        "n_trials": sum(states.values()),
        "states": dict(states),
    }
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if completed:
        best = study.best_trial
        summary.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    return summary


def settings_from(conf: Mapping[str, Any]) -> SweepSettings:
    raw = plain_dict(OmegaConf.create(dict(conf)))
    raw.pop("_target_", None)
    known = set(SweepSettings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EcgmlError(
            f"hydra.sweeper has unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
        )
    raw["sampler"] = raw.get("sampler") or {"name": "tpe"}
    raw["pruner"] = raw.get("pruner") or {"name": "none"}
    raw["params"] = raw.get("params") or {}
    raw["enqueue_trials"] = raw.get("enqueue_trials") or []
    return SweepSettings(**raw)


def best_overrides(summary: Mapping[str, Any], space: SearchSpace) -> list[str]:
    return trial_overrides(space, summary.get("best_params") or {})


def finished_study_message(config: DictConfig, storage: str | None) -> str | None:
    """The one line saying the persistent study already has its ``n_trials``, else None."""
    sweeper = config.hydra.sweeper
    name = sweeper.get("study_name")
    if not (storage and name):
        return None
    if storage.startswith(SQLITE) and not Path(storage.removeprefix(SQLITE)).exists():
        return None
    try:
        study = optuna.load_study(study_name=str(name), storage=open_storage(storage))
    except KeyError:  # no such study yet
        return None
    # finished trials only: a running one may belong to a killed worker (retried by this one)
    done = sum(t.state.is_finished() for t in counted(study.get_trials(deepcopy=False)))
    wanted = int(sweeper.n_trials)
    if done < wanted:
        return None
    return (
        f"study {name} already has {done} of {wanted} trials; "
        "raise hydra.sweeper.n_trials or pass a new study name"
    )


def refuse_finished_study(config: DictConfig) -> None:
    """Exit 2 with one line, before any parent run exists, when the study has its n_trials."""
    message = finished_study_message(config, study_storage(config))
    if message:
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EcgmlError.exit_code)


__all__: Sequence[str] = (
    "OptunaSweep",
    "SweepSettings",
    "counted_trials",
    "make_pruner",
    "make_sampler",
    "refuse_finished_study",
    "settings_from",
    "storage_url",
    "study_summary",
)
