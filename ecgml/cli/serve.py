"""``python -m ecgml.serve``: a promoted model's REST API, guarded (``make serve``).

It serves MLflow's own scoring app (``POST /invocations``, ``GET /ping``; the same requests
and answers as ``mlflow models serve``) behind :class:`~ecgml.modelfile.guard.GuardedScoring`:
a body over ``ECGML_SERVE_MAX_BODY_MB`` or nested too deep is refused before MLflow parses it,
and every 400 answer carries ecgml's one-line reason. The model's spec passes the gate of
:mod:`ecgml.trust` before the model is loaded.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.modelfile.guard import GuardedScoring, max_body_bytes_from_env
from ecgml.modelfile.spec import SPEC_FILE, read_spec
from ecgml.tracking import check_store
from ecgml.tracking.registry import tracking_uri_set

log = logging.getLogger("ecgml.serve")


def build_app(model_uri: str, tracking_uri: str, into: Path) -> GuardedScoring:
    """MLflow's scoring app for ``model_uri`` (downloaded under ``into``), guarded."""
    with warnings.catch_warnings():  # mlflow.pyfunc warns about its own agent types
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
        import mlflow.artifacts
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc import scoring_server

    with tracking_uri_set(tracking_uri):
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(into))
            )
        except (MlflowException, OSError) as err:
            raise EcgmlError(
                f"model {model_uri} cannot be downloaded from {tracking_uri} "
                f"({str(err).splitlines()[0]}): promote a model first (ecgml.promote) or pass "
                "model_uri=…"
            ) from None
    spec = local / "artifacts" / SPEC_FILE
    if not spec.is_file():
        raise EcgmlError(f"model {model_uri} was not logged by ecgml (no {SPEC_FILE}): re-log it")
    read_spec(spec, model_uri)  # its backbone class passes the gate before anything is built
    model = mlflow.pyfunc.load_model(str(local))
    try:
        max_body = max_body_bytes_from_env()
    except ValueError as err:
        raise EcgmlError(str(err)) from None
    return GuardedScoring(scoring_server.init(model), max_body)


def serve(cfg: DictConfig) -> None:
    import uvicorn

    store = check_store(cfg.tracking_uri)
    if not cfg.get("model_uri"):
        raise EcgmlError("model_uri=… is required (e.g. models:/ecgml-hypokalemia@champion)")
    uri = str(cfg.model_uri)
    with tempfile.TemporaryDirectory(prefix="ecgml-serve-") as tmp:
        app: Any = build_app(uri, store.tracking_uri, Path(tmp))
        print(f"ecgml serve: {uri} on http://{cfg.host}:{cfg.port}/invocations", flush=True)
        uvicorn.run(app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level))


main = hydra_entry("serve")(serve)
