"""Several sweep processes on one Optuna study (issue 16 item 3): two workers started at once on
a PostgreSQL study share its n_trials and one MLflow parent; a worker SIGKILLed mid-trial leaves
a trial that the next worker marks FAIL (heartbeat) and retries; the joblib launcher runs trials
two at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ecgml import PROJECT_ROOT
from ecgml.sweep.shared import PARENT_ATTR
from tests.pg import PostgresServer, free_port
from tests.unit.sweep.test_sweep import run_sweep, sweep_command, sweep_runs, write_search

pytestmark = pytest.mark.slow
STUDY = "test-study"


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=storage)


def counted_params(study: optuna.Study) -> list[tuple]:
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    return [tuple(sorted(t.params.items())) for t in done]


def test_two_workers_finish_one_study_with_one_parent(
    tmp_path: Path, toy_store: Path, postgres: PostgresServer
) -> None:
    n_trials = 4
    conf = write_search(tmp_path, "shared", n_trials=n_trials, epochs=2)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = postgres.create_database()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = []
    for k in range(2):
        cmd = sweep_command(
            conf, "shared", toy_store, tmp_path / f"w{k}", f"hydra.sweeper.storage={storage}"
        )
        log = (tmp_path / f"worker{k}.log").open("w")
        procs.append(
            subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    codes = [p.wait(timeout=600) for p in procs]
    logs = [(tmp_path / f"worker{k}.log").read_text()[-3000:] for k in range(2)]
    assert codes == [0, 0], logs

    study = load(storage)
    params = counted_params(study)
    assert len(params) == n_trials, [t.state for t in study.trials]
    assert len(set(params)) == n_trials  # no duplicates: the second worker reseeded
    extra = [t for t in study.trials if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert all(t.user_attrs.get("surplus") for t in extra)  # only a dropped race, if any

    parents, children = sweep_runs(uri)
    assert len(parents) == 1
    parent = parents[0]
    assert study.user_attrs[PARENT_ATTR] == parent.info.run_id
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == n_trials
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    trial_tags = sorted(int(c.data.tags["optuna_trial"]) for c in finished)
    assert len(set(trial_tags)) == n_trials
    assert parent.info.status == "FINISHED"


def test_killed_worker_trial_is_failed_and_retried(tmp_path: Path, toy_store: Path) -> None:
    conf = write_search(tmp_path, "killed", n_trials=2, epochs=3)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = sweep_command(
        conf,
        "killed",
        toy_store,
        tmp_path,
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=3",
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    worker = subprocess.Popen(
        cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def running() -> list:
        try:
            return load(storage).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study or its tables do not exist yet
            return []

    deadline = time.monotonic() + 300
    while not running() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # mid-trial: the job is training
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    stale = running()
    assert len(stale) == 1, "the worker should have died with its trial RUNNING"
    time.sleep(3.5)  # past the grace period

    done = run_sweep(cmd, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    study = load(storage)
    first = study.trials[stale[0].number]
    assert first.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == first.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == first.params
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_joblib_launcher_runs_two_trials_at_once(tmp_path: Path, toy_store: Path) -> None:
    conf = write_search(tmp_path, "parallel", n_trials=2, epochs=2)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cmd = sweep_command(
        conf,
        "parallel",
        toy_store,
        tmp_path,
        f"hydra.sweeper.storage={storage}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    done = run_sweep(cmd, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 at a time" in done.stdout + done.stderr
    study = load(storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.trials[0].datetime_start < study.trials[1].datetime_complete
    assert study.trials[1].datetime_start < study.trials[0].datetime_complete  # overlapping
    parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags.get("optuna.state") for c in children} == {"COMPLETE"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_unreachable_storage_is_one_line_exit_2(tmp_path: Path, toy_store: Path) -> None:
    conf = write_search(tmp_path, "nowhere")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    url = f"postgresql+psycopg://me:s3cret@127.0.0.1:{free_port()}/studies"
    cmd = sweep_command(conf, "nowhere", toy_store, tmp_path, f"hydra.sweeper.storage={url}")
    start = time.monotonic()
    done = run_sweep(cmd, uri)
    assert time.monotonic() - start < 60  # process start included; the probe itself is ~0 s
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    assert "postgresql+psycopg://me:***@127.0.0.1" in lines[0] and "s3cret" not in done.stderr
    assert "hydra.sweeper.storage" in lines[0]
