"""A fitted recalibration map applied to probabilities: what a logged model stores and
serving applies (fitting it is :mod:`ecgml.evaluation.calibration`'s job). Light on purpose:
numpy and scipy only, so the served model does not import the evaluation's plotting stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import as_probabilities

CALIBRATION_METHODS = ("none", "temperature", "platt", "isotonic")


EPS = 1e-6


def clipped_logit(y_prob: npt.ArrayLike) -> np.ndarray:
    return logit(np.clip(np.asarray(y_prob, dtype=float), EPS, 1.0 - EPS))


@dataclass(frozen=True)
class Calibrator:
    """A fitted recalibration map, serialisable to JSON (stored in the logged model)."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    n_fitted: int = 0
    note: str = ""

    def apply(self, y_prob: npt.ArrayLike) -> np.ndarray:
        p = as_probabilities(y_prob)
        if self.method == "none":
            return p
        if self.method == "temperature":
            return expit(clipped_logit(p) / float(self.params["temperature"]))
        if self.method == "platt":
            return expit(float(self.params["a"]) * clipped_logit(p) + float(self.params["b"]))
        x, y = np.asarray(self.params["x"], float), np.asarray(self.params["y"], float)
        return np.clip(np.interp(p, x, y), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        params = {
            k: (list(map(float, v)) if isinstance(v, list | np.ndarray) else float(v))
            for k, v in self.params.items()
        }
        return {
            "method": self.method,
            "params": params,
            "n_fitted": int(self.n_fitted),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibrator:
        """The calibrator stored by :meth:`to_dict`; ``None`` (an older model) is ``none``."""
        if not data:
            return cls("none")
        method = str(data.get("method", ""))
        if method not in CALIBRATION_METHODS:
            raise EcgmlError(
                f"calibration method {method!r} is not one of {list(CALIBRATION_METHODS)}: "
                "the model's metadata is damaged; re-log the model with ecgml.train"
            )
        return cls(
            method,
            dict(data.get("params", {})),
            int(data.get("n_fitted", 0)),
            str(data.get("note", "")),
        )

    def describe(self) -> str:
        fitted = f"fitted on {self.n_fitted} validation beats"
        if self.method == "temperature":
            return f"temperature scaling (T = {self.params['temperature']:.3g}, {fitted})"
        if self.method == "platt":
            a, b = self.params["a"], self.params["b"]
            return f"Platt scaling (a = {a:.3g}, b = {b:.3g}, {fitted})"
        if self.method == "isotonic":
            return f"isotonic regression ({fitted})"
        return f"none ({self.note})" if self.note else "none (the model's own probabilities)"
