"""Hydra override grammar → Optuna distributions, and sampled values → override strings.

``params`` in ``conf/hparams_search/*.yaml`` (and sweep overrides on the command line) use
Hydra's grammar: ``choice(a, b)`` / ``a,b`` (categorical), ``range(lo, hi, step)`` (stepped,
``hi`` excluded as in Python), ``interval(lo, hi)`` (continuous; Hydra makes its bounds
floats, so use ``range`` for integers), ``tag(log, interval(lo, hi))`` (log scale). A plain
value fixes the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ecgml.errors import EcgmlError

Primitive = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """Swept keys with their distributions, and the fixed overrides every trial gets."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]

    def grid(self) -> dict[str, list[Any]]:
        """The grid sampler's search space (every key must be ``choice`` or ``range``)."""
        grid: dict[str, list[Any]] = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif isinstance(dist, IntDistribution | FloatDistribution) and dist.step:
                n = round((dist.high - dist.low) / dist.step)
                grid[key] = [dist.low + k * dist.step for k in range(n + 1)]
            else:
                raise EcgmlError(
                    f"sampler=grid needs choice(...) or range(...) for every param; "
                    f"{key} is continuous: give it a choice or range"
                )
        return grid


def _element(value: Any) -> Any:
    """A categorical choice: primitives as themselves, lists/dicts as override text."""
    return value if isinstance(value, Primitive) else Override._get_value_element_as_str(value)


def to_distribution(override: Override) -> BaseDistribution:
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep) or override.is_choice_sweep():
        return CategoricalDistribution([_element(v) for v in override.sweep_iterator()])
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise EcgmlError(f"{override.input_line}: the range is empty; check start/stop/step")
        ends = (values[0], values[-1])
        if (
            isinstance(ends[0], int)
            and isinstance(ends[1], int)
            and all(isinstance(v, int) for v in values)
        ):
            return IntDistribution(ends[0], ends[1], step=int(value.step), log=False)
        if not all(isinstance(v, int | float) for v in ends):
            raise EcgmlError(f"{override.input_line}: a range needs numbers")
        return FloatDistribution(float(ends[0]), float(ends[1]), step=float(value.step))  # type: ignore[arg-type]
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        if low is None or high is None:
            raise EcgmlError(f"{override.input_line}: an interval needs both ends")
        return FloatDistribution(float(low), float(high), log=log)
    raise EcgmlError(f"{override.input_line}: not a sweep (use choice, range or interval)")


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """``params`` (key → grammar string) plus command-line ``arguments`` (these win)."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    lines += list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as err:  # hydra's OverrideParseException carries the offending text
        raise EcgmlError(f"hparams_search params do not parse: {err}") from None
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_sweep_override():
            fixed.pop(key, None)
            distributions[key] = to_distribution(override)
        else:
            distributions.pop(key, None)
            fixed[key] = override.input_line or f"{key}={override.value()}"
    return SearchSpace(distributions, list(fixed.values()))


def format_value(value: Any) -> str:
    """One sampled value as the right-hand side of an override."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def trial_overrides(space: SearchSpace, params: Mapping[str, Any]) -> list[str]:
    return [*space.fixed, *(f"{key}={format_value(value)}" for key, value in params.items())]
