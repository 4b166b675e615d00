"""The MLflow side of trained models: log one against its run, register it, find it again.

A logged ecgml model is an MLflow pyfunc "models from code" model (its files are written by
:mod:`ecgml.modelfile`: safetensors weights, a JSON spec, the entry file).
:func:`log_python_model` attaches it to the training run, in that run's experiment (so its
artifacts go under the store's artifact root, never into a stray ``./mlruns/0``), without
touching the run's status. :func:`promote_run` registers it as ``ecgml-<disorder>`` and points
an alias at it; :func:`resolve_model_uri` turns an alias back into a model URI and version.
Reading and scoring a logged model is :mod:`ecgml.modelfile`'s job (no pickle on any path).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecgml.errors import EcgmlError
from ecgml.tracking.artifacts import fetch_run, run_artifact
from ecgml.tracking.store import preserved_tracking_uri, resolve_store
from ecgml.trust import check_backbone_config

log = logging.getLogger("ecgml.inference")

MODEL_NAME = "model"
CHAMPION = "champion"


def registered_name(disorder: str) -> str:
    """The registry name of a disorder's models (``ecgml-<disorder>``)."""
    return f"ecgml-{disorder}"


def import_mlflow() -> Any:
    """``mlflow`` with its model flavours imported.

    ``mlflow.pyfunc`` warns at import ("Any type hint is inferred as AnyType") about its own
    agent types; that says nothing about our models, so it is silenced here, once.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        import mlflow
        import mlflow.pyfunc
        import mlflow.pytorch
    return mlflow


@contextlib.contextmanager
def tracking_uri_set(uri: str) -> Iterator[None]:
    """Point MLflow's module-level API at ``uri`` for a block, then restore exactly what was."""

    with preserved_tracking_uri():
        import_mlflow().set_tracking_uri(uri)
        yield


@contextlib.contextmanager
def _env_set(key: str, value: str) -> Iterator[None]:
    """Set the environment variable ``key`` for a block, then restore exactly what was."""
    previous = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _experiment_of_run(client: Any, run_id: str) -> contextlib.AbstractContextManager[None]:
    """MLflow files a logged model under the *active* experiment (the store's Default one, with
    artifacts in ``./mlruns/0`` under the current directory, when none is set): point it at the
    run's own experiment for the block."""
    return _env_set("MLFLOW_EXPERIMENT_ID", client.get_run(run_id).info.experiment_id)


def log_python_model(
    tracking_uri: str,
    run_id: str,
    code_path: Path,
    artifacts: Mapping[str, str],
    signature: Any,
    metadata: Mapping[str, Any],
    pip_requirements: Sequence[str],
    input_example: Any = None,
) -> str:
    """Log a pyfunc "models from code" model (``code_path``) with ``artifacts`` against the
    existing run ``run_id``; returns the logged model's id. The run's status is left alone."""
    mlflow = import_mlflow()
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with tracking_uri_set(tracking_uri), _quiet_downloads(), _experiment_of_run(client, run_id):
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(code_path),
            artifacts=dict(artifacts),
            signature=signature,
            input_example=input_example,
            metadata=dict(metadata),
            pip_requirements=list(pip_requirements),
        )
    log.info("logged the %s model with run %s", metadata.get("disorder", "?"), run_id)
    return str(info.model_id)


# --------------------------------------------------------------------------- loading


