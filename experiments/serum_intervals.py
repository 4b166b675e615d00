"""Do the serum intervals hold, and how much of the signal does the serum regressor use?

    .venv/bin/python experiments/serum_intervals.py [--serums potassium sodium] [--seeds 1 2 3]
        [--scales 1] [--folds 5] [--epochs 40] [--out experiments/results] [key=value ...]

For each serum value, cohort scale (Table 1 × scale) and seed, ecgml's own cross-validation
(``task=<serum> split=group_kfold``, MLflow into a temporary store) is run and its pooled
out-of-fold patients read back (``patient_predictions.csv`` of the parent: each fold's test
patients with the interval its own validation patients calibrated):

* patient-level interval coverage and mean width at ``evaluation.interval_level`` (0.9), and
  whether the coverage lies inside the 95 % binomial interval of the level for that many
  patients; coverage per measured band (bands under 30 patients: too small);
* MAE of the patient-level estimate against predicting each fold's **training mean** (the mean
  of the patients outside that fold's test split), and their ratio (< 1: the model uses the ECG);
* the severity AUROCs (K ≥ 6.0 …) with their CIs, from the parent's metrics.

Writes ``serum_intervals.md`` and ``serum_intervals.csv`` into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from ecgml import CONF_DIR
from ecgml.data.tasks import SERUM
from ecgml.evaluation.serum_intervals import BANDS, severity_auroc_key, severity_columns
from ecgml.pipeline.crossval import cross_validate


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def one_run(serum: str, scale: float, seed: int, args: argparse.Namespace, store: str) -> dict:
    cfg = compose_cfg(
        [
            f"task={serum}",
            "split=group_kfold",
            f"split.n_splits={args.folds}",
            f"seed={seed}",
            f"data.cohort.scale={scale}",
            f"trainer.max_epochs={args.epochs}",
            f"logger.tracking_uri={store}",
            "explain.enabled=false",
            *args.overrides,
        ]
    )
    started = time.perf_counter()
    result = cross_validate(cfg)
    seconds = time.perf_counter() - started
    client = MlflowClient(store)
    folder = Path(client.download_artifacts(result.run_id, "patient_predictions.csv"))
    patients = pd.read_csv(folder, dtype={"patient_id": str})
    test = patients[patients["split"] == "test"]
    # each fold's training mean: its non-test patients (train and validation) of the cohort
    everyone = test[["patient_id", "y_true"]]
    baseline_error = []
    for fold, rows in test.groupby("fold"):
        outside = everyone.loc[test["fold"] != fold, "y_true"].mean()
        baseline_error.append(np.abs(rows["y_true"] - outside))
    baseline = float(pd.concat(baseline_error).mean())
    mae = float(np.abs(test["y_true"] - test["y_pred"]).mean())
    inside = (test["y_true"] >= test["y_low"]) & (test["y_true"] <= test["y_high"])
    level = float(cfg.evaluation.interval_level)
    n = len(test)
    half = 1.96 * math.sqrt(level * (1 - level) / n)
    metrics = result.metrics
    row = {
        "serum": serum,
        "scale": scale,
        "seed": seed,
        "patients": n,
        "mae": mae,
        "mae_training_mean": baseline,
        "mae_ratio": mae / baseline,
        "coverage": float(inside.mean()),
        "coverage_low_ok": level - half,
        "coverage_high_ok": level + half,
        "width": float((test["y_high"] - test["y_low"]).mean()),
        "seconds": seconds,
    }
    for band, low, high in BANDS[serum]:
        rows = (test["y_true"] >= low) & (test["y_true"] < high)
        row[f"band_{band}_n"] = int(rows.sum())
        row[f"band_{band}"] = float(inside[rows].mean()) if rows.sum() >= 30 else math.nan
    for column in severity_columns(serum):
        key = f"test_patient/{severity_auroc_key(serum, column)}"
        for suffix in ("", "_ci_low", "_ci_high"):
            row[f"{severity_auroc_key(serum, column)}{suffix}"] = metrics.get(key + suffix)
    return row


def markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| serum | scale | seed | patients | MAE | training-mean MAE | ratio | coverage | "
        "95% band of 0.90 | width |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in frame.iterrows():
        lines.append(
            f"| {r.serum} | {r.scale:g} | {r.seed} | {r.patients} | {r.mae:.3f} | "
            f"{r.mae_training_mean:.3f} | {r.mae_ratio:.2f} | {r.coverage:.3f} | "
            f"{r.coverage_low_ok:.3f}–{r.coverage_high_ok:.3f} | {r.width:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serums", nargs="+", default=list(SERUM))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="serum-intervals-") as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for scale in args.scales:
            for serum in args.serums:
                for seed in args.seeds:
                    rows.append(one_run(serum, scale, seed, args, store))
                    print(markdown(pd.DataFrame(rows[-1:])).splitlines()[-1], flush=True)
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "serum_intervals.csv", index=False)
    summary = frame.groupby(["serum", "scale"])[["mae_ratio", "coverage", "width"]].mean()
    table = summary.round(3).to_string()
    text = f"{markdown(frame)}\n\nMean over seeds:\n\n```\n{table}\n```\n"
    (args.out / "serum_intervals.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
