"""Explainability speed: attributions for 1,000 beats with the default model on CPU.

Targets (issue 6): saliency < 5 s, integrated gradients < 60 s, for 1,000 beats of the default
cnn1d (conf/model/cnn1d.yaml) at the synthetic cohort's beat length (900 ms at 500 Hz). The
model is untrained: the cost of an attribution does not depend on the weights. Also times the
whole ``explain_model`` (localization, NeuroKit2 regions, statistics, sanity check, figures).

    .venv/bin/python experiments/bench_explain.py [--beats 1000] [--length 450] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ecgml import CONF_DIR
from ecgml.explain import compute_attributions, explain_model
from ecgml.pipeline.fitters import build_model

TARGETS = {"saliency": 5.0, "integrated_gradients": 60.0}


def toy_beats(n: int, length: int, fs: float, r: int, seed: int = 0) -> np.ndarray:
    """Gaussian P-QRS-T beats with a variable T, zero-padded tails like real padded beats."""
    rng = np.random.default_rng(seed)
    t = (np.arange(length) - r) / fs * 1000.0
    beats = np.zeros((n, length), dtype=np.float32)
    for k in range(n):
        wave = (
            0.15 * np.exp(-0.5 * ((t + 160) / 25) ** 2)
            + 1.2 * np.exp(-0.5 * (t / 12) ** 2)
            + rng.uniform(0.1, 0.6) * np.exp(-0.5 * ((t - rng.uniform(200, 300)) / 45) ** 2)
        )
        stop = length - int(rng.integers(0, length // 5))
        beats[k, :stop] = wave[:stop] + rng.normal(0, 0.01, stop)
    return beats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beats", type=int, default=1000)
    parser.add_argument("--length", type=int, default=450)
    parser.add_argument("--fs", type=float, default=500.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--skip-full", action="store_true", help="attributions only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train")
    explain_cfg = OmegaConf.to_container(cfg.explain, resolve=True)
    r = round(0.25 * args.fs)
    beats = toy_beats(args.beats, args.length, args.fs, r)
    model = build_model(cfg, args.length, pos_weight=0.0).eval()
    print(
        f"bench_explain: {args.beats} beats × {args.length} samples, model {cfg.model.name}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for method in ("saliency", "integrated_gradients", "gradient_shap", "occlusion"):
        start, cpu_start = time.perf_counter(), time.process_time()
        attributions = compute_attributions(
            model, beats, {**explain_cfg, "method": method}, args.fs, progress=False
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        target = TARGETS.get(method)
        verdict = (
            f"target < {target:.0f} s: {'ok' if seconds < target else 'MISSED'}" if target else ""
        )
        print(
            f"  {method:22s} {seconds:7.2f} s wall {cpu:7.2f} s CPU "
            f"{1000 * seconds / args.beats:6.2f} ms/beat  finite={np.isfinite(attributions).all()}"
            f"  {verdict}"
        )
    if args.skip_full:
        return
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, args.beats)
    predictions = pd.DataFrame(
        {
            "patient_id": [f"P{k // 3:04d}" for k in range(args.beats)],
            "beat_id": [f"B{k:05d}" for k in range(args.beats)],
            "split": "test",
            "y_true": y,
            "y_prob": rng.uniform(size=args.beats),
        }
    ).assign(y_pred=lambda f: (f["y_prob"] > 0.5).astype(int))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        explain_model(model, beats, predictions, args.fs, r, explain_cfg, Path(out))
        print(f"  explain_model (saliency, all steps)  {time.perf_counter() - start:7.2f} s wall")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
