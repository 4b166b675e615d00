"""`python -m ecgml.serve` (make serve: MLflow's scoring app behind ecgml's guard) answers with
ecgml.predict's numbers; bad requests get HTTP 400 with one line, oversized or deeply nested
bodies are refused before MLflow parses them."""

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
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def served(registry) -> Iterator[tuple[int, str]]:  # noqa: F811
    """``python -m ecgml.serve`` of the hyponatremia champion on 127.0.0.1, stopped afterwards."""
    uri = registry[0]
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ecgml.serve",
            "model_uri=models:/ecgml-hyponatremia@champion",
            f"port={port}",
            "log_level=warning",
            f"hydra.run.dir={Path(uri.removeprefix('sqlite:///')).parent}",
        ],
        env={**env, "ECGML_SERVE_MAX_BODY_MB": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"ecgml.serve exited: {server.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"ecgml.serve did not answer /ping within {STARTUP_S} s")
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
    rows = [
        [store.beats[i].tolist(), int(meta.loc[i, "r_index"]), store.info.fs]
        for i in range(len(meta))
    ]
    status, body = post(
        port, {"dataframe_split": {"columns": ["beat", "r_index", "fs"], "data": rows}}
    )
    assert status == 200, body
    served_p = pd.DataFrame(body["predictions"])["hyponatremia"].to_numpy()
    models = load_models(["hyponatremia"], tracking_uri=uri)
    per_beat = {
        b["beat_id"]: b["probabilities"]["hyponatremia"]
        for e in predict_path(store_dir, models)
        for b in e["per_beat"]
    }
    expected = np.array([per_beat[b] for b in meta["beat_id"]])
    np.testing.assert_allclose(served_p, expected, rtol=1e-5, atol=1e-7)
    # fs as a JSON integer (500, not 500.0): a model logged today takes it
    status, body = post(
        port, {"inputs": [{"beat": rows[0][0], "r_index": rows[0][1], "fs": int(rows[0][2])}]}
    )
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
    assert "\n" not in body["message"] and "Failed to predict" not in body["message"]
    assert set(body) == {"error_code", "message"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([[0.1] * 450, 12.7], "r_index=12.7 is not a sample"),  # never truncated to 12
        ([[1e308] * 450, 125], "beyond ±1000 mV"),
        ([[0.1] * 450, -3], "r_index=-3 is not a sample"),
    ],
)
def test_values_the_model_refuses_get_one_line(served, row, reason) -> None:
    port, _ = served
    status, body = post(port, {"dataframe_split": {"columns": ["beat", "r_index"], "data": [row]}})
    assert status == 400 and reason in body["message"] and "\n" not in body["message"]


def raw_post(port: int, head: bytes, body: bytes) -> tuple[int, dict, float]:
    """Send ``head`` + ``body`` on a raw socket (a client that declares more than it sends)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1]), time.monotonic() - start


def test_oversized_and_deeply_nested_bodies_are_refused_at_once(served) -> None:
    port, _ = served
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 209715200\r\n\r\n"
    )
    status, body, seconds = raw_post(port, head, b'{"dataframe_split": {"data": [')
    assert status == 400 and "larger than 4 MB" in body["message"] and seconds < 10
    deep = b"[" * 100_000 + b"]" * 100_000
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(deep)).encode() + b"\r\n\r\n"
    )
    status, body, _ = raw_post(port, head, deep)
    assert status == 400 and "nests deeper than" in body["message"]
