"""Training against an MLflow tracking server on PostgreSQL (``make server``) records what a
sqlite store records; promote and load work against the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgml.inference.loading import load_models
from ecgml.pipeline.run import RunResult
from ecgml.tracking.registry import promote_run, run_model_id
from tests.conftest import compose_once
from tests.pg import PostgresServer, free_port

pytestmark = pytest.mark.slow
SERVER_START_S = 90.0
#: Params whose values name where the run was stored (the tracking URI), nothing else.
DIFFERING_PARAMS: set[str] = set()  # the store is not a param (the resolved config.yaml has it)


def wait_until_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server {url} did not answer within {SERVER_START_S:.0f} s")


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (gunicorn/uvicorn workers too), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def tracking_server(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory):
    """``mlflow server`` on 127.0.0.1 over a fresh PostgreSQL database, artifacts proxied."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    cmd = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", postgres.create_database()),
        *("--artifacts-destination", str(root / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with (root / "server.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc)
        yield url
    finally:
        stop_group(proc)


def train_into(
    uri: str, toy_store: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> RunResult:
    from ecgml.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = compose_once(
        "data=beats",
        f"data.path={toy_store}",
        f"paths.cache_dir={cache}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "evaluation.n_bootstrap=20",
        "explain.enabled=false",
        f"logger.tracking_uri={uri}",
    )
    return train(cfg)


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found.add(item.path)
        if item.is_dir:
            found |= artifact_paths(client, run_id, item.path)
    return found


@pytest.fixture(scope="module")
def two_runs(tracking_server: str, toy_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same small training into the server and into a sqlite store."""
    sqlite_uri = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'mlflow.db'}"
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as monkeypatch:
        served = train_into(tracking_server, toy_store, cache, monkeypatch)
        local = train_into(sqlite_uri, toy_store, cache, monkeypatch)
    return (tracking_server, served), (sqlite_uri, local)


def test_server_run_records_what_the_sqlite_run_records(two_runs) -> None:
    (server_uri, served), (sqlite_uri, local) = two_runs
    server, sqlite = MlflowClient(server_uri), MlflowClient(sqlite_uri)
    a, b = server.get_run(served.run_id), sqlite.get_run(local.run_id)
    assert a.info.status == b.info.status == "FINISHED"

    assert set(a.data.params) == set(b.data.params)
    differing = {k for k in a.data.params if a.data.params[k] != b.data.params[k]}
    assert differing == DIFFERING_PARAMS

    assert set(a.data.metrics) == set(b.data.metrics)
    for key, value in a.data.metrics.items():
        assert value == pytest.approx(b.data.metrics[key], abs=1e-6, nan_ok=True), key

    assert a.data.tags == b.data.tags  # run name, git state, disorder, source: all equal

    assert artifact_paths(server, served.run_id) == artifact_paths(sqlite, local.run_id)
    assert artifact_paths(server, served.run_id) >= {"config.yaml", "predictions.csv"}
    assert run_model_id(server, served.run_id, server_uri)[1]
    assert run_model_id(sqlite, local.run_id, sqlite_uri)[1]


def test_promote_against_the_server(two_runs) -> None:
    (server_uri, served), _ = two_runs
    version = promote_run(served.run_id, tracking_uri=server_uri)
    assert str(version.version) == "1"
    # the model card fits PostgreSQL's VARCHAR(5000) description column
    described = MlflowClient(server_uri).get_model_version("ecgml-hyperkalemia", "1").description
    assert described.startswith("# Model card: hyperkalemia vs normal") and len(described) <= 5000
    loaded = load_models(["hyperkalemia"], tracking_uri=server_uri)["hyperkalemia"]
    assert loaded.run_id == served.run_id


def test_load_models_against_the_server(two_runs) -> None:
    (server_uri, served), _ = two_runs
    _, model_id = run_model_id(MlflowClient(server_uri), served.run_id, server_uri)
    spec = {"hyperkalemia": f"models:/{model_id}"}
    model = load_models(["hyperkalemia"], spec, tracking_uri=server_uri)["hyperkalemia"]
    assert model.threshold == pytest.approx(served.metrics["test/threshold"])
    assert model.seq_len > 0
