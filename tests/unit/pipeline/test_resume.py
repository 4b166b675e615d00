"""``resume=<run_id>``: a run killed mid-training continues from its last checkpoint, same run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.pipeline.run import resume_run
from tests.unit.pipeline.test_train import fast, run_cli

EPOCHS = 12


def toy_args(toy_store: Path, *extra: str) -> list[str]:
    return [
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        *fast(f"trainer.max_epochs={EPOCHS}", "explain.enabled=false"),
        *extra,
    ]


def start_and_kill(uri: str, toy_store: Path, after_epochs: int = 2) -> tuple[str, int]:
    """Start a training run, SIGKILL it once ``after_epochs`` checkpoints were logged; its id and
    the number of ``val/auroc`` values it had logged."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    process = subprocess.Popen(
        [sys.executable, "-m", "ecgml.train", *toy_args(toy_store)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client, deadline = MlflowClient(uri), time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"training ended before the kill: {process.stderr}"
            run_id = checkpointed_run(client, after_epochs)
            if run_id:
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return run_id, len(client.get_metric_history(run_id, "val/auroc"))
            time.sleep(0.1)
        raise AssertionError("no checkpoint was logged in time")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def checkpointed_run(client: MlflowClient, epochs: int) -> str | None:
    """The run being trained, once it logged ``last.ckpt`` and ``epochs`` epochs of metrics."""
    experiment = client.get_experiment_by_name("ecgml-hyperkalemia")
    if experiment is None:
        return None
    for run in client.search_runs([experiment.experiment_id]):
        logged = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
        done = len(client.get_metric_history(run.info.run_id, "val/auroc"))
        if "checkpoints/last.ckpt" in logged and done >= epochs:
            return run.info.run_id
    return None


@pytest.mark.slow
def test_killed_run_resumes_into_the_same_run(tmp_path: Path, toy_store: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run_id, logged_before = start_and_kill(uri, toy_store)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "RUNNING"  # SIGKILL: nobody ended it

    resumed = run_cli(*fast(f"resume={run_id}"), env_uri=uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == f"run_id: {run_id}"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ecgml.resumed"] == "1" and "ecgml.killed_reason" not in run.data.tags
    assert "test/auroc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= artifacts
    history = client.get_metric_history(run_id, "val/auroc")
    # continued from the checkpoint (at most the epoch after it is trained twice), not restarted
    assert 2 <= logged_before < EPOCHS and EPOCHS <= len(history) <= EPOCHS + 1
    assert max(m.value for m in client.get_metric_history(run_id, "epoch")) == EPOCHS - 1

    whole = run_cli(*toy_args(toy_store), env_uri=uri)  # uninterrupted, same seed
    assert whole.returncode == 0, whole.stderr[-3000:]
    whole_id = whole.stdout.strip().splitlines()[-1].removeprefix("run_id: ").strip()
    whole_run = client.get_run(whole_id)
    assert {m.step for m in history} == {
        m.step for m in client.get_metric_history(whole_id, "val/auroc")
    }
    for key in ("test/auroc", "val_final/auroc"):
        assert run.data.metrics[key] == pytest.approx(whole_run.data.metrics[key], abs=0.1)


def test_resume_of_an_unknown_run_is_one_line_exit_2(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run = run_cli("resume=0123456789abcdef0123456789abcdef", env_uri=uri)
    assert run.returncode == 2
    lines = [line for line in run.stderr.strip().splitlines() if " INFO mlflow" not in line]
    assert len(lines) == 1 and "is not in the MLflow store" in lines[0], run.stderr


def test_resume_without_checkpoint_says_so(compose_cfg, mlflow_store: str) -> None:
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("ecgml-hyperkalemia")
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id, "KILLED")
    with pytest.raises(EcgmlError, match="no checkpoint to resume from") as error:
        resume_run(compose_cfg(f"resume={run_id}"))
    assert "\n" not in str(error.value)
    with pytest.raises(EcgmlError, match="is not in the MLflow store"):
        resume_run(compose_cfg("resume=0123456789abcdef0123456789abcdef"))
