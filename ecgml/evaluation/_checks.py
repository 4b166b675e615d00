"""Input checks shared by the evaluation functions: bad input is an EcgmlError with one line."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import numpy as np
import numpy.typing as npt

from ecgml.errors import EcgmlError


def open_fraction(value: Any) -> float | None:
    """``value`` as a number strictly between 0 and 1 (a prevalence, a coverage), or None when
    it is not one (a non-number, NaN, 0, 1 or beyond)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 < number < 1.0 else None


def as_labels(y_true: npt.ArrayLike, name: str = "y_true") -> np.ndarray:
    """Binary labels as an int8 array; anything but 0/1 is an error."""
    values = np.asarray(y_true)
    if values.ndim != 1:
        raise EcgmlError(f"{name} must be one-dimensional, got shape {values.shape}")
    if values.size and values.dtype.kind not in "biuf":
        raise EcgmlError(f"{name} must hold 0/1 labels, got dtype {values.dtype}")
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        raise EcgmlError(
            f"{name} must hold only 0/1 labels; found {values[bad][0].item()!r} "
            f"({int(bad.sum())} bad values): map groups to 0 (normal) / 1 (disorder)"
        )
    return values.astype(np.int8)


def as_probabilities(y_prob: npt.ArrayLike, name: str = "y_prob") -> np.ndarray:
    """Scores in [0, 1] as a float64 array; NaN/inf or out-of-range values are an error."""
    try:
        values = np.asarray(y_prob, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise EcgmlError(f"{name} must be numeric probabilities: {err}") from None
    if values.ndim != 1:
        raise EcgmlError(f"{name} must be one-dimensional, got shape {values.shape}")
    bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
    if bad.any():
        raise EcgmlError(
            f"{name} must be finite probabilities in [0, 1]; found {values[bad][0].item()!r} "
            f"({int(bad.sum())} bad values): pass sigmoid outputs, not logits"
        )
    return values


def as_ids(ids: npt.ArrayLike, name: str = "patient_ids") -> np.ndarray:
    """Identifiers as a string array (so 7 and "7" are the same patient)."""
    values = np.asarray(ids)
    if values.ndim != 1:
        raise EcgmlError(f"{name} must be one-dimensional, got shape {values.shape}")
    if values.size and values.dtype.kind == "f" and np.isnan(values).any():
        raise EcgmlError(f"{name} contains missing values: every beat needs a patient_id")
    if values.dtype.kind == "O" and any(v is None or v != v for v in values):
        raise EcgmlError(f"{name} contains missing values: every beat needs a patient_id")
    return values.astype(str)


def check_same_length(**arrays: npt.ArrayLike) -> int:
    """The common length of the named arrays, or an error naming the mismatch."""
    lengths = {
        name: len(array) if isinstance(array, Sized) else int(np.size(array))
        for name, array in arrays.items()
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise EcgmlError(f"inputs differ in length ({listed}): pass one value per beat")
    return next(iter(lengths.values()), 0)
