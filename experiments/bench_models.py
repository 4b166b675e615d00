"""Backbone table for the README: parameters, training and inference beats/s (CPU), and with
``--cv`` the 5-fold patient-level AUROC per backbone and disorder (slow: 5 runs per cell).

    python experiments/bench_models.py [--length 450] [--batch 64] [--steps 20]
    python experiments/bench_models.py --cv --disorders hypokalemia --epochs 15
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from ecgml.models import available_backbones, build_backbone


def throughput(name: str, length: int, batch: int, steps: int) -> dict[str, float]:
    """Beats per second for training steps (forward+backward+AdamW) and for inference."""
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, n_outputs=1, seq_len=length)
    x, y = torch.randn(batch, 1, length), torch.randint(0, 2, (batch, 1)).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def train_step() -> None:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    train_rate = steps * batch / (time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        infer_rate = steps * batch / (time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "train_beats_s": train_rate, "infer_beats_s": infer_rate}


def cross_validated_auroc(model: str, disorder: str, folds: int, epochs: int) -> list[float]:
    """Test AUROC of each fold of ``split=group_kfold`` (runs go to the configured MLflow)."""
    from hydra import compose, initialize_config_dir

    from ecgml import CONF_DIR
    from ecgml.pipeline.run import run_one as train

    scores = []
    for fold in range(folds):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                [
                    f"model={model}",
                    f"disorder={disorder}",
                    "split=group_kfold",
                    f"split.n_splits={folds}",
                    f"split.fold={fold}",
                    f"trainer.max_epochs={epochs}",
                    "trainer.enable_progress_bar=false",
                    "training.log_checkpoint=false",
                    "evaluation.n_bootstrap=200",
                    "logger.experiment_name=bench-models",
                ],
            )
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        scores.append(float(train(cfg).metrics["test/auroc"]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=450, help="beat length (450 = 0.9 s)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cv", action="store_true", help="also 5-fold AUROC (slow)")
    parser.add_argument("--disorders", nargs="+", default=["hyperkalemia", "hypokalemia"])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models or available_backbones()
    print(
        f"CPU threads {args.threads} (os cores {os.cpu_count()}), beat length {args.length}, "
        f"batch {args.batch}, {args.steps} steps"
    )
    print("| model | parameters | training beats/s | inference beats/s |")
    print("|---|---:|---:|---:|")
    for name in models:
        r = throughput(name, args.length, args.batch, args.steps)
        print(
            f"| {name} | {r['params']:,} | {r['train_beats_s']:,.0f} | {r['infer_beats_s']:,.0f} |"
        )
    if args.cv:
        print("\n| model | " + " | ".join(f"{d} AUROC (mean ± sd)" for d in args.disorders) + " |")
        print("|---|" + "---:|" * len(args.disorders))
        for name in [*models, "features_lr"]:
            cells = []
            for disorder in args.disorders:
                s = cross_validated_auroc(name, disorder, args.folds, args.epochs)
                cells.append(f"{np.mean(s):.3f} ± {np.std(s):.3f}")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
