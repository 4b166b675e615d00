"""Where the Optuna study lives.

Unless ``hydra.sweeper.storage`` is given on the command line, a study configured with the
repository default (``<repo>/mlruns/optuna.db``, ``conf/hparams_search/base.yaml``) follows the
MLflow store the run actually uses: ``sqlite:///<folder of that mlflow.db>/optuna.db``. With a
tracking server (http) the repository default stays. This module does not import Optuna (slow);
:func:`ecgml.sweep.optuna_sweeper.refuse_finished_study` checks a persistent study.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from ecgml.tracking import resolve_store

STORAGE_KEY = "hydra.sweeper.storage"
OPTUNA_DB = "optuna.db"
SQLITE = "sqlite:///"


def storage_url(storage: str | None) -> str | None:
    """A SQLAlchemy URL as is; a plain path becomes a sqlite file (its folder is created)."""
    if not storage:
        return None
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE}{path}"


def storage_given(config: DictConfig) -> bool:
    """True when the command line sets ``hydra.sweeper.storage``."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.hydra))
    return any(o.key_or_group.lstrip("+~") == STORAGE_KEY for o in overrides)


def repo_default(config: DictConfig) -> Path:
    return (Path(str(config.paths.root_dir)) / "mlruns" / OPTUNA_DB).resolve()


def beside_tracking_store(config: DictConfig) -> str | None:
    """``sqlite:///<folder of the run's mlflow.db>/optuna.db``; None for a tracking server."""
    uri = resolve_store(config.logger.get("tracking_uri")).tracking_uri
    if not uri.startswith(SQLITE):
        return None
    return storage_url(str(Path(uri.removeprefix(SQLITE)).parent / OPTUNA_DB))


def study_storage(config: DictConfig) -> str | None:
    """The storage URL of the sweep's study (None: an in-memory study)."""
    configured = config.hydra.sweeper.get("storage")
    if not configured:
        return None
    is_default = "://" not in str(configured) and Path(str(configured)).expanduser().resolve() == (
        repo_default(config)
    )
    if is_default and not storage_given(config):
        followed = beside_tracking_store(config)
        if followed is not None:
            return followed
    return storage_url(str(configured))
