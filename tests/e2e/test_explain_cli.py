"""Explain inside a training run and again with ``python -m ecgml.explain run_id=…``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.explain.__main__ import explain_run
from ecgml.explain.pipeline import read_stats
from ecgml.train import train

pytestmark = pytest.mark.slow
EXPLAIN_FILES = {
    "saliency.csv",
    "explain.md",
    "stats.csv",
    "overlay.png",
    "examples.png",
    "profiles.png",
}


def artifact_names(client: MlflowClient, run_id: str, folder: str) -> set[str]:
    return {Path(f.path).name for f in client.list_artifacts(run_id, folder)}


@pytest.fixture()
def explained_run(compose_cfg, toy_store: Path, mlflow_store: str) -> tuple[str, str]:
    cfg = compose_cfg(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=50",
        "explain.enabled=true",
        "explain.figures.dpi=40",
        "explain.sanity.max_beats=32",
    )
    result = train(cfg)
    assert "explain/peak_ms_positive_mean" in result.metrics
    return result.run_id, mlflow_store


def logged_stats(client: MlflowClient, run_id: str, folder: str, into: Path) -> dict[str, float]:
    return read_stats(Path(client.download_artifacts(run_id, f"{folder}/stats.csv", str(into))))


def test_training_run_carries_the_explain_artifacts_and_stats(
    explained_run, compose_cfg, tmp_path: Path
) -> None:
    run_id, uri = explained_run
    client = MlflowClient(uri)
    assert artifact_names(client, run_id, "explain") == EXPLAIN_FILES
    assert not [k for k in client.get_run(run_id).data.metrics if k.startswith("explain")]
    stats = logged_stats(client, run_id, "explain", tmp_path / "before")
    for key in (
        "explain/shift_ms",
        "explain/t_region_fraction_positive",
        "explain/sanity_similarity",
    ):
        assert np.isfinite(stats[key]), key

    cfg = compose_cfg(
        f"run_id={run_id}", "method=integrated_gradients", "figures.enabled=false", name="explain"
    )
    out = Path(cfg.paths.output_dir) / "explain"
    again = explain_run(cfg, out)
    assert (out / "saliency.csv").is_file() and "Method `integrated_gradients`" in (
        out / "explain.md"
    ).read_text()
    rerun = "explain_runs/integrated_gradients"
    logged = logged_stats(client, run_id, rerun, tmp_path / "rerun")
    assert logged.keys() == again.keys()
    assert all(np.isclose(logged[k], v, equal_nan=True) for k, v in again.items())
    # the training run's own explain/ is left as it was logged: same files, same statistics
    assert artifact_names(client, run_id, "explain") == EXPLAIN_FILES
    assert logged_stats(client, run_id, "explain", tmp_path / "after") == pytest.approx(
        stats, nan_ok=True
    )
    assert {"saliency.csv", "explain.md", "stats.csv"} <= artifact_names(client, run_id, rerun)


def test_unknown_run_is_a_user_error(compose_cfg, mlflow_store: str) -> None:
    with pytest.raises(EcgmlError, match="is not in the MLflow store"):
        explain_run(compose_cfg("run_id=0123456789abcdef", name="explain"))
    with pytest.raises(EcgmlError, match="run_id="):
        explain_run(compose_cfg(name="explain"))


def test_cli_unknown_run_id_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.explain",
            "run_id=doesnotexist",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run_id=doesnotexist" in errors[0]
    assert "Traceback" not in run.stderr
