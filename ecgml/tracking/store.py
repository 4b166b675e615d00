"""Where runs go: the MLflow :class:`TrackingStore` (not the beat store, ``BeatStore``).

A sqlite store ``<repo>/mlruns/mlflow.db`` with artifacts under ``<repo>/mlruns/artifacts/``
unless ``MLFLOW_TRACKING_URI`` is set (a sqlite URI keeps its artifacts in an ``artifacts/``
folder beside the database); see docs/contracts.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from filelock import FileLock
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError

#: Seconds the store check waits for a tracking server (MLflow itself retries for minutes).
PROBE_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 120.0
FIX = "set MLFLOW_TRACKING_URI (or tracking_uri=) to sqlite:///<writable folder>/mlflow.db"


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
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise EcgmlError(
                f"MLflow store {uri}: cannot create the folder {database.parent} "
                f"({err.strerror or err}): {FIX}"
            ) from None
        return TrackingStore(uri, database.parent / "artifacts")
    if uri.startswith("file:") or "://" not in uri:
        raise EcgmlError(
            f"MLflow tracking URI {uri} is a plain-folder store, which MLflow 3 rejects: "
            "use sqlite:///…/mlflow.db or an http(s) tracking server"
        )
    return TrackingStore(uri, None)


def check_store(configured_uri: str | None = None, root: Path = PROJECT_ROOT) -> TrackingStore:
    """The resolved store, checked in seconds before any data is loaded (entry points call it).

    A server must answer within :data:`PROBE_TIMEOUT_S`; a sqlite database must be a file in a
    folder ecgml can write, and is created (schema migrated) under the store's lock; its ecgml
    experiments must keep their artifacts in its own folder (not a copied store's original).
    """
    store = resolve_store(configured_uri, root)
    if store.tracking_uri.startswith(("http://", "https://")):
        probe_server(store.tracking_uri)
    elif store.artifact_root is not None:
        probe_sqlite(store)
        ready_store(store)
        check_artifact_locations(store)
    return store


def probe_server(uri: str) -> None:
    """One GET on ``/health`` without retries: any HTTP answer below 500 means it is up."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code < 500:
            return
        reason = f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        reason = str(getattr(err, "reason", None) or err)
    raise EcgmlError(
        f"MLflow tracking server {uri} is not reachable ({reason}): start it "
        f"(mlflow server …) or {FIX}"
    )


def probe_sqlite(store: TrackingStore) -> None:
    """The database is a file (or absent) and its folder accepts new files."""
    uri = store.tracking_uri
    database = Path(uri.removeprefix("sqlite:///"))
    if database.exists() and not database.is_file():
        raise EcgmlError(f"MLflow store {uri}: {database} is not a file: {FIX}")
    try:
        with tempfile.TemporaryFile(dir=database.parent, prefix=".ecgml-probe-"):
            pass
    except OSError as err:
        raise EcgmlError(
            f"MLflow store {uri}: cannot write in {database.parent} ({err.strerror or err}): {FIX}"
        ) from None


def store_lock(store: TrackingStore) -> contextlib.AbstractContextManager[object]:
    """The store's file lock (parallel jobs share one sqlite store); a no-op for servers."""
    if store.lock_file is None:
        return contextlib.nullcontext()
    return FileLock(str(store.lock_file), timeout=LOCK_TIMEOUT_S)


def ready_store(store: TrackingStore) -> None:
    """Create or migrate a sqlite database under the lock: MLflow's first touch of a fresh
    database runs alembic migrations, which two processes must not run at once."""
    with store_lock(store):
        try:
            MlflowClient(store.tracking_uri).search_experiments(max_results=1)
        except Exception as err:  # any failure to open is the user's store (corrupt, locked, …)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EcgmlError(
                f"MLflow store {store.tracking_uri} cannot be opened ({first}): {FIX}"
            ) from None


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
        mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]  # None: back to unset
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
    with store_lock(store):
        client = MlflowClient(store.tracking_uri)  # its first touch may migrate a new database
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return found.experiment_id
        location = (store.artifact_root / name).as_uri() if store.artifact_root else None
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )


#: The command that rewrites a copied store's locations (ecgml.tracking.relocate).
RELOCATE_COMMAND = "python -m ecgml.relocate_store"


@dataclass(frozen=True)
class ForeignLocation:
    """An ecgml experiment whose artifacts live outside the store's folder."""

    experiment_id: str
    name: str
    location: str  # as stored (a file:// URI)
    wanted: str  # the store's own folder for it, as a file:// URI


def local_path(location: str) -> Path | None:
    """The folder a ``file://`` URI or plain path names; None for a remote location."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None


def inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def foreign_locations(store: TrackingStore) -> list[ForeignLocation]:
    """ecgml's experiments (tagged as model training by ecgml) whose local artifact location is
    not under the store's ``artifacts/`` folder; [] for a tracking server."""
    if store.artifact_root is None:
        return []
    client = MlflowClient(store.tracking_uri)
    found = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            continue  # MLflow's Default experiment, or one a user made by hand
        path = local_path(experiment.artifact_location)
        if path is None or inside(path, store.artifact_root):
            continue
        wanted = (store.artifact_root / experiment.name).resolve().as_uri()
        found.append(
            ForeignLocation(
                experiment.experiment_id, experiment.name, experiment.artifact_location, wanted
            )
        )
    return found


def check_artifact_locations(store: TrackingStore) -> None:
    """Refuse, in one line, a local store whose runs would write into another folder."""
    foreign = foreign_locations(store)
    if not foreign:
        return
    first = foreign[0]
    more = f" (and {len(foreign) - 1} more experiments)" if len(foreign) > 1 else ""
    raise EcgmlError(
        f"MLflow store {store.tracking_uri}: experiment {first.name!r} keeps its artifacts in "
        f"{local_path(first.location)}, outside this store's {store.artifact_root}{more} — it "
        f"was copied or moved: run `{RELOCATE_COMMAND}` (tracking_uri= for another store) to "
        "point it at this folder, or use the original store"
    )
