"""Multi-label minus binary AUROC over several seeds of ``experiments/task_comparison.py``.

    .venv/bin/python experiments/seed_summary.py experiments/results/task_comparison.csv \
        experiments/results/task_comparison_seed*.csv

At Table-1 size one seed's difference moves by ±0.03 (other folds, other initialisations; each
AUROC's CI is ±0.06–0.09), so whether the multi-label model is "within 0.02" of the binary ones
is a question about the mean over seeds. Prints, per scale and disorder, each file's
difference, their mean, standard deviation and the standard error of the mean.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def seed_table(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        frames.append(frame.assign(run=path.stem, diff=frame["multilabel"] - frame["binary"]))
    return pd.concat(frames, ignore_index=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    grouped = table.groupby(["scale", "disorder"])
    out = grouped.agg(
        runs=("diff", "size"),
        binary=("binary", "mean"),
        multilabel=("multilabel", "mean"),
        mean_diff=("diff", "mean"),
        sd_diff=("diff", "std"),
    )
    out["sem_diff"] = out["sd_diff"] / np.sqrt(out["runs"])
    out["per_run"] = grouped["diff"].apply(lambda d: " ".join(f"{v:+.3f}" for v in d))
    return out.reset_index()


def markdown(rows: pd.DataFrame) -> str:
    lines = [
        "| scale | disorder | runs | binary (mean) | multi-label (mean) | multi − binary per run "
        "| mean (± s.e.) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        lines.append(
            f"| {r.scale:g} | {r.disorder} | {r.runs} | {r.binary:.3f} | {r.multilabel:.3f} | "
            f"{r.per_run} | **{r.mean_diff:+.3f}** (± {r.sem_diff:.3f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path, help="task_comparison.csv files, one per seed")
    args = parser.parse_args()
    print(markdown(summary(seed_table(args.csv))))


if __name__ == "__main__":
    main()
