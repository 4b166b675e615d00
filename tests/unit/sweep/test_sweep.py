"""The ecgml_optuna sweeper: discovery, search-space grammar, objective lookup (fast) and
end-to-end sweeps on a toy beat store through the CLI (slow)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ecgml import CONF_DIR, PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.pipeline.run import RunResult
from ecgml.sweep.context import ObjectiveMetricMissing, objective_value
from ecgml.sweep.optuna_sweeper import make_sampler, settings_from, storage_url
from ecgml.sweep.search_space import parse_search_space, trial_overrides
from tests.console import third_party_lines

# -- fast ------------------------------------------------------------------------------------


def test_plugin_is_discovered_and_hparams_search_composes() -> None:
    assert "EcgmlOptunaSweeper" in [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train", ["hparams_search=cnn1d", "disorder=hypokalemia"], return_hydra_config=True
            )
    finally:
        GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("EcgmlOptunaSweeper")
    assert cfg.optimized_metric == "val/auroc_best"
    assert cfg.explain.enabled is False and cfg.training.log_checkpoint is False
    settings = settings_from(OmegaConf.to_container(sweeper, resolve=True))
    assert settings.n_trials == 20 and settings.pruner["name"] == "median"
    space = parse_search_space(settings.params, [])
    assert isinstance(space.distributions["model.optimizer.lr"], FloatDistribution)
    assert space.distributions["model.optimizer.lr"].log


def test_search_space_grammar_maps_to_optuna_distributions() -> None:
    space = parse_search_space(
        {"a": "choice(1, 2, 3)", "b": "range(2, 10, 2)", "c": "interval(0.0, 0.5)"},
        ["d=tag(log, interval(1e-4, 1e-1))", "e=interval(1, 5)", "f=7", "model=cnn1d,resnet1d"],
    )
    d = space.distributions
    assert d["a"] == CategoricalDistribution([1, 2, 3])
    assert d["b"] == IntDistribution(2, 8, step=2)
    assert d["c"] == FloatDistribution(0.0, 0.5)
    assert d["d"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["e"] == FloatDistribution(1.0, 5.0)  # Hydra intervals are float
    assert d["model"] == CategoricalDistribution(["cnn1d", "resnet1d"])
    assert space.fixed == ["f=7"]
    assert trial_overrides(space, {"a": 2, "c": 0.25}) == ["f=7", "a=2", "c=0.25"]


def test_grid_sampler_needs_discrete_params() -> None:
    discrete = parse_search_space({"a": "choice(1, 2)", "b": "range(0, 3)"}, [])
    assert discrete.grid() == {"a": [1, 2], "b": [0, 1, 2]}
    assert isinstance(make_sampler({"name": "grid"}, discrete), optuna.samplers.GridSampler)
    with pytest.raises(EcgmlError, match="continuous"):
        parse_search_space({"c": "interval(0, 1.0)"}, []).grid()
    with pytest.raises(EcgmlError, match="unknown"):
        make_sampler({"name": "anneal"}, discrete)


def test_storage_path_becomes_a_sqlite_url(tmp_path: Path) -> None:
    assert storage_url(None) is None
    assert storage_url("postgresql://u@h/db") == "postgresql://u@h/db"
    url = storage_url(str(tmp_path / "sub" / "optuna.db"))
    assert url == f"sqlite:///{tmp_path / 'sub' / 'optuna.db'}"
    assert (tmp_path / "sub").is_dir()


def test_objective_comes_from_config_and_fails_loudly_when_misspelled() -> None:
    fit = {"val/auroc_best": 0.8, "val/auroc": 0.7}

    def result(metrics: dict[str, float]) -> RunResult:
        return RunResult("run", "0", metrics, pd.DataFrame(), fit_metrics=fit)

    cfg = OmegaConf.create({"optimized_metric": "val/auroc_best"})
    assert objective_value(cfg, result({"test/auroc": 0.6})) == pytest.approx(0.8)
    assert objective_value(OmegaConf.create({}), result({"test/auroc": 0.6})) == pytest.approx(0.6)
    assert math.isnan(objective_value(cfg, result({"val/auroc_best": float("nan")})))
    with pytest.raises(ObjectiveMetricMissing, match="val/aurco_best.*val/auroc_best"):
        objective_value(OmegaConf.create({"optimized_metric": "val/aurco_best"}), result({}))


# -- slow: the CLI end to end --------------------------------------------------------------

TEST_SEARCH = """# @package _global_
defaults:
  - base
  - override /disorder: hyperkalemia
