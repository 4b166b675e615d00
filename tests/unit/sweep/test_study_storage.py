"""The Optuna study follows the MLflow store (ecgml/sweep/storage.py), and a finished study is
refused in one line, exit 2, without a new parent run."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from ecgml import CONF_DIR, PROJECT_ROOT
from ecgml.sweep.storage import study_storage
from tests.unit.sweep.test_sweep import (
    TEST_SEARCH,
    run_sweep,
    sweep_command,
    sweep_runs,
    write_search,
)


def sweep_config(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", ["hparams_search=cnn1d", *overrides], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_default_storage_sits_beside_the_sqlite_tracking_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert study_storage(sweep_config()) == f"sqlite:///{tmp_path / 'store' / 'optuna.db'}"


def test_http_tracking_keeps_the_repo_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5005")
    assert study_storage(sweep_config()) == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'optuna.db'}"


def test_a_storage_given_on_the_command_line_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    repo_default = PROJECT_ROOT / "mlruns" / "optuna.db"
    cfg = sweep_config(f"hydra.sweeper.storage={repo_default}")
    assert study_storage(cfg) == f"sqlite:///{repo_default}"
    pg = "postgresql+psycopg://u@127.0.0.1:5432/optuna"
    assert study_storage(sweep_config(f"hydra.sweeper.storage='{pg}'")) == pg
    assert study_storage(sweep_config("hydra.sweeper.storage=null")) is None


@pytest.mark.slow
def test_finished_study_is_refused_in_one_line_without_a_parent_run(
    tmp_path: Path, toy_store: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    conf = write_search(tmp_path, "follow", epochs=1, n_trials=1)
    search = conf / "hparams_search" / "follow.yaml"
    search.write_text(search.read_text().replace("    storage: null\n", ""))  # the default
    assert "storage" not in search.read_text() and "storage: null" in TEST_SEARCH
    study = f"follow-{uuid.uuid4().hex[:8]}"
    cmd = sweep_command(conf, "follow", toy_store, tmp_path, f"hydra.sweeper.study_name={study}")

    first = run_sweep(cmd, uri)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "store" / "optuna.db").is_file()  # beside mlflow.db, not in the repo
    assert len(sweep_runs(uri)[0]) == 1

    again = run_sweep(cmd, uri)
    assert again.returncode == 2, again.stderr[-3000:]
    expected = (
        f"error: study {study} already has 1 of 1 trials; "
        "raise hydra.sweeper.n_trials or pass a new study name"
    )
    assert again.stderr.strip() == expected  # one line, nothing else
    parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 1  # no empty parent run
