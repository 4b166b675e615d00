"""Inference: log/register trained models in MLflow, turn any ECG input into beats, score them.

``python -m ecgml.promote run_id=…`` (:func:`promote_run`) and ``python -m ecgml.predict
input=PATH`` (:func:`run_predict`) are the command-line faces of this package.
"""

from ecgml.tracking.registry import (
    CHAMPION,
    BeatProbabilityModel,
    LoadedModel,
    load_disorder_model,
    load_models,
    log_trained_model,
    promote_run,
    registered_name,
)

__all__ = [
    "CHAMPION",
    "BeatProbabilityModel",
    "LoadedModel",
    "load_disorder_model",
    "load_models",
    "log_trained_model",
    "promote_run",
    "registered_name",
]
