"""MLflow plumbing: where the store is, run names, tags, and the logger for one run.

The Contracts: a sqlite store ``<repo>/mlruns/mlflow.db`` with artifacts under
``<repo>/mlruns/artifacts/`` unless ``MLFLOW_TRACKING_URI`` is set (a sqlite URI keeps its
artifacts in an ``artifacts/`` folder beside the database). One run per job, logged through the
logger's client (never the fluent API, which would open a second run).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml import PROJECT_ROOT
from ecgml.sweep.context import parent_run

if TYPE_CHECKING:  # lightning is heavy to import; only training needs the logger
    from lightning.pytorch.loggers import MLFlowLogger


@dataclass(frozen=True)
class Store:
    """Where runs go: the tracking URI and (for local stores) the artifact root folder."""

    tracking_uri: str
    artifact_root: Path | None

    @property
    def lock_file(self) -> Path | None:
        return self.artifact_root.parent / ".experiments.lock" if self.artifact_root else None


def resolve_store(configured_uri: str | None = None, root: Path = PROJECT_ROOT) -> Store:
    """``MLFLOW_TRACKING_URI`` > ``logger.tracking_uri`` > ``sqlite:///<root>/mlruns/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured_uri
    if not uri:
        uri = f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        return Store(uri, database.parent / "artifacts")
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"MLflow tracking URI {uri!r} is a plain-folder store, which MLflow 3 rejects: "
            "use sqlite:///…/mlflow.db or an http(s) tracking server"
        )
    return Store(uri, None)


@contextlib.contextmanager
def preserved_tracking_uri() -> Iterator[None]:
    """Restore MLflow's module-level tracking URI and ``MLFLOW_TRACKING_URI`` after a block.

    Lightning's MLFlowLogger (and ``mlflow.set_tracking_uri`` generally) writes the environment
    variable, which :func:`resolve_store` reads first: without this, one run's store would leak
    into every later run of the same process (tests, sweeps, cross-validation, notebooks).
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous_uri = tracking_utils._tracking_uri
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous_uri)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def experiment_name(cfg: DictConfig) -> str:
    """``logger.experiment_name``, else the enclosing sweep's experiment, else ecgml-<disorder>."""
    _, sweep_experiment = parent_run()
    return cfg.logger.get("experiment_name") or sweep_experiment or f"ecgml-{cfg.disorder.name}"


def run_name(cfg: DictConfig) -> str:
    if cfg.logger.get("run_name"):
        return str(cfg.logger.run_name)
    name = f"{cfg.disorder.name}-{cfg.model.name}-s{cfg.seed}"
    if cfg.split.name == "group_kfold":
        name += f"-fold{cfg.split.fold}"
    elif cfg.split.name == "leave_center_out":
        name += f"-{cfg.split.by}-{cfg.split.fold}"
    return name


def ensure_experiment(store: Store, name: str) -> str:
    """Get or create the experiment (under a file lock: parallel jobs share one sqlite store)."""
    client = MlflowClient(store.tracking_uri)
    lock = FileLock(str(store.lock_file)) if store.lock_file else None
    if lock:
        lock.acquire(timeout=120)
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = (store.artifact_root / name).as_uri() if store.artifact_root else None
        return client.create_experiment(name, artifact_location=location)
    finally:
        if lock:
            lock.release()


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the checkout (``unknown`` outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
    }


def config_digest(cfg: DictConfig) -> str:
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:12]


def make_logger(
    cfg: DictConfig, tags: dict[str, str] | None = None, parent_run_id: str | None = None
) -> MLFlowLogger:
    """An MLFlowLogger for one run in the configured store and experiment."""
    from lightning.pytorch.loggers import MLFlowLogger

    store = resolve_store(cfg.logger.get("tracking_uri"))
    name = experiment_name(cfg)
    ensure_experiment(store, name)
    all_tags: dict[str, Any] = {**git_state(), **(tags or {})}
    all_tags.update({str(k): str(v) for k, v in (cfg.logger.get("tags") or {}).items()})
    parent_run_id = parent_run_id or parent_run()[0]
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return MLFlowLogger(
        experiment_name=name,
        run_name=run_name(cfg),
        tracking_uri=store.tracking_uri,
        tags=all_tags,
        log_model=False,
    )


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as flat ``a.b.c`` params (MLflow params hold ≤ 6000 chars)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = str(node)[:6000]

    walk("", container)
    return flat
