"""Confidence intervals: Wilson score intervals for proportions, percentile intervals for
bootstrap distributions."""

from __future__ import annotations

import logging
import math

import numpy as np
from statsmodels.stats.proportion import proportion_confint

from ecgml.errors import EcgmlError

log = logging.getLogger(__name__)

NAN_INTERVAL = (math.nan, math.nan)


def check_level(level: float) -> float:
    """The confidence level as a float in (0, 1), or an EcgmlError naming the bad value."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise EcgmlError(f"confidence level={level} is not in (0, 1): use e.g. level=0.95")
    return level


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / total``; (NaN, NaN) when ``total == 0``.

    Equal to ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
    """
    level = check_level(level)
    successes, total = int(successes), int(total)
    if total < 0 or not 0 <= successes <= total:
        raise EcgmlError(f"wilson_interval: need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return NAN_INTERVAL
    low, high = proportion_confint(successes, total, alpha=1.0 - level, method="wilson")
    # statsmodels can land a rounding error (~1e-18) on the wrong side of 0/n or n/n
    estimate = successes / total
    return min(float(low), estimate), max(float(high), estimate)


def percentile_interval(
    distribution: np.ndarray, level: float = 0.95, name: str = "statistic"
) -> tuple[float, float]:
    """Percentile interval of a bootstrap distribution, ignoring resamples where the statistic
    is undefined (NaN); (NaN, NaN) when every resample is undefined."""
    level = check_level(level)
    values = np.asarray(distribution, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        log.warning("%s: undefined in every bootstrap resample; CI is NaN", name)
        return NAN_INTERVAL
    if finite.size < values.size:
        log.warning(
            "%s: undefined in %d of %d bootstrap resamples (zero denominators); "
            "CI from the other %d",
            name,
            values.size - finite.size,
            values.size,
            finite.size,
        )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)
