"""`mlflow models serve` answers with ecgml.predict's numbers; bad requests get HTTP 400."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store
from ecgml.inference.loading import load_models
from ecgml.inference.score import predict_path
from tests.e2e.test_inference_e2e import registry  # noqa: F401  (module fixture: 3 champions)

pytestmark = pytest.mark.slow
STARTUP_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def served(registry) -> Iterator[tuple[int, str]]:  # noqa: F811
    """``mlflow models serve`` of the hyponatremia champion on 127.0.0.1, stopped afterwards."""
    uri = registry[0]
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m",
         "models:/ecgml-hyponatremia@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"mlflow models serve exited: {server.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow models serve did not answer /ping within {STARTUP_S} s")
        yield port, uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_served_probabilities_equal_ecgml_predict(served, registry) -> None:  # noqa: F811
    port, uri = served
    store_dir = registry[1]["hyponatremia"]
    store = load_beat_store(store_dir)
    meta = store.meta.reset_index(drop=True)
    rows = [[store.beats[i].tolist(), int(meta.loc[i, "r_index"]), store.info.fs]
            for i in range(len(meta))]  # fmt: skip
    status, body = post(port, {"dataframe_split": {"columns": ["beat", "r_index", "fs"],
                                                   "data": rows}})  # fmt: skip
    assert status == 200, body
    served_p = pd.DataFrame(body["predictions"])["hyponatremia"].to_numpy()
    models = load_models(["hyponatremia"], tracking_uri=uri)
    per_beat = {b["beat_id"]: b["probabilities"]["hyponatremia"]
                for e in predict_path(store_dir, models) for b in e["per_beat"]}  # fmt: skip
    expected = np.array([per_beat[b] for b in meta["beat_id"]])
    np.testing.assert_allclose(served_p, expected, rtol=1e-5, atol=1e-7)
    status, body = post(port, {"inputs": [{"beat": rows[0][0], "r_index": rows[0][1],
                                           "fs": rows[0][2]}]})  # fmt: skip
    assert status == 200 and body["predictions"][0]["hyponatremia"] == pytest.approx(served_p[0])


@pytest.mark.parametrize(
    ("data", "columns", "reason"),
    [
        ([[[0.1] * 20]], ["beat"], "must be exactly"),  # wrong length without r_index
        ([[[0.1, float("nan"), 0.2], 1]], ["beat", "r_index"], "NaN"),
        ([[1.0]], ["r_index"], "missing inputs ['beat']"),
        ([], ["beat"], "empty batch"),
    ],
)
def test_bad_requests_get_400_with_a_reason(served, data, columns, reason) -> None:
    port, _ = served
    status, body = post(port, {"dataframe_split": {"columns": columns, "data": data}})
    assert status == 400
    assert reason in body["message"] and "Traceback" not in body["message"]
