"""Where runs go: the MLflow :class:`TrackingStore` (not the beat store, ``BeatStore``).

A sqlite store ``<repo>/mlruns/mlflow.db`` with artifacts under ``<repo>/mlruns/artifacts/``
unless ``MLFLOW_TRACKING_URI`` is set (a sqlite URI keeps its artifacts in an ``artifacts/``
folder beside the database); see docs/contracts.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from ecgml import PROJECT_ROOT


@dataclass(frozen=True)
class TrackingStore:
    """The MLflow tracking URI and (for local stores) the artifact root folder."""

    tracking_uri: str
    artifact_root: Path | None

    @property
    def lock_file(self) -> Path | None:
        return self.artifact_root.parent / ".experiments.lock" if self.artifact_root else None


def resolve_store(configured_uri: str | None = None, root: Path = PROJECT_ROOT) -> TrackingStore:
    """``MLFLOW_TRACKING_URI`` > ``logger.tracking_uri`` > ``sqlite:///<root>/mlruns/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured_uri
    if not uri:
        uri = f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        return TrackingStore(uri, database.parent / "artifacts")
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"MLflow tracking URI {uri!r} is a plain-folder store, which MLflow 3 rejects: "
            "use sqlite:///…/mlflow.db or an http(s) tracking server"
        )
    return TrackingStore(uri, None)


@contextlib.contextmanager
def preserved_tracking_uri() -> Iterator[None]:
    """Restore MLflow's module-level tracking URI and ``MLFLOW_TRACKING_URI`` after a block.

    Lightning's MLFlowLogger (and ``mlflow.set_tracking_uri`` generally) writes the environment
    variable, which :func:`resolve_store` reads first: without this, one run's store would leak
    into every later run of the same process (tests, sweeps, cross-validation, notebooks).
    """
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


#: MLflow 3's UI opens an experiment in its GenAI view (traces) unless it is tagged as model
#: training; ecgml's experiments are.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(store: TrackingStore, name: str) -> str:
    """Get or create the experiment (under a file lock: parallel jobs share one sqlite store)."""
    client = MlflowClient(store.tracking_uri)
    lock = FileLock(str(store.lock_file)) if store.lock_file else None
    if lock:
        lock.acquire(timeout=120)
    try:
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return found.experiment_id
        location = (store.artifact_root / name).as_uri() if store.artifact_root else None
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    finally:
        if lock:
            lock.release()
