"""Processes that open one fresh sqlite store at the same moment do not race its migration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT

pytestmark = pytest.mark.slow

# What train does first with a store: get or create its experiment (see make_logger).
OPEN_STORE = """
import sys, time
from ecgml.tracking.store import ensure_experiment, resolve_store
uri, start = sys.argv[1], float(sys.argv[2])
store = resolve_store(uri)
while time.time() < start:
    time.sleep(0.002)
ensure_experiment(store, "race")
"""


@pytest.mark.parametrize("attempt", range(2))
def test_two_processes_create_one_store(tmp_path: Path, attempt: int) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    start = str(time.time() + 8)  # both processes are imported and waiting by then
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-c", OPEN_STORE, uri, start]
    procs = [
        subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-2000:]
    assert MlflowClient(uri).get_experiment_by_name("race") is not None
