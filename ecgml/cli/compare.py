"""``python -m ecgml.compare run_ids=[a,b]``: is run B better than run A, or just different?

Both runs' ``predictions.csv`` are fetched from the store and compared on the test patients
both scored by a paired patient-level bootstrap (:mod:`ecgml.evaluation.compare`). The table
is printed and logged to a new *comparison run* in run A's experiment (tags
``ecgml.compare.run_a`` / ``ecgml.compare.run_b``; metrics ``compare/<metric>_<level>_diff``
with ``_ci_low`` / ``_ci_high`` / ``_p``; artifacts ``comparison.md`` and ``comparison.csv``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, ListConfig

from ecgml.cli import hydra_entry
from ecgml.cli.evaluate import fetch_predictions
from ecgml.errors import EcgmlError
from ecgml.evaluation.compare import compare_predictions, comparison_markdown
from ecgml.evaluation.patients import check_aggregate
from ecgml.tracking import check_store, client_run, finite_metrics
from ecgml.tracking.artifacts import log_files


def run_pair(run_ids: object) -> tuple[str, str]:
    """The two run ids of ``run_ids=[a,b]`` (a one-line error otherwise)."""
    ids = [str(r) for r in run_ids] if isinstance(run_ids, ListConfig | list | tuple) else []
    if len(ids) != 2 or ids[0] == ids[1]:
        raise EcgmlError(
            f"run_ids={run_ids} must name two different runs: run_ids=[<run A>,<run B>] "
            "(copy them from the `run_id:` lines train printed or from the MLflow UI)"
        )
    return ids[0], ids[1]


def run_aggregate(client: MlflowClient, run_id: str) -> str:
    """How the run combined a patient's beats for its ``test_patient/*`` (its logged
    ``evaluation.aggregate``; runs from before that option: the mean)."""
    return check_aggregate(client.get_run(run_id).data.params.get("evaluation.aggregate", "mean"))


def threshold_probabilities(values: object) -> tuple[float, ...]:
    """``net_benefit_thresholds`` as fractions strictly inside (0, 1)."""
    out = []
    for v in values if isinstance(values, ListConfig | list | tuple) else [values]:
        try:
            t = float(v)  # type: ignore[arg-type]  # anything: a non-number is refused below
        except (TypeError, ValueError):
            t = float("nan")
        if not 0.0 < t < 1.0:
            raise EcgmlError(
                f"net_benefit_thresholds: {v} is not a probability in (0, 1); "
                "e.g. net_benefit_thresholds=[0.1,0.2,0.3]"
            )
        out.append(t)
    return tuple(out)


def comparison_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``compare/<metric>_<level>_{a,b,diff,diff_ci_low,diff_ci_high,p}`` of the table."""
    out: dict[str, float] = {}
    for r in table.itertuples(index=False):
        key = f"compare/{r.metric}_{r.level}"
        out |= {
            f"{key}_a": r.run_a,
            f"{key}_b": r.run_b,
            f"{key}_diff": r.difference,
            f"{key}_diff_ci_low": r.ci_low,
            f"{key}_diff_ci_high": r.ci_high,
            f"{key}_p": r.p_value,
        }
    return out


def log_comparison(
    client: MlflowClient, run_a: str, run_b: str, table: pd.DataFrame, report: str
) -> str:
    """A new run in run A's experiment holding the comparison; returns its id."""
    experiment_id = client.get_run(run_a).info.experiment_id
    name = f"compare-{run_a[:8]}-vs-{run_b[:8]}"
    tags = {"ecgml.compare": "true", "ecgml.compare.run_a": run_a, "ecgml.compare.run_b": run_b}
    with client_run(client, experiment_id, name, tags) as run_id:
        for key, value in finite_metrics(comparison_metrics(table)).items():
            client.log_metric(run_id, key, value)
        with tempfile.TemporaryDirectory(prefix="ecgml-compare-") as tmp:
            (Path(tmp) / "comparison.md").write_text(report, encoding="utf-8")
            table.to_csv(Path(tmp) / "comparison.csv", index=False)
            log_files(client, run_id, [Path(tmp) / "comparison.md", Path(tmp) / "comparison.csv"])
    return run_id


def compare(cfg: DictConfig) -> str:
    run_a, run_b = run_pair(cfg.run_ids)
    thresholds = threshold_probabilities(cfg.net_benefit_thresholds)
    store = check_store(cfg.tracking_uri)
    client = MlflowClient(store.tracking_uri)
    a = fetch_predictions(client, run_a, store.tracking_uri)
    b = fetch_predictions(client, run_b, store.tracking_uri)
    aggregates = (run_aggregate(client, run_a), run_aggregate(client, run_b))
    table = compare_predictions(
        a, b, int(cfg.n_bootstrap), int(cfg.seed), float(cfg.ci_level), thresholds, aggregates
    )
    report = comparison_markdown(table, run_a, run_b, float(cfg.ci_level))
    run_id = log_comparison(client, run_a, run_b, table, report)
    print(report, flush=True)
    print(f"comparison run_id: {run_id}", flush=True)
    return run_id


main = hydra_entry("compare")(compare)
