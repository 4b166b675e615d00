"""Inference: turn any ECG input into beats and score them with logged models.

``python -m ecgml.predict input=PATH`` (:func:`~ecgml.inference.score.run_predict`) is the
command-line face of this package; :mod:`ecgml.inference.loading` loads models without pickle.
"""

from ecgml.inference.loading import load_disorder_model, load_model_uri, load_models
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.tracking.registry import CHAMPION, promote_run, registered_name

__all__ = [
    "CHAMPION",
    "BeatProbabilityModel",
    "LoadedModel",
    "load_disorder_model",
    "load_model_uri",
    "load_models",
    "promote_run",
    "registered_name",
]
