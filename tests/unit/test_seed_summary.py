"""experiments/seed_summary.py: the multi-label − binary difference averaged over seed runs."""

from pathlib import Path

import pandas as pd
import pytest

from experiments.seed_summary import markdown, seed_table, summary


def write_run(path: Path, binary: float, multilabel: float) -> Path:
    rows = [
        {"scale": 1.0, "disorder": "hyponatremia", "binary": binary, "multilabel": multilabel},
        {"scale": 1.0, "disorder": "hypokalemia", "binary": 0.9, "multilabel": 0.9},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_mean_difference_and_its_standard_error_over_runs(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / f"seed{k}.csv", 0.72, m) for k, m in enumerate((0.68, 0.71))]
    rows = summary(seed_table(runs)).set_index("disorder")
    assert rows.loc["hyponatremia", "runs"] == 2
    assert rows.loc["hyponatremia", "mean_diff"] == pytest.approx(-0.025)
    assert rows.loc["hyponatremia", "sem_diff"] == pytest.approx(0.015)  # sd 0.0212 / √2
    assert rows.loc["hyponatremia", "per_run"] == "-0.040 -0.010"
    assert rows.loc["hypokalemia", "mean_diff"] == pytest.approx(0.0)
    assert "**-0.025** (± 0.015)" in markdown(summary(seed_table(runs)))
