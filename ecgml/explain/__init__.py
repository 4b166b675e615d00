"""Explainability: Captum saliency, temporal localization, group statistics and figures.

``explain_model`` is what a training run calls (``explain.enabled``); ``python -m ecgml.explain
run_id=…`` recomputes it for a finished run.
"""

from ecgml.explain.attribution import METHODS, compute_attributions, randomized_copy
from ecgml.explain.pipeline import as_dict, explain_model

__all__ = ["METHODS", "as_dict", "compute_attributions", "explain_model", "randomized_copy"]
