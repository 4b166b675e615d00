"""Logging a trained model: its spec from the run's config, its scorer, the MLflow model.

The format itself (files, spec, reading, scoring, the served pyfunc) is :mod:`ecgml.modelfile`;
its names are re-exported here because every model logged before that package existed carries
an entry file that runs ``from ecgml.pipeline.beat_model import EcgmlBeatModel``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

import ecgml
from ecgml.modelfile.files import (
    load_scorer,
    read_model_dir,
    read_model_files,
    single_disorder,
    write_model_files,
)
from ecgml.modelfile.loaded import LoadedModel
from ecgml.modelfile.serving import (
    ENTRY_FILE,
    BadRequest,
    EcgmlBeatModel,
    answered,
    as_frame,
    parse_request,
    predict_frame,
    predict_outputs,
    request_example,
    serving_signature,
)
from ecgml.modelfile.spec import (
    FORMAT,
    FORMAT_VERSION,
    INPUT_COLUMNS,
    MAX_BEAT_SECONDS,
    SERUM_OUTPUTS,
    SPEC_FILE,
    UNITS,
    WEIGHTS_FILE,
    ModelSpec,
    is_beat_model_dir,
    read_spec,
)
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.schemas import plain_dict
from ecgml.tracking.registry import log_python_model

__all__ = [
    "ENTRY_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "INPUT_COLUMNS",
    "MAX_BEAT_SECONDS",
    "SERUM_OUTPUTS",
    "SPEC_FILE",
    "UNITS",
    "WEIGHTS_FILE",
    "BadRequest",
    "EcgmlBeatModel",
    "LoadedModel",
    "ModelSpec",
    "answered",
    "as_frame",
    "is_beat_model_dir",
    "load_scorer",
    "log_beat_model",
    "model_spec",
    "n_ensemble_members",
    "parse_request",
    "predict_frame",
    "predict_outputs",
    "read_model_dir",
    "read_model_files",
    "read_spec",
    "request_example",
    "scorer_of",
    "serving_signature",
    "single_disorder",
    "write_model_files",
]


def model_spec(
    cfg: DictConfig,
    seq_len: int,
    fs: float,
    r_index: int | None,
    threshold: float,
    calibration: Mapping[str, Any] | None = None,
    ensemble: int = 1,
) -> ModelSpec:
    """The spec of a model trained with the composed ``cfg``."""
    backbone = plain_dict(cfg.model.backbone)
    return ModelSpec(
        disorder=str(cfg.disorder.name),
        negative=str(cfg.disorder.negative),
        model_name=str(cfg.model.name),
        backbone=backbone,
        seq_len=int(seq_len),
        fs=float(fs),
        r_index=None if r_index is None else int(r_index),
        align=str(cfg.data.align) if r_index is not None else "start",
        baseline=str(cfg.data.get("baseline", "none")),
        threshold=float(threshold),
        calibration=dict(calibration or {"method": "none"}),
        ensemble=int(ensemble),
    )


def scorer_of(model: nn.Module, spec: ModelSpec | None = None) -> nn.Module:
    """The scorer whose tensors a trained model (a ``BeatClassifier``, an ensemble or a bare
    backbone) is saved as, on CPU: its probabilities (every output), or for a serum regression
    (``spec``) the value in mmol/L."""
    backbone = getattr(model, "backbone", model)
    scorer = (
        spec.kind.around(backbone, spec) if spec is not None else BeatProbabilityModel(backbone)
    )
    return scorer.cpu().eval()


def n_ensemble_members(model: nn.Module) -> int:
    members = getattr(getattr(model, "backbone", model), "members", None)
    return len(members) if members is not None else 1


def log_beat_model(tracking_uri: str, run_id: str, model: nn.Module, spec: ModelSpec) -> str:
    """Log ``model`` (a ``BeatClassifier``, an ensemble or a bare backbone) with ``spec`` as the
    run's MLflow model; returns the logged model's id."""
    with tempfile.TemporaryDirectory(prefix="ecgml-model-") as tmp:
        scorer = scorer_of(model, spec)
        artifacts = write_model_files(scorer, spec, Path(tmp))
        signature = serving_signature(
            spec.disorder, spec.outputs, spec.is_regression, spec.leads, bool(spec.interval)
        )
        return log_python_model(
            tracking_uri,
            run_id,
            ENTRY_FILE,
            artifacts,
            signature,
            spec.to_dict(),
            pip_requirements=[
                f"ecgml=={ecgml.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
            ],
            input_example=request_example(spec),
        )
