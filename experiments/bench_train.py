"""Benchmark the main job: wall time of `python -m ecgml.train`, training and inference beats/s.

    .venv/bin/python experiments/bench_train.py [--model cnn1d] [--skip-main-job]

Prints a markdown table for the README. The main job runs twice into a temporary MLflow store:
cold (the synthetic cohort is built into an empty cache) and warm (cohort cached).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ecgml import PROJECT_ROOT
from ecgml.models import build_backbone
from ecgml.models.inference import fused_for_inference


def time_main_job(cache_dir: Path, store: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.train",
            f"paths.cache_dir={cache_dir}",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={store}/run-${{now:%H%M%S%f}}",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def training_throughput(model_name: str, seq_len: int, n_beats: int = 2048) -> float:
    """Beats per second of forward + backward + AdamW step at batch 64."""
    model = build_backbone(model_name, in_channels=1, n_outputs=1, seq_len=seq_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 1, seq_len), torch.randint(0, 2, (64, 1)).float()
    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(2):  # warm-up
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    start = time.perf_counter()
    for _ in range(n_beats // 64):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    return n_beats / (time.perf_counter() - start)


@torch.inference_mode()
def inference_throughput(
    model_name: str, seq_len: int, n_beats: int = 16384, fused: bool = True
) -> float:
    """Beats per second of sigmoid(model(x)) at batch 256, as ``ecgml.predict`` scores (the
    model's Conv+BN folded by :func:`fused_for_inference` unless ``fused=False``)."""
    model = build_backbone(model_name, in_channels=1, n_outputs=1, seq_len=seq_len).eval()
    model = fused_for_inference(model) if fused else model
    x = torch.randn(256, 1, seq_len)
    for _ in range(3):  # warm-up
        torch.sigmoid(model(x))
    start = time.perf_counter()
    for _ in range(n_beats // 256):
        torch.sigmoid(model(x))
    return n_beats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--seq-len", type=int, default=450, help="samples (0.9 s at 500 Hz)")
    parser.add_argument("--skip-main-job", action="store_true")
    args = parser.parse_args()
    rows = [("torch threads", f"{torch.get_num_threads()}")]
    if not args.skip_main_job:
        with tempfile.TemporaryDirectory() as tmp:
            cache, store = Path(tmp) / "cache", Path(tmp) / "mlruns"
            rows.append(
                ("main job, cold cache (cohort built), s", f"{time_main_job(cache, store):.1f}")
            )
            rows.append(("main job, warm cache, s", f"{time_main_job(cache, store):.1f}"))
    rows.append(
        (
            f"training beats/s ({args.model}, batch 64)",
            f"{training_throughput(args.model, args.seq_len):,.0f}",
        )
    )
    rows.append(
        (
            f"inference beats/s ({args.model}, batch 256, unfused)",
            f"{inference_throughput(args.model, args.seq_len, fused=False):,.0f}",
        )
    )
    rows.append(
        (
            f"inference beats/s ({args.model}, batch 256, as ecgml.predict scores)",
            f"{inference_throughput(args.model, args.seq_len):,.0f}",
        )
    )
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
