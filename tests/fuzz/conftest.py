"""Hypothesis profiles of the fuzz suite, chosen with ``ECGML_FUZZ_PROFILE`` (default ``ci``).

``ci`` (what ``make test`` runs): few examples, derandomized so every CI run tries the same
cases. ``long`` (``make fuzz``): many random examples. The profiles are applied per test (see
:data:`tests.fuzz.harness.FUZZ`), never loaded globally, so the rest of the suite keeps
hypothesis' defaults.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "long",
    max_examples=1500,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_QUIET,
)
