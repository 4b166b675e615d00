"""The project's Optuna sweeper (current Optuna, ask/tell), behind the Hydra plugin
``hydra/sweeper=ecgml_optuna`` (``hydra_plugins/ecgml_optuna_sweeper``).

- Each trial is one Hydra job (one MLflow child run). With the in-process launcher the trial is
  handed to the job (:func:`ecgml.sweep.context.activate_trial`), which reports validation AUROC
  every epoch so the pruner can stop it; other launchers (joblib, submitit) run without pruning.
- A trial that raises or returns NaN is told to the study as failed and the sweep goes on; a
  misspelled ``optimized_metric`` stops the sweep (every trial would fail the same way).
- With ``storage`` (a sqlite file or a SQLAlchemy URL) and ``study_name`` the study persists:
  re-running the same command resumes it, ``n_trials`` counts the study's trials in total, and
  several processes or machines can feed one study.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ecgml.errors import EcgmlError
from ecgml.sweep.context import ObjectiveMetricMissing, activate_trial
from ecgml.sweep.search_space import SearchSpace, parse_search_space, trial_overrides
from ecgml.sweep.storage import SQLITE, storage_url, study_storage
from ecgml.tracking import resolve_store

log = logging.getLogger("ecgml.sweep")
INTERRUPTED_ATTR = "interrupted"
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


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


def counted_trials(study: optuna.Study) -> int:
    """Trials towards ``n_trials``: finished ones and ones running elsewhere, but not those a
    Ctrl-C interrupted (they are re-done on resume)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False, states=COUNTED_STATES)
        if not t.user_attrs.get(INTERRUPTED_ATTR)
    )


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

    def make_study(self) -> optuna.Study:
        s = self.settings
        study = optuna.create_study(
            storage=storage_url(s.storage),
            sampler=make_sampler(s.sampler, self.space),
            pruner=make_pruner(s.pruner),
            study_name=s.study_name,
            direction=s.direction,
            load_if_exists=True,
        )
        if study.get_trials(deepcopy=False):
            log.info(
                "resuming study %r: %d trial(s) so far", study.study_name, counted_trials(study)
            )
        else:
            for params in s.enqueue_trials:
                study.enqueue_trial(dict(params), skip_if_exists=True)
        return study

    def run(self) -> optuna.Study:
        study = self.make_study()
        batch = 1 if self.in_process else max(1, self.settings.n_jobs)
        if not self.in_process:
            log.warning("launcher %s runs jobs out of process: no pruning", type(self.launcher))
        trials: list[optuna.Trial] = []
        try:
            with _ctrl_c_remembered() as interrupted:
                while (remaining := self.settings.n_trials - counted_trials(study)) > 0:
                    trials = []  # filled one by one: a Ctrl-C between asks still sees them
                    for _ in range(min(batch, remaining)):
                        trials.append(study.ask(self.space.distributions))
                    self.run_batch(study, trials)
                    if interrupted.is_set():  # Python swallowed the KeyboardInterrupt somewhere
                        raise KeyboardInterrupt
        except (KeyboardInterrupt, SystemExit):
            for trial in trials:  # interrupted trials are re-done when the study resumes
                trial.set_user_attr(INTERRUPTED_ATTR, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        return study

    def overrides_for(self, trial: optuna.Trial) -> list[str]:
        return [
            *trial_overrides(self.space, trial.params),
            f"++logger.tags.optuna_trial={trial.number}",
            f"++logger.tags.optuna_study={trial.study.study_name}",
            f"++logger.run_name=${{disorder.name}}-${{model.name}}-trial{trial.number}",
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
        except SystemExit as exit_:
            if exit_.code != EcgmlError.exit_code:
                raise  # e.g. Lightning turns Ctrl-C into exit(1): stop the sweep
            # a user error inside the job (ecgml.cli exits with 2): this trial failed
            returns = [self.failed_return(f"job exited with code {exit_.code}") for _ in trials]
            pruned = [False] * len(trials)
        self.job_index += len(trials)
        for trial, result, was_pruned in zip(trials, returns, pruned, strict=True):
            self.tell(study, trial, result, was_pruned)

    @staticmethod
    def failed_return(reason: str) -> JobReturn:
        ret = JobReturn()
        ret.status = JobStatus.FAILED
        ret._return_value = RuntimeError(reason)
        return ret

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn, pruned: bool) -> None:
        state = self._tell(study, trial, ret, pruned)
        run_id = trial.user_attrs.get("mlflow_run_id")
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
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned", trial.number)
            self.failures_in_a_row = 0
            return TrialState.PRUNED
        if ret.status == JobStatus.COMPLETED and _is_finite_number(value):
            study.tell(trial, float(value))
            log.info("trial %d: %s = %.4f", trial.number, self.objective_name, float(value))
            self.failures_in_a_row = 0
            return TrialState.COMPLETE
        reason = repr(value) if ret.status == JobStatus.FAILED else f"returned {value!r}"
        trial.set_user_attr("fail_reason", reason[:1000])
        study.tell(trial, state=TrialState.FAIL)
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
    raw = OmegaConf.to_container(OmegaConf.create(dict(conf)), resolve=True)
    assert isinstance(raw, dict)
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
        study = optuna.load_study(study_name=str(name), storage=storage)
    except KeyError:  # no such study yet
        return None
    done, wanted = counted_trials(study), int(sweeper.n_trials)
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
