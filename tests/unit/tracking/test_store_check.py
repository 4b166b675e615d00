"""The tracking store is checked before any data is loaded: one line, exit 2, within 15 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.tracking.store import check_store

UNREACHABLE = "http://127.0.0.1:9"


def test_unreachable_server_is_a_fast_user_error() -> None:
    start = time.monotonic()
    with pytest.raises(EcgmlError, match="127.0.0.1:9"):
        check_store(UNREACHABLE)
    assert time.monotonic() - start < 15


def test_sqlite_under_a_file_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(EcgmlError, match="a-file"):
        check_store(f"sqlite:///{blocker / 'mlruns' / 'mlflow.db'}")


@pytest.mark.parametrize("uri", ["sqlite:////proc/mlflow.db", "sqlite:////proc/ecgml/mlflow.db"])
def test_sqlite_in_proc_is_a_fast_user_error(uri: str) -> None:
    start = time.monotonic()
    with pytest.raises(EcgmlError, match="/proc"):
        check_store(uri)
    assert time.monotonic() - start < 15


def test_database_that_is_a_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").mkdir()
    with pytest.raises(EcgmlError, match="mlflow.db"):
        check_store(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "/tmp/mlruns", "mlruns"])
def test_plain_folder_uri_is_a_user_error(uri: str) -> None:
    with pytest.raises(EcgmlError, match="sqlite:///"):
        check_store(uri)


def test_good_sqlite_store_is_created_and_ready(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    store = check_store(uri)
    assert store.tracking_uri == uri
    assert (tmp_path / "new" / "mlflow.db").is_file()
    assert MlflowClient(uri).search_experiments() is not None


def run_cli(command: str, *args: str, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [sys.executable, "-m", f"ecgml.{command}", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


CASES = [
    ("train", ["data=beats", "data.path=/nonexistent/store"]),
    ("evaluate", ["run_id=0123456789abcdef"]),
    ("explain", ["run_id=0123456789abcdef"]),
    ("predict", ["input=/nonexistent.csv"]),
    ("promote", ["run_id=0123456789abcdef"]),
    ("compare", ["run_ids=[0123456789abcdef,fedcba9876543210]"]),
    ("export", ["run_id=0123456789abcdef", "out=model.onnx"]),
]


def check_cli(command: str, args: list[str], uri: str, tmp_path: Path) -> None:
    start = time.monotonic()
    done = run_cli(command, *args, f"hydra.run.dir={tmp_path}", uri=uri)
    assert time.monotonic() - start < 60  # the check itself: < 15 s; the rest is importing
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert uri in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "args"), CASES, ids=[c for c, _ in CASES])
def test_every_entry_point_checks_the_store_first(
    command: str, args: list[str], tmp_path: Path
) -> None:
    check_cli(command, args, UNREACHABLE, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["sqlite:////proc/mlflow.db", "file:///tmp/mlruns"])
def test_bad_local_stores_are_one_line_from_the_cli(uri: str, tmp_path: Path) -> None:
    check_cli("evaluate", ["run_id=0123456789abcdef"], uri, tmp_path)
