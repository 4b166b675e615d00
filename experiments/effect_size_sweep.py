"""Where does detection fail? Test AUROC against the synthetic cohort's effect `severity`.

    .venv/bin/python experiments/effect_size_sweep.py [--severities 0 0.5 1 1.5] [--scale 2]
        [--epochs 25] [--model cnn1d] [--out experiments/results]

For each severity (0 = disorders invisible, 1 = literature-sized effects) and each disorder, one
patient-level holdout run of the main job on a cohort built at that severity (cached per config).
Prints a markdown table (test AUROC with its patient-level bootstrap 95% CI) and writes
`effect_size_sweep.csv` / `.md` / `.png` into `--out`. Runs are tracked in the MLflow experiment
`ecgml-effect-size`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure

from ecgml import CONF_DIR, DISORDERS, PROJECT_ROOT
from ecgml.pipeline.run import run_one as train

COLORS = {"hyperkalemia": "tab:orange", "hypokalemia": "tab:red", "hyponatremia": "tab:purple"}


def run_one(disorder: str, severity: float, args: argparse.Namespace) -> dict[str, float]:
    overrides = [
        f"disorder={disorder}",
        f"model={args.model}",
        f"data.cohort.severity={severity}",
        f"data.cohort.scale={args.scale}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "explain.enabled=false",
        "training.log_checkpoint=false",
        "logger.experiment_name=ecgml-effect-size",
        f"logger.run_name={disorder}-{args.model}-sev{severity:g}",
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    metrics = train(cfg).metrics
    return {
        "disorder": disorder,
        "severity": severity,
        "auroc": metrics["test/auroc"],
        "auroc_ci_low": metrics["test/auroc_ci_low"],
        "auroc_ci_high": metrics["test/auroc_ci_high"],
        "accuracy": metrics["test/accuracy"],
        "n_test_patients": metrics["test/n_patients"],
    }


def plot(results: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for disorder, part in results.groupby("disorder"):
        part = part.sort_values("severity")
        ax.errorbar(
            part["severity"],
            part["auroc"],
            yerr=[part["auroc"] - part["auroc_ci_low"], part["auroc_ci_high"] - part["auroc"]],
            marker="o",
            capsize=3,
            color=COLORS.get(disorder),
            label=disorder,
        )
    ax.axhline(0.5, ls=":", color="0.5")
    ax.set(xlabel="effect severity (1 = literature-sized)", ylabel="test AUROC (95% CI)")
    ax.set(ylim=(0.0, 1.02), title="Detection vs effect size (synthetic cohort)")
    ax.legend(loc="lower right")
    return figure


def markdown_table(table: pd.DataFrame) -> str:
    header = ["severity", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for severity, row in table.iterrows():
        lines.append("| " + " | ".join([f"{severity:g}", *map(str, row.tolist())]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severities", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    parser.add_argument("--disorders", nargs="+", default=list(DISORDERS))
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for severity in args.severities:
        for disorder in args.disorders:
            start = time.perf_counter()
            rows.append(run_one(disorder, severity, args))
            print(
                f"severity {severity:g} {disorder}: AUROC {rows[-1]['auroc']:.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "effect_size_sweep.csv", index=False)
    plot(results).savefig(args.out / "effect_size_sweep.png", dpi=150, bbox_inches="tight")
    table = results.assign(
        cell=lambda d: d.apply(
            lambda r: f"{r.auroc:.2f} ({r.auroc_ci_low:.2f}–{r.auroc_ci_high:.2f})", axis=1
        )
    ).pivot(index="severity", columns="disorder", values="cell")
    markdown = (
        f"Test AUROC (95% CI), {args.model}, cohort scale {args.scale:g}, holdout 70/15/15.\n\n"
        + markdown_table(table)
    )
    (args.out / "effect_size_sweep.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
