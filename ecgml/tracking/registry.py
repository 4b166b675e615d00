"""Log a trained beat model with MLflow's model API, register it, and load it back for scoring.

A logged model is a :class:`BeatProbabilityModel` (the backbone plus a sigmoid: beats
``(n, 1, seq_len)`` float32 → probabilities ``(n,)``) whose MLmodel ``metadata`` carries what
inference needs to prepare beats exactly as training did: ``seq_len``, ``fs``, ``r_index`` (the
sample every R-peak was aligned on; ``None`` when beats were aligned at their start), ``align``,
the ``threshold`` chosen on validation and the disorder. The composed config travels as
``config.yaml`` inside the model.

The model is saved with pickle (``serialization_format="pickle"``), not MLflow's ``pt2`` default:
every backbone saves without tracing, and loading gives a real ``nn.Module`` (Captum saliency
needs its gradients). Loading therefore needs the ``ecgml`` package importable, and, as with any
pickle, only models from a store you trust.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import ecgml
from ecgml.errors import EcgmlError
from ecgml.tracking.store import preserved_tracking_uri, resolve_store

log = logging.getLogger("ecgml.inference")

MODEL_NAME = "model"
CHAMPION = "champion"
SCORE_BATCH = 1024


def registered_name(disorder: str) -> str:
    """The registry name of a disorder's models (``ecgml-<disorder>``)."""
    return f"ecgml-{disorder}"