def _quiet_downloads() -> contextlib.AbstractContextManager[None]:
    """No per-file progress bar from MLflow while fetching a small model."""
    return _env_set("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@contextlib.contextmanager
def downloaded_model(uri: str, tracking_uri: str) -> Iterator[tuple[Path, dict[str, Any], dict]]:
    """``(local folder, MLmodel metadata, MLmodel flavors)`` of a model URI, for a block.

    Reading the ``MLmodel`` file is YAML (safe-loaded by MLflow): nothing in the model runs.
    """
    mlflow = import_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tracking_uri_set(tracking_uri), _quiet_downloads(), tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (MlflowException, OSError) as err:
            raise EcgmlError(
                f"model {uri} cannot be downloaded from {tracking_uri} "
                f"({str(err).splitlines()[0]}): check the URI or the alias"
            ) from None
        try:
            info = Model.load(local)
        except (MlflowException, OSError, ValueError, yaml.YAMLError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise EcgmlError(
                f"model {uri}: its MLmodel file is not a plain MLflow model description "
                f"({first[:120]}): re-log the model with ecgml.train"
            ) from None
        yield local, dict(info.metadata or {}), dict(info.flavors or {})


#: Where a logged ecgml model keeps its spec (``ecgml.pipeline.beat_model.SPEC_FILE``).
SPEC_PATH = Path("artifacts") / "ecgml_model.json"


def check_logged_model(uri: str, tracking_uri: str) -> None:
    """Refuse a logged model whose spec names a class the gate refuses (nothing is built): what
    ``promote`` checks before it points an alias at a model others will load or serve."""
    with downloaded_model(uri, tracking_uri) as (local, meta, _):
        spec_file = local / SPEC_PATH
        if spec_file.is_file():
            try:
                spec = json.loads(spec_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise EcgmlError(f"model {uri}: its spec is not readable JSON; re-log it") from None
            backbone = spec.get("backbone") if isinstance(spec, dict) else None
        else:
            backbone = meta.get("backbone")
        if backbone is not None:
            check_backbone_config(backbone, f"model {uri}")


def promote_command(disorder: str) -> str:
    return (
        f"`python -m ecgml.train disorder={disorder}` then "
        "`python -m ecgml.promote run_id=<the run_id train printed>`"
    )


@dataclass(frozen=True)
class ModelRef:
    """Where a disorder's model is: its URI, and the registry version behind an alias."""

    disorder: str
    uri: str
    version: str | None = None
    run_id: str | None = None


def resolve_model_refs(
    disorders: Sequence[str],
    spec: str | Mapping[str, str] = CHAMPION,
    tracking_uri: str | None = None,
) -> tuple[str, list[ModelRef]]:
    """``(store URI, one ModelRef per disorder)``; ``spec`` is an alias for all, or
    ``{disorder: alias-or-URI}``. Every missing alias is named in one error."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri_store = resolve_store(tracking_uri).tracking_uri
    chosen = {
        d: str(spec.get(d, CHAMPION) if isinstance(spec, Mapping) else spec) for d in disorders
    }
    import_mlflow()
    client = MlflowClient(uri_store)
    refs, missing = [], []
    for disorder, alias in chosen.items():
        if ":/" in alias:
            refs.append(ModelRef(disorder, alias))
            continue
        name = registered_name(disorder)
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException:
            missing.append(disorder)
            continue
        refs.append(
            ModelRef(disorder, f"models:/{name}@{alias}", str(version.version), version.run_id)
        )
    if missing:
        alias = chosen[missing[0]]
        raise EcgmlError(
            f"no '{alias}' model for {', '.join(missing)} in the MLflow store {uri_store}: "
            f"create one per disorder with {promote_command(missing[0])}"
        )
    return uri_store, refs


# --------------------------------------------------------------------------- promotion


def run_model_id(client: Any, run_id: str, tracking_uri: str) -> tuple[Any, str]:
    """``(run, model_id)`` of the model logged with ``run_id`` (the latest when several)."""
    run = fetch_run(client, run_id, tracking_uri)
    outputs = run.outputs.model_outputs if run.outputs else []
    models = [client.get_logged_model(o.model_id) for o in outputs]
    models = [m for m in models if m.name == MODEL_NAME]
    if not models:
        raise EcgmlError(
            f"run {run_id} has no logged model: retrain with training.log_model=true "
            "(the default) and promote that run"
        )
    return run, max(models, key=lambda m: m.creation_timestamp).model_id


def promote_run(run_id: str, alias: str = CHAMPION, tracking_uri: str | None = None) -> Any:
    """Register the run's model as ``ecgml-<disorder>`` (once) and point ``alias`` at it."""
    import_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri_store = resolve_store(tracking_uri).tracking_uri
    client = MlflowClient(uri_store)
    run, model_id = run_model_id(client, run_id, uri_store)
    check_logged_model(f"models:/{model_id}", uri_store)  # a tampered model is never promoted
    disorder = run.data.tags.get("disorder") or run.data.params.get("disorder.name")
    if not disorder:
        raise EcgmlError(f"run {run_id} has no 'disorder' tag: it was not logged by ecgml.train")
    name = registered_name(disorder)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"ecgml {disorder} vs normal beat models")
    source = f"models:/{model_id}"
    versions = client.search_model_versions(f"name='{name}'")
    existing = [v for v in versions if v.source == source]
    with tracking_uri_set(uri_store):
        version = (
            existing[0]
            if existing
            else client.create_model_version(name, source=source, run_id=run_id, model_id=model_id)
        )
    card = run_model_card(client, run_id)
    if card:
        description = version_description(card, run_id)
        client.update_model_version(name, str(version.version), description=description)
    client.set_registered_model_alias(name, alias, str(version.version))
    return version


#: MLflow's model_versions.description is VARCHAR(5000) on PostgreSQL/MySQL (sqlite ignores it).
MAX_DESCRIPTION = 5000


def version_description(card: str, run_id: str, limit: int = MAX_DESCRIPTION) -> str:
    """The model card as a version description, cut at a section boundary to fit ``limit``
    characters, with a pointer to the whole card (the run's ``model_card.md``)."""
    if len(card) <= limit:
        return card
    tail = f"\n\n… the whole model card is the artifact `model_card.md` of run `{run_id}`.\n"
    head = card[: limit - len(tail)]
    cut = head.rfind("\n## ")
    return (head[:cut] if cut > 0 else head) + tail


def run_model_card(client: Any, run_id: str) -> str | None:
    """The run's ``model_card.md`` text (``None`` for runs logged before model cards)."""
    with tempfile.TemporaryDirectory(prefix="ecgml-card-") as tmp:
        path = run_artifact(client, run_id, "model_card.md", Path(tmp))
        if path is None:
            log.warning(
                "run %s has no model_card.md: the model version gets no description", run_id
            )
            return None
        return Path(path).read_text(encoding="utf-8")
