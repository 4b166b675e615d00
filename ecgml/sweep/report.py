"""The sweep's summary: files in the sweep folder, mirrored into the MLflow parent run."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ecgml.tracking import parent_run, resolve_store
from ecgml.tracking.artifacts import log_files

log = logging.getLogger("ecgml.sweep")
PLOTS = {
    "optimization_history.png": "plot_optimization_history",
    "param_importances.png": "plot_param_importances",
    "intermediate_values.png": "plot_intermediate_values",
}


def save_plots(study: optuna.Study, out: Path) -> list[Path]:
    """Optuna's matplotlib plots (plotly's static export needs a browser download)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    saved = []
    for filename, function in PLOTS.items():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = getattr(optuna_plots, function)(study)
            for warning in caught:  # e.g. importances all equal over a few similar trials
                log.info("%s: %s", filename, warning.message)
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.savefig(out / filename, dpi=110, bbox_inches="tight")
            plt.close(figure)
            saved.append(out / filename)
        except Exception as err:  # e.g. importances need 2+ completed trials with varied params
            log.info("no %s: %s", filename, err)
            plt.close("all")
    return saved


def write_summary(
    study: optuna.Study, summary: Mapping[str, Any], sweep_cfg: Mapping[str, Any], out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "optimization_results.yaml", out / "sweep.yaml", out / "trials.csv"]
    files[0].write_text(OmegaConf.to_yaml(OmegaConf.create(dict(summary))))
    files[1].write_text(OmegaConf.to_yaml(OmegaConf.create(dict(sweep_cfg))))
    study.trials_dataframe().to_csv(files[2], index=False)
    return files + save_plots(study, out)


def log_to_parent(summary: Mapping[str, Any], files: list[Path], tracking_uri: str | None) -> None:
    """Best value/params and the summary files on the sweep's MLflow parent run (if any)."""
    run_id, _ = parent_run()
    if not run_id:
        return
    client = MlflowClient(resolve_store(tracking_uri).tracking_uri)
    for key in ("study_name", "direction", "optimized_metric"):
        client.set_tag(run_id, f"optuna.{key}", str(summary[key]))
    for state, count in summary["states"].items():
        client.log_metric(run_id, f"sweep/n_{state.lower()}", float(count))
    if "best_value" in summary:
        client.log_metric(run_id, "sweep/best_value", float(summary["best_value"]))
        client.set_tag(run_id, "optuna.best_trial", str(summary["best_trial"]))
        for key, value in summary["best_params"].items():
            client.log_param(run_id, f"best.{key.lstrip('+')}"[:250], str(value)[:6000])
    log_files(client, run_id, files, under="sweep")


def format_summary(summary: Mapping[str, Any], best_overrides: list[str], out: Path) -> str:
    lines = [
        "",
        f"ecgml sweep: study {summary['study_name']!r}, {summary['n_trials']} trial(s) "
        f"({', '.join(f'{n} {s.lower()}' for s, n in summary['states'].items())})",
    ]
    if "best_value" in summary:
        lines += [
            f"  best {summary['optimized_metric']} = {summary['best_value']:.4f} "
            f"(trial {summary['best_trial']})",
            f"  best overrides: {' '.join(best_overrides)}",
        ]
    else:
        lines.append("  no trial completed")
    lines.append(f"  summary, trials.csv and plots: {out}")
    return "\n".join(lines)