class BeatProbabilityModel(nn.Module):
    """A backbone's positive-class logit turned into a probability: ``(n, 1, L)`` → ``(n,)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).reshape(len(x), -1)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


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


def model_signature(seq_len: int) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, seq_len), "beats")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,), "probability")]),
    )


def log_trained_model(
    tracking_uri: str,
    run_id: str,
    model: nn.Module,
    seq_len: int,
    fs: float,
    r_index: int | None,
    threshold: float,
    cfg: DictConfig,
    calibration: dict[str, Any] | None = None,
) -> None:
    """Log ``model`` (a ``BeatClassifier`` or a bare backbone) against the existing run ``run_id``.

    ``mlflow.pytorch.log_model(..., run_id=…)`` attaches the logged model to that run without
    opening a fluent run, so the run's status (still RUNNING inside ``train``) is left alone.
    """
    mlflow = import_mlflow()
    backbone = copy.deepcopy(getattr(model, "backbone", model))  # leave the caller's model as is
    scorer = BeatProbabilityModel(backbone).cpu().eval()
    metadata = {
        "ecgml_version": ecgml.__version__,
        "disorder": str(cfg.disorder.name),
        "positive": str(cfg.disorder.positive),
        "negative": str(cfg.disorder.negative),
        "model_name": str(cfg.model.name),
        "seq_len": int(seq_len),
        "fs": float(fs),
        "r_index": None if r_index is None else int(r_index),
        "align": str(cfg.data.align) if r_index is not None else "start",
        # per-beat isoelectric referencing (ecgml.signal.reference_beats) serving must repeat
        "baseline": str(cfg.data.get("baseline", "none")),
        "threshold": float(threshold),
        # the post-hoc recalibration (ecgml.evaluation.calibration.Calibrator.to_dict) that maps
        # the network's probability to the one ``threshold`` applies to
        "calibration": calibration or {"method": "none"},
    }
    with tempfile.TemporaryDirectory(prefix="ecgml-model-") as tmp:
        config_file = Path(tmp) / "config.yaml"
        config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        with tracking_uri_set(tracking_uri), _quiet_downloads(), _pickle_notice_silenced():
            mlflow.pytorch.log_model(
                scorer,
                name=MODEL_NAME,
                run_id=run_id,
                signature=model_signature(seq_len),
                metadata=metadata,
                extra_files=[str(config_file)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                serialization_format="pickle",
            )
    log.info("logged the %s model with run %s", metadata["disorder"], run_id)


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """One disorder's model, ready to score prepared beats ``(n, seq_len)`` in batches."""

    disorder: str
    model: nn.Module  # beats (n, 1, L) -> probabilities (n,)
    seq_len: int
    fs: float
    r_index: int | None
    align: str
    threshold: float
    uri: str
    calibration: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    baseline: str = "none"  # ecgml.signal.reference_beats method the model was trained with
    run_id: str | None = None
    version: str | None = None

    @property
    def pre_r_ms(self) -> float | None:
        """Milliseconds of signal the model sees before the R-peak (``None``: start-aligned)."""
        return None if self.r_index is None else 1000.0 * self.r_index / self.fs

    @property
    def post_r_ms(self) -> float | None:
        return None if self.r_index is None else 1000.0 * (self.seq_len - self.r_index) / self.fs

    def score(self, beats: np.ndarray, batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Probabilities ``(n,)`` for prepared beats ``(n, seq_len)``."""
        beats = np.ascontiguousarray(beats, dtype=np.float32)
        if beats.ndim != 2 or beats.shape[1] != self.seq_len:
            raise ValueError(f"beats must have shape (n, {self.seq_len}), got {beats.shape}")
        out = np.empty(len(beats), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(beats), batch_size):
                chunk = torch.from_numpy(beats[start : start + batch_size]).unsqueeze(1)
                out[start : start + len(chunk)] = self.model(chunk).float().numpy()
        return out


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No per-file progress bar from MLflow while fetching a small model."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


@contextlib.contextmanager
def _pickle_notice_silenced() -> Iterator[None]:
    """MLflow warns on every pickle save; ecgml chose pickle on purpose (module docstring)."""
    logger = logging.getLogger("mlflow.pytorch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_model_uri(uri: str, tracking_uri: str, disorder: str | None = None) -> LoadedModel:
    """Load a logged ecgml model from a model URI (``models:/name@alias``, ``models:/m-…``)."""
    mlflow = import_mlflow()
    from mlflow.models import Model

    with tracking_uri_set(tracking_uri), _quiet_downloads(), tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        meta = Model.load(local).metadata or {}
        if "seq_len" not in meta:
            raise EcgmlError(
                f"model {uri} was not logged by ecgml (no seq_len in its metadata): promote a run "
                "trained with `python -m ecgml.train`"
            )
        module = mlflow.pytorch.load_model(local, map_location="cpu")
    return LoadedModel(
        disorder=str(meta.get("disorder", disorder)),
        model=module.eval(),
        seq_len=int(meta["seq_len"]),
        fs=float(meta["fs"]),
        r_index=None if meta.get("r_index") is None else int(meta["r_index"]),
        align=str(meta.get("align", "r_peak")),
        threshold=float(meta["threshold"]),
        uri=uri,
        calibration=dict(meta.get("calibration") or {"method": "none"}),
        baseline=str(meta.get("baseline", "none")),
    )


def promote_command(disorder: str) -> str:
    return (
        f"`python -m ecgml.train disorder={disorder}` then "
        "`python -m ecgml.promote run_id=<the run_id train printed>`"
    )


def load_disorder_model(
    disorder: str, alias: str = CHAMPION, tracking_uri: str | None = None
) -> LoadedModel:
    """The model registered as ``ecgml-<disorder>`` under ``alias`` (loaded once; score in batches).

    ``alias`` may also be a full model URI (``models:/…``) to use a model that is not promoted.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri_store = resolve_store(tracking_uri).tracking_uri
    if ":/" in alias:
        return load_model_uri(alias, uri_store, disorder)
    import_mlflow()
    name = registered_name(disorder)
    client = MlflowClient(uri_store)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise EcgmlError(
            f"no '{alias}' model for {disorder} in the MLflow store {uri_store}: create one "
            f"with {promote_command(disorder)}"
        ) from None
    loaded = load_model_uri(f"models:/{name}@{alias}", uri_store, disorder)
    loaded.run_id, loaded.version = version.run_id, str(version.version)
    return loaded


def load_models(
    disorders: Sequence[str],
    spec: str | Mapping[str, str] = CHAMPION,
    tracking_uri: str | None = None,
) -> dict[str, LoadedModel]:
    """Load one model per disorder; ``spec`` is an alias for all, or ``{disorder: alias-or-URI}``.

    Every missing model is named in one error before anything is loaded.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri_store = resolve_store(tracking_uri).tracking_uri
    chosen = {
        d: str(spec.get(d, CHAMPION) if isinstance(spec, Mapping) else spec) for d in disorders
    }
    import_mlflow()
    client = MlflowClient(uri_store)
    missing = []
    for disorder, alias in chosen.items():
        if ":/" in alias:
            continue
        try:
            client.get_model_version_by_alias(registered_name(disorder), alias)
        except MlflowException:
            missing.append(disorder)
    if missing:
        alias = chosen[missing[0]]
        raise EcgmlError(
            f"no '{alias}' model for {', '.join(missing)} in the MLflow store {uri_store}: "
            f"create one per disorder with {promote_command(missing[0])}"
        )
    return {d: load_disorder_model(d, alias, uri_store) for d, alias in chosen.items()}


# --------------------------------------------------------------------------- promotion


def run_model_id(client: Any, run_id: str, tracking_uri: str) -> tuple[Any, str]:
    """``(run, model_id)`` of the model logged with ``run_id`` (the latest when several)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise EcgmlError(
            f"run_id={run_id} is not in the MLflow store {tracking_uri}: copy the id from the UI "
            "or the `run_id:` line train printed, or set MLFLOW_TRACKING_URI"
        ) from None
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
        client.update_model_version(name, str(version.version), description=card)
    client.set_registered_model_alias(name, alias, str(version.version))
    return version


def run_model_card(client: Any, run_id: str) -> str | None:
    """The run's ``model_card.md`` text (``None`` for runs logged before model cards)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="ecgml-card-") as tmp:
        try:
            path = client.download_artifacts(run_id, "model_card.md", tmp)
        except (MlflowException, OSError):
            log.warning("run %s has no model_card.md: the model version gets no description",
                        run_id)  # fmt: skip
            return None
        return Path(path).read_text(encoding="utf-8")
