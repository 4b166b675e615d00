"""``hydra/sweeper: ecgml_optuna`` — Optuna (≥ 4) behind Hydra's sweeper interface.

Hydra finds this module by scanning the ``hydra_plugins`` namespace package; importing it
registers the config below, and the class is the plugin. See :mod:`ecgml.sweep.optuna_sweeper`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional  # noqa: UP035 (OmegaConf structured configs)

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class EcgmlOptunaSweeperConf:
    _target_: str = "hydra_plugins.ecgml_optuna_sweeper.ecgml_optuna_sweeper.EcgmlOptunaSweeper"
    # maximize or minimize the job's return value (its `optimized_metric`).
    direction: str = "maximize"
    # A persistent study: a sqlite file path or any SQLAlchemy URL (postgresql://…), + a name.
    # The repo default (<repo>/mlruns/optuna.db) follows a sqlite MLflow store: the study goes
    # to optuna.db beside its mlflow.db unless hydra.sweeper.storage is on the command line.
    study_name: Optional[str] = None  # noqa: UP045
    storage: Optional[str] = None  # noqa: UP045
    # Trials in the study in total (a resumed study only runs what is missing).
    n_trials: int = 20
    # Trials launched together by a parallel launcher (the in-process one runs one at a time).
    n_jobs: int = 1
    # name: tpe | random | cmaes | grid, plus that sampler's keyword arguments (seed, …).
    sampler: Dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": None})  # noqa: UP006
    # name: median | hyperband | none, plus that pruner's keyword arguments.
    pruner: Dict[str, Any] = field(default_factory=lambda: {"name": "median"})  # noqa: UP006
    # The per-epoch metric reported to the pruner.
    monitor: str = "val/auroc"
    # key: Hydra sweep grammar, e.g. model.optimizer.lr: tag(log, interval(1e-4, 1e-2)).
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006
    # Known-good configurations to try first ({key: value} each), when the study is new.
    enqueue_trials: List[Dict[str, Any]] = field(default_factory=list)  # noqa: UP006
    # Stop the sweep when this many trials in a row failed (a broken job, not a bad trial).
    max_failures_in_a_row: int = 5
    # A persistent study (storage set): a worker's running trials beat every heartbeat_interval
    # seconds; one silent for grace_period seconds (its worker was killed) is marked FAIL by the
    # next worker, which re-runs its parameters up to max_retry times. null switches this off.
    heartbeat_interval: Optional[int] = 60  # noqa: UP045
    grace_period: Optional[int] = 120  # noqa: UP045
    max_retry: Optional[int] = 1  # noqa: UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="ecgml_optuna", node=EcgmlOptunaSweeperConf, provider="ecgml"
)


class EcgmlOptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = conf
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: List[str]) -> Any:  # noqa: UP006
        from ecgml.sweep.optuna_sweeper import (
            OptunaSweep,
            best_overrides,
            refuse_finished_study,
            settings_from,
            study_summary,
        )
        from ecgml.sweep.report import format_summary, log_to_parent, write_summary
        from ecgml.sweep.storage import study_storage

        assert self.config is not None and self.launcher is not None
        refuse_finished_study(self.config)  # also when the parent-run callback is off
        settings = settings_from(self.conf)
        settings.storage = study_storage(self.config)  # follows the tracking store by default
        sweep = OptunaSweep(settings, self.launcher, self.config, list(arguments))
        study = sweep.run()
        summary = study_summary(study, sweep.objective_name)
        out = Path(str(self.config.hydra.sweep.dir))
        sweep_cfg = {
            "arguments": list(arguments),
            **OmegaConf.to_container(self.config.hydra.sweeper),
        }
        files = write_summary(study, summary, sweep_cfg, out)
        log_to_parent(summary, files, self.config.logger.get("tracking_uri"))
        print(format_summary(summary, best_overrides(summary, sweep.space), out), flush=True)
        return summary
