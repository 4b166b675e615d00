"""Calibrated intervals and severity probabilities for a serum estimate.

A conformal predictive system (crepes' ``ConformalPredictiveSystem``) turns the validation
patients' residuals (measured − estimated, one per patient: the patient-level estimate is what a
clinician reads) into a predictive distribution around any new estimate: its central
``level`` interval ("K 6.1 mmol/L, 90 % interval 5.4–6.9") and the probability of a severity
grade (``P(K ≥ 6.0)``), both from the same distribution. crepes over MAPIE: MAPIE wraps a
scikit-learn estimator and answers intervals only, where crepes needs nothing but the residuals
— so the logged model stores them as plain numbers and rebuilds the system at load, nothing
pickled — and gives the whole distribution, hence the severity probabilities.

The interval holds its coverage over patients exchangeable with the calibration patients; a beat's
interval uses the same residuals (its coverage is reported, not promised).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgml.errors import EcgmlError
from ecgml.evaluation._checks import open_fraction

METHOD = "crepes.ConformalPredictiveSystem"
DEFAULT_LEVEL = 0.9

#: Severity grades per serum value: (column, direction, cut in mmol/L). ``ge``: P(value ≥ cut);
#: ``lt``: P(value < cut). Potassium follows the Pocket-K / Harmon (2024) grades.
SEVERITY: dict[str, tuple[tuple[str, str, float], ...]] = {
    "potassium": (("p_ge_6.0", "ge", 6.0), ("p_ge_6.5", "ge", 6.5), ("p_lt_3.0", "lt", 3.0)),
    "sodium": (("p_lt_125", "lt", 125.0),),
}
#: Measured-value bands whose patient-level coverage is reported: (name, low, high), low ≤ v < high.
BANDS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "potassium": (
        ("lt3.0", -math.inf, 3.0),
        ("3.0-3.5", 3.0, 3.5),
        ("3.5-5.0", 3.5, 5.0),
        ("5.0-6.0", 5.0, 6.0),
        ("ge6.0", 6.0, math.inf),
    ),
    "sodium": (("lt125", -math.inf, 125.0), ("125-135", 125.0, 135.0), ("135-145", 135.0, 145.0)),
}
#: A band's coverage counts only with this many test patients (else: too small).
MIN_BAND_PATIENTS = 30
#: The severity AUROC key's serum prefix.
SHORT = {"potassium": "k", "sodium": "na"}


def check_level(level: Any) -> float:
    """``evaluation.interval_level`` as a number in (0, 1) (one line otherwise)."""
    value = open_fraction(level)
    if value is None:
        raise EcgmlError(
            f"evaluation.interval_level={level!r} must be a coverage in (0, 1), e.g. 0.9"
        )
    return value


def min_calibration_patients(level: float) -> int:
    """Fewest calibration residuals that give a finite two-sided ``level`` interval: the upper
    conformal quantile ``ceil((n + 1)(1 + level) / 2)`` must be one of the n residuals."""
    n = 1
    while math.ceil((n + 1) * (1 + level) / 2 - 1e-9) > n:
        n += 1
    return n


def severity_columns(serum: str) -> list[str]:
    return [name for name, _, _ in SEVERITY.get(serum, ())]


def severity_auroc_key(serum: str, column: str) -> str:
    """``p_ge_6.0`` of potassium → ``auroc_k_ge_6.0``."""
    return f"auroc_{SHORT[serum]}_{column.removeprefix('p_')}"


@dataclass
class SerumIntervals:
    """A fitted conformal predictive system for one serum value (``potassium`` / ``sodium``)."""

    serum: str
    level: float
    residuals: np.ndarray
    _system: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def calibrate(
        cls, serum: str, y_true: np.ndarray, y_pred: np.ndarray, level: float, where: str
    ) -> SerumIntervals:
        """Fit on one residual per calibration patient; fewer than the level needs is one line
        naming ``where`` and the minimum."""
        residuals = np.asarray(y_true, float) - np.asarray(y_pred, float)
        residuals = residuals[np.isfinite(residuals)]
        needed = min_calibration_patients(level)
        if residuals.size < needed:
            raise EcgmlError(
                f"{where}: {residuals.size} calibration patients with a serum value, but a "
                f"{level:.0%} interval needs at least {needed}: lower evaluation.interval_level "
                "or give the validation split more patients"
            )
        return cls(serum, float(level), np.sort(residuals))

    @property
    def system(self) -> Any:
        if self._system is None:
            from crepes import ConformalPredictiveSystem

            self._system = ConformalPredictiveSystem().fit(self.residuals)
        return self._system

    def interval(self, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` interval ``(low, high)`` around each estimate (mmol/L)."""
        y_hat = np.asarray(estimate, float).reshape(-1)
        if y_hat.size == 0:
            return np.zeros(0), np.zeros(0)
        tail = 100.0 * (1.0 - self.level) / 2.0
        bounds = self.system.predict(
            y_hat, lower_percentiles=[tail], higher_percentiles=[100.0 - tail]
        )
        bounds = np.asarray(bounds, float).reshape(y_hat.size, 2)
        return bounds[:, 0], bounds[:, 1]

    def cdf(self, estimate: np.ndarray, value: float) -> np.ndarray:
        """The predictive distribution's mass at or below ``value`` for each estimate."""
        y_hat = np.asarray(estimate, float).reshape(-1)
        if y_hat.size == 0:
            return np.zeros(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # crepes warns on small samples: checked above
            p = self.system.predict(y_hat, y=float(value), smoothing=False)
        return np.clip(np.asarray(p, float).reshape(-1), 0.0, 1.0)

    def probabilities(self, estimate: np.ndarray) -> dict[str, np.ndarray]:
        """Each severity grade's probability (:data:`SEVERITY`) per estimate."""
        out = {}
        for column, direction, cut in SEVERITY.get(self.serum, ()):
            below = self.cdf(estimate, cut)
            out[column] = below if direction == "lt" else 1.0 - below
        return out

    def columns(self, estimate: np.ndarray) -> dict[str, np.ndarray]:
        """``y_low``, ``y_high`` and the severity probabilities of each estimate."""
        low, high = self.interval(estimate)
        return {"y_low": low, "y_high": high, **self.probabilities(estimate)}

    def to_dict(self) -> dict[str, Any]:
        """``ecgml_model.json``'s ``interval``: numbers only."""
        return {
            "method": METHOD,
            "serum": self.serum,
            "level": self.level,
            "calibration": "validation patients, measured - estimated (patient mean)",
            "residuals": [float(r) for r in self.residuals],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> SerumIntervals:
        """Rebuild from :meth:`to_dict`; anything else is one line."""
        try:
            if data.get("method") != METHOD:
                raise ValueError(f"method {data.get('method')!r}")
            residuals = np.asarray([float(r) for r in data["residuals"]], float)
            level = check_level(data["level"])
            serum = str(data["serum"])
            if serum not in SEVERITY or not np.isfinite(residuals).all():
                raise ValueError("serum or residuals")
            if residuals.size < min_calibration_patients(level):
                raise ValueError(f"{residuals.size} residuals for level {level}")
        except (KeyError, TypeError, ValueError, EcgmlError) as err:
            raise EcgmlError(
                f"{source}: the model's serum interval is damaged ({err}); re-log the model with "
                "ecgml.train"
            ) from None
        return cls(serum, level, np.sort(residuals))


def coverage(y_true: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """The share of values inside their interval and the mean interval width."""
    y = np.asarray(y_true, float)
    if y.size == 0:
        return math.nan, math.nan
    inside = (y >= low) & (y <= high)
    return float(inside.mean()), float(np.mean(high - low))


def band_coverage(
    serum: str, y_true: np.ndarray, low: np.ndarray, high: np.ndarray
) -> dict[str, tuple[float, int]]:
    """Per measured-value band: its coverage (NaN below :data:`MIN_BAND_PATIENTS`) and count."""
    y = np.asarray(y_true, float)
    out = {}
    for name, lo, hi in BANDS.get(serum, ()):
        rows = (y >= lo) & (y < hi)
        n = int(rows.sum())
        value = coverage(y[rows], low[rows], high[rows])[0] if n >= MIN_BAND_PATIENTS else math.nan
        out[name] = (value, n)
    return out


def band_keys(serum: str) -> Sequence[str]:
    return [f"test_patient/interval_coverage_{name}" for name, _, _ in BANDS.get(serum, ())]