trainer:
  max_epochs: {epochs}
training:
  early_stopping_patience: 100
evaluation:
  n_bootstrap: 50
hydra:
  sweeper:
    study_name: test-study
    storage: null
    n_trials: {n_trials}
    sampler: {sampler}
    pruner: {pruner}
    params: {params}
    enqueue_trials: {enqueue}
"""


def write_search(root: Path, name: str, **values: object) -> Path:
    folder = root / "conf" / "hparams_search"
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {
        "epochs": 3,
        "n_trials": 3,
        "sampler": "{name: random, seed: 0}",
        "pruner": "{name: none}",
        "params": "{model.optimizer.lr: 'tag(log, interval(1e-3, 1e-2))'}",
        "enqueue": "[]",
    }
    (folder / f"{name}.yaml").write_text(TEST_SEARCH.format(**{**defaults, **values}))
    return root / "conf"


def sweep_command(conf: Path, name: str, store: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ecgml.train",
        "-m",
        f"hydra.searchpath=[file://{conf}]",
        f"hparams_search={name}",
        "data=beats",
        f"data.path={store}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
        "trainer.log_every_n_steps=1",
        *extra,
    ]


def run_sweep(cmd: list[str], uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def sweep_runs(uri: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    parents = [r for r in runs if r.data.tags.get("ecgml.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.fixture()
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.mark.slow
def test_three_trial_sweep_makes_one_parent_with_three_children(
    tmp_path: Path, toy_store: Path, uri: str
) -> None:
    conf = write_search(tmp_path, "toy")
    run = run_sweep(sweep_command(conf, "toy", toy_store, tmp_path), uri)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best val/auroc_best" in run.stdout
    assert third_party_lines(run.stdout + run.stderr) == []
    parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["optuna.state"] == "COMPLETE" for c in children)
    best = max(c.data.metrics["val/auroc_best"] for c in children)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/best_value"] == pytest.approx(best)
    assert "best.model.optimizer.lr" in parent.data.params
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/optimization_history.png", "sweep/trials.csv"} <= artifacts
    assert {c.info.run_name for c in children} == {f"hyperkalemia-cnn1d-trial{k}" for k in range(3)}
    # the parent names its best child and links its page (the model-training view)
    (winner,) = [c for c in children if c.info.run_id == parent.data.tags["ecgml.best_run_id"]]
    assert winner.data.metrics["val/auroc_best"] == pytest.approx(best)
    assert (
        f"/runs/{winner.info.run_id}?workflowType=machine_learning"
        in (parent.data.tags["mlflow.note.content"])
    )
    assert "mlflow.source.name" in parent.data.tags


DESIGNED_PARAMS = (
    "{model.optimizer.lr: 'choice(0.02, 1.0e-12)', model.backbone.dropout: 'choice(0.0, 1.5)'}"
)


@pytest.mark.slow
def test_failing_trial_is_recorded_and_pruning_stops_a_hopeless_one(
    tmp_path: Path, toy_store: Path, uri: str
) -> None:
    """Enqueued: a good learning rate, an impossible dropout (the job raises), and lr=1e-12
    (nothing is learnt, so the median pruner stops it after the warm-up epoch)."""
    conf = write_search(
        tmp_path,
        "designed",
        epochs=5,
        pruner="{name: median, n_startup_trials: 1, n_warmup_steps: 1}",
        params=DESIGNED_PARAMS,
        enqueue=(
            "[{model.optimizer.lr: 0.02, model.backbone.dropout: 0.0},"
            " {model.optimizer.lr: 0.02, model.backbone.dropout: 1.5},"
            " {model.optimizer.lr: 1.0e-12, model.backbone.dropout: 0.0}]"
        ),
    )
    storage = tmp_path / "optuna.db"
    cmd = sweep_command(conf, "designed", toy_store, tmp_path, f"hydra.sweeper.storage={storage}")
    run = run_sweep(cmd, uri)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{storage}")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert study.metric_names == ["val/auroc_best"]  # optuna-dashboard's label, not "Objective 0"
    assert "dropout" in study.trials[1].user_attrs["fail_reason"]
    _, children = sweep_runs(uri)
    pruned = [c for c in children if c.data.tags.get("optuna.state") == "PRUNED"]
    assert len(pruned) == 1 and pruned[0].data.tags["optuna.pruned_at_epoch"] in {"1", "2", "3"}


@pytest.mark.slow
def test_interrupted_sweep_resumes_to_n_trials(tmp_path: Path, toy_store: Path, uri: str) -> None:
    conf = write_search(tmp_path, "resume", n_trials=4, epochs=2)
    storage = tmp_path / "optuna.db"
    cmd = sweep_command(conf, "resume", toy_store, tmp_path, f"hydra.sweeper.storage={storage}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def completed() -> int:
        try:
            study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{storage}")
        except (KeyError, Exception):  # the study does not exist yet
            return 0
        return len(study.get_trials(states=(TrialState.COMPLETE,)))

    deadline = time.monotonic() + 600
    while completed() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    assert 2 <= completed() < 4

    run = run_sweep(cmd, uri)
    assert run.returncode == 0, run.stderr[-3000:]
    assert completed() == 4
    parents, children = sweep_runs(uri)
    assert len(parents) == 1  # the resumed study re-opened its parent
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4
    assert parents[0].info.status == "FINISHED"


def test_a_retry_of_a_killed_trial_is_never_surplus() -> None:
    from ecgml.sweep.optuna_sweeper import is_surplus

    def trial(number: int, state: TrialState, **system: object) -> optuna.trial.FrozenTrial:
        value = 0.5 if state == TrialState.COMPLETE else None
        frozen = optuna.trial.create_trial(state=state, value=value, system_attrs=dict(system))
        frozen.number = number
        return frozen

    # n_trials=2: trial 0 done, trial 1 killed mid-run, trial 2 its retry
    killed_second = [
        trial(0, TrialState.COMPLETE),
        trial(1, TrialState.FAIL),
        trial(2, TrialState.WAITING, failed_trial=1, retry_history=[1]),
    ]
    assert not is_surplus(killed_second, 2, n_trials=2)
    # the same study with no retry behind trial 1: a third trial is surplus
    assert is_surplus([*killed_second[:2], trial(2, TrialState.RUNNING)], 2, n_trials=2)
    # killed in the first trial: its retry is not surplus either
    killed_first = [trial(0, TrialState.FAIL), trial(1, TrialState.WAITING, retry_history=[0])]
    assert not is_surplus(killed_first, 1, n_trials=2)


def test_the_best_child_follows_the_direction_and_skips_unfinished_or_nan_runs() -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from ecgml.sweep.parent import best_child, objective_direction

    def child(name: str, status: str, value: float) -> SimpleNamespace:
        return SimpleNamespace(
            info=SimpleNamespace(run_name=name, status=status),
            data=SimpleNamespace(metrics={"val/mae_best": value}),
        )

    runs = [
        child("a", "FINISHED", 0.5),
        child("b", "FINISHED", 0.3),
        child("c", "FAILED", 0.1),
        child("d", "FINISHED", float("nan")),
    ]
    assert best_child(runs, "val/mae_best", "minimize").info.run_name == "b"
    assert best_child(runs, "val/mae_best", "maximize").info.run_name == "a"
    assert best_child(runs, "val/auroc", "maximize") is None
    sweep = OmegaConf.create({"hydra": {"sweeper": {"direction": "minimize"}}})
    task_only = OmegaConf.create({"hydra": {"sweeper": {}}, "task": {"direction": "minimize"}})
    assert objective_direction(sweep) == objective_direction(task_only) == "minimize"
    assert objective_direction(OmegaConf.create({"hydra": {"sweeper": {}}})) == "maximize"
