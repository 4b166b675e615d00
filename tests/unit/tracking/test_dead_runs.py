"""How runs end: KILLED on Ctrl-C/SIGTERM, and KILLED on the next start when their process
died without ending them (SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ecgml.tracking.runs import (
    RunTerminated,
    make_logger,
    process_gone,
    process_start,
    run_tags,
    tracked_run,
)
from ecgml.tracking.store import ensure_experiment, preserved_tracking_uri, resolve_store


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def cfg_for(uri: str):
    return OmegaConf.create(
        {
            "logger": {"tracking_uri": uri, "experiment_name": "dead", "run_name": "r", "tags": {}},
            "disorder": {"name": "hyperkalemia"},
        }
    )


def test_run_tags_record_pid_and_host(tmp_path: Path) -> None:
    tags = run_tags(cfg_for(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert tags["ecgml.pid"] == str(os.getpid())
    assert tags["ecgml.host"] == socket.gethostname()


def test_a_reused_pid_counts_as_gone() -> None:
    started = process_start(os.getpid())
    assert not process_gone(os.getpid(), started)
    assert not process_gone(os.getpid(), None)  # no start time recorded: the pid decides
    if started is not None:  # Linux
        assert process_gone(os.getpid(), str(int(started) + 1))
    assert process_gone(dead_pid(), None)


def test_next_start_marks_a_dead_processes_run_killed(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(uri)
    experiment = ensure_experiment(resolve_store(uri), "dead")
    host = socket.gethostname()
    dead = client.create_run(experiment, tags={"ecgml.pid": str(dead_pid()), "ecgml.host": host})
    alive = client.create_run(experiment, tags={"ecgml.pid": str(os.getpid()), "ecgml.host": host})
    elsewhere = client.create_run(
        experiment, tags={"ecgml.pid": str(dead_pid()), "ecgml.host": f"not-{host}"}
    )

    with preserved_tracking_uri():  # the logger sets MLFLOW_TRACKING_URI
        logger = make_logger(cfg_for(uri))
        assert logger.run_id  # the new run opened

    killed = client.get_run(dead.info.run_id)
    assert killed.info.status == "KILLED"
    assert "ecgml.killed_reason" in killed.data.tags
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"


def _recording_client() -> tuple[object, list[str]]:
    statuses: list[str] = []

    class Client:
        def set_terminated(self, _run_id: str, status: str) -> None:
            statuses.append(status)

    return Client(), statuses


def _lightning_ctrl_c() -> SystemExit:
    """What Lightning raises on Ctrl-C: ``sys.exit(1)`` inside ``except KeyboardInterrupt``."""
    exit_ = SystemExit(1)
    exit_.__context__ = KeyboardInterrupt()
    return exit_


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (KeyboardInterrupt(), "KILLED"),
        (RunTerminated(), "KILLED"),
        (_lightning_ctrl_c(), "KILLED"),
        (RuntimeError("boom"), "FAILED"),
        (SystemExit(1), "FAILED"),
    ],
    ids=["ctrl-c", "sigterm", "lightning-ctrl-c", "error", "exit"],
)
def test_tracked_run_status(error: BaseException, status: str) -> None:
    client, statuses = _recording_client()
    with pytest.raises(type(error)), tracked_run(client, "r"):  # type: ignore[arg-type]
        raise error
    assert statuses == [status]


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM is handled already"
)
def test_sigterm_inside_a_tracked_run_exits_143_and_kills_it() -> None:
    client, statuses = _recording_client()
    with pytest.raises(SystemExit) as stopped, tracked_run(client, "r"):  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert stopped.value.code == 143
    assert statuses == ["KILLED"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def _send_sigterm_then_wait_from(module: str) -> list[str]:
    """Run ``os.kill(self, SIGTERM)`` followed by a short wait as code of ``module``; report
    whether the wait ran to its end, as a database call would have to."""
    finished: list[str] = []
    namespace = {"__name__": module, "os": os, "signal": signal, "time": time, "done": finished}
    exec(  # the code runs as a module of that name: what the handler inspects
        "def call():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(0.3)\n"
        "    done.append('finished')\n",
        namespace,
    )
    namespace["call"]()  # type: ignore[operator]
    return finished


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM is handled already"
)
def test_sigterm_waits_for_a_database_call_to_finish() -> None:
    """A SIGTERM landing inside SQLAlchemy must not break the transaction (its connection would
    keep SQLite's write lock and the KILLED status could not be written): it is delivered again
    once the call has returned."""
    client, statuses = _recording_client()
    finished: list[str] = []
    with pytest.raises(SystemExit) as stopped, tracked_run(client, "r"):  # type: ignore[arg-type]
        finished += _send_sigterm_then_wait_from("sqlalchemy.engine.fake")
        time.sleep(5)  # the re-sent signal raises before this ends
    assert finished == ["finished"]
    assert stopped.value.code == 143
    assert statuses == ["KILLED"]


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM is handled already"
)
def test_sigterm_outside_a_database_call_stops_at_once() -> None:
    client, _ = _recording_client()
    finished: list[str] = []
    with pytest.raises(SystemExit), tracked_run(client, "r"):  # type: ignore[arg-type]
        finished += _send_sigterm_then_wait_from("ecgml.training")
    assert finished == []
