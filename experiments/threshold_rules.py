"""Does the decision threshold chosen on validation hold on the test patients?

    .venv/bin/python experiments/threshold_rules.py [--seeds 0 1 … 9] [--disorders …]
        [--out experiments/results] [--replot] [key=value ...]

Trains the main job (holdout, the default model of each disorder) once per disorder and seed,
keeps each run's validation and test predictions (``--out/threshold_rules/<d>-s<seed>.csv``;
``--replot`` reuses them), and applies every threshold rule of :mod:`ecgml.evaluation.threshold`
to the same recalibrated validation probabilities, and two candidates measured and not shipped:
``prevalence`` (the positive fraction: J-optimal on perfectly calibrated probabilities) and
``youden_bootstrap`` (the median Youden point of 200 validation patient resamples). Per rule
it reports, over the runs: the gap between the test Youden's J at the chosen threshold and the
best J any threshold reaches on that test set (median, IQR), the shift of sensitivity and
specificity from validation to test, the threshold's spread over seeds, and the test accuracy
(beside, not judged). Writes ``threshold_rules.md`` / ``.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from ecgml import DISORDERS, PROJECT_ROOT
from ecgml.evaluation.bootstrap import patient_bootstrap_indices
from ecgml.evaluation.threshold import THRESHOLD_RULES, choose_threshold


def prevalence_rule(val: pd.DataFrame) -> float:
    return float(val["y_true"].mean())


def youden_point(y: np.ndarray, prob: np.ndarray, weights: np.ndarray | None = None) -> float:
    fpr, tpr, thresholds = roc_curve(y, prob, sample_weight=weights)
    j = np.where(np.isfinite(thresholds), tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def bootstrap_youden_rule(val: pd.DataFrame) -> float:
    y, prob, ids = val["y_true"].to_numpy(), val["y_prob"].to_numpy(), val["patient_id"]
    plan = patient_bootstrap_indices(ids, y, 200, 0)
    weights = plan.counts[:, plan.columns(ids)].astype(float)
    usable = [w for w in weights if w[y == 1].sum() > 0 and w[y == 0].sum() > 0]
    return float(np.median([youden_point(y, prob, w) for w in usable]))


#: Rules measured here but not shipped: the threshold from the validation rows.
CANDIDATES = {"prevalence": prevalence_rule, "youden_bootstrap": bootstrap_youden_rule}
RULES = (*(r for r in THRESHOLD_RULES if r != "fixed"), *CANDIDATES)


def train_predictions(disorder: str, seed: int, overrides: list[str], tmp: Path) -> pd.DataFrame:
    """The validation and test rows of the main job's ``predictions.csv``."""
    from ecgml.train import train
    from tests.conftest import compose_once

    cfg = compose_once(
        f"disorder={disorder}",
        f"seed={seed}",
        "trainer.enable_progress_bar=false",
        "explain.enabled=false",
        "training.log_model=false",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"hydra.run.dir={tmp / 'out'}",
        *overrides,
    )
    return train(cfg).predictions


def sens_spec(y: np.ndarray, prob: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = prob >= threshold
    return float(pred[y == 1].mean()), float((~pred[y == 0]).mean())


def rule_row(run: pd.DataFrame, rule: str) -> dict[str, float]:
    val, test = run[run["split"] == "val"], run[run["split"] == "test"]
    if rule in CANDIDATES:
        t = CANDIDATES[rule](val)
    else:
        t = choose_threshold(val["y_true"], val["y_prob"], rule=rule)
    y, prob = test["y_true"].to_numpy(), test["y_prob"].to_numpy()
    sens, spec = sens_spec(y, prob, t)
    val_sens, val_spec = sens_spec(val["y_true"].to_numpy(), val["y_prob"].to_numpy(), t)
    fpr, tpr, _ = roc_curve(y, prob)
    return {
        "threshold": t,
        "test_j": sens + spec - 1,
        "best_test_j": float(np.max(tpr - fpr)),
        "gap": float(np.max(tpr - fpr)) - (sens + spec - 1),
        "sensitivity_shift": sens - val_sens,
        "specificity_shift": spec - val_spec,
        "accuracy": float(((prob >= t) == y).mean()),
        "val_positive_patients": float(val.loc[val["y_true"] == 1, "patient_id"].nunique()),
    }


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    def q(s: pd.Series, p: float) -> float:
        return float(s.quantile(p))

    out = []
    for (disorder, rule), part in rows.groupby(["disorder", "rule"], sort=False):
        out.append(
            {
                "disorder": disorder,
                "rule": rule,
                "runs": len(part),
                "median_gap": part["gap"].median(),
                "gap_iqr": f"{q(part['gap'], 0.25):.2f}–{q(part['gap'], 0.75):.2f}",
                "median_sensitivity_shift": part["sensitivity_shift"].median(),
                "median_specificity_shift": part["specificity_shift"].median(),
                "threshold_iqr": "–".join(f"{q(part['threshold'], p):.3f}" for p in (0.25, 0.75)),
                "median_accuracy": part["accuracy"].median(),
            }
        )
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--disorders", nargs="+", default=list(DISORDERS), choices=DISORDERS)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results")
    parser.add_argument("--replot", action="store_true", help="reuse the saved predictions")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    folder = args.out / "threshold_rules"
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(PROJECT_ROOT))
    start = time.perf_counter()
    rows = []
    for disorder in args.disorders:
        for seed in args.seeds:
            path = folder / f"{disorder}-s{seed}.csv"
            if not (args.replot and path.is_file()):
                with tempfile.TemporaryDirectory(prefix="ecgml-thr-") as tmp:
                    run = train_predictions(disorder, seed, args.overrides, Path(tmp))
                keep = ["patient_id", "split", "y_true", "y_prob"]
                run.loc[run["split"].isin(["val", "test"]), keep].to_csv(path, index=False)
            run = pd.read_csv(path, dtype={"patient_id": str})
            rows += [
                {"disorder": disorder, "seed": seed, "rule": rule, **rule_row(run, rule)}
                for rule in RULES
            ]
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "threshold_rules.csv", index=False)
    summary = summarize(table)
    overall = table.groupby("rule", sort=False)["gap"].median()
    text = (
        f"# Threshold rules: test Youden's J gap (best J on test − J at the chosen threshold)\n\n"
        f"{len(args.seeds)} seeds × {len(args.disorders)} disorders, holdout main job; "
        f"{time.perf_counter() - start:.0f} s.\n\n"
        + markdown(summary)
        + "\n\nMedian gap over every run: "
        + ", ".join(f"{rule} {gap:.3f}" for rule, gap in overall.items())
        + "\n"
    )
    (args.out / "threshold_rules.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
