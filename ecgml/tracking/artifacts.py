"""A run's artifacts, written and read back: the one module that logs files to a run.

Every command that writes files to a run (training, cross-validation, pretraining, ``evaluate``,
``explain``, ``compare``, a sweep) logs them through :func:`log_files`, :func:`log_folder` and
:func:`write_text_artifact`; every command that reads a finished run (``evaluate``, ``explain``,
``resume=``, ``model.init_from``, ``promote``) finds it and downloads its files through
:func:`fetch_run` and :func:`run_artifact`, so a wrong id or a missing file reads the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecgml.errors import EcgmlError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: What a user does about an unknown run id.
RUN_ID_HINT = (
    "copy the id from the `run_id:` line ecgml.train printed or from the MLflow UI (or set "
    "MLFLOW_TRACKING_URI to the store that holds it)"
)


def fetch_run(client: MlflowClient, run_id: str, tracking_uri: str, what: str = "run_id") -> Run:
    """The MLflow run ``run_id`` (``what`` names the setting that gave it, for the message)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise EcgmlError(
            f"{what}={run_id} is not in the MLflow store {tracking_uri}: {RUN_ID_HINT}"
        ) from None


def run_artifact(client: Any, run_id: str, path: str, into: Path) -> Path | None:
    """The run's artifact ``path`` (a file or a folder) downloaded under ``into``, or None when
    the run has no such artifact."""
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, path, str(into)))
    except (MlflowException, OSError):
        return None


def required_artifact(client: Any, run_id: str, path: str, into: Path, why: str) -> Path:
    """:func:`run_artifact`, or a one-line error saying the run has no ``path`` and ``why``."""
    found = run_artifact(client, run_id, path, into)
    if found is None:
        raise EcgmlError(f"run {run_id} has no artifact {path!r}: {why}")
    return found


def has_artifact(client: Any, run_id: str, path: str) -> bool:
    """Whether the run lists the file ``path`` (no download)."""
    from mlflow.exceptions import MlflowException

    folder = path.rsplit("/", 1)[0] if "/" in path else None
    try:
        return path in {f.path for f in client.list_artifacts(run_id, folder)}
    except (MlflowException, OSError):
        return False


def log_files(
    client: Any, run_id: str, paths: Iterable[Path], under: str | None = None
) -> list[str]:
    """Log each of ``paths`` that is a file (at the run root, or in the folder ``under``);
    returns the names logged. A path that is not there is skipped: callers list every file a
    run may write, and each run writes the ones its task and unit have."""
    logged = []
    for path in paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=under)
            logged.append(Path(path).name)
    return logged


def log_folder(client: Any, run_id: str, folder: Path, under: str | None = None) -> bool:
    """Log a folder's whole content under ``under`` (default: the folder's own name); False
    when there is no such folder."""
    if not folder.is_dir():
        return False
    client.log_artifacts(run_id, str(folder), artifact_path=folder.name if under is None else under)
    return True


def write_text_artifact(client: Any, run_id: str, text: str, name: str) -> None:
    """Log ``text`` as the artifact file ``name``."""
    client.log_text(run_id, text, name)
