"""Benchmark ``mlflow models serve`` of an ecgml model: requests/s and latency on loopback.

A cnn1d model (untrained weights: speed does not depend on them) at the synthetic cohort's
shape is logged and promoted in a temporary MLflow store as ``ecgml.train`` + ``ecgml.promote``
do, served with ``mlflow models serve --env-manager local`` on 127.0.0.1, and sent
``--requests`` sequential requests of 1 and of 256 beats each (``dataframe_split``, raw beats
with their R index) from one client. The loop is bounded in count and time and the server is
stopped at the end.

    .venv/bin/python experiments/bench_serve.py [--requests 200] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import make_beats, register_models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(uri: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/ecgml-hyperkalemia@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return server
        except OSError:
            time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit("mlflow models serve did not start within 120 s")


def measure(port: int, body: bytes, n: int, max_s: float) -> list[float]:
    """Latencies (s) of up to ``n`` sequential requests, stopping after ``max_s`` seconds."""
    url = f"http://127.0.0.1:{port}/invocations"
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < n and time.perf_counter() - start < max_s:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        latencies.append(time.perf_counter() - t0)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        beats, r_index = make_beats(256)
        register_models(uri, beats.shape[1], r_index, 500.0)
        port = free_port()
        t0 = time.perf_counter()
        server = start_server(uri, port)
        print(f"{'server start-up (to first /ping)':<40} {time.perf_counter() - t0:8.2f} s")
        try:
            for size in (1, 256):
                rows = [[b.tolist(), r_index] for b in beats[:size]]
                body = json.dumps(
                    {"dataframe_split": {"columns": ["beat", "r_index"], "data": rows}}
                ).encode()
                measure(port, body, 5, 10)  # warm-up
                lat = np.array(measure(port, body, args.requests, args.max_seconds))
                p50, p99 = np.percentile(lat, [50, 99]) * 1000
                print(
                    f"{f'{size} beat(s)/request, {len(lat)} requests':<40} "
                    f"{len(lat) / lat.sum():8.1f} req/s  {size * len(lat) / lat.sum():10,.0f} "
                    f"beats/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
                )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
