"""Numeric bounds of the settings, checked before anything runs.

Hydra's typed schemas check that a value is a number; they cannot say that
``trainer.max_epochs=-1`` (Lightning: train forever), ``data.batch_size=0`` or
``model.optimizer.lr=nan`` make no sense. :func:`check_bounds` does, for every key of
:data:`BOUNDS` the config has, and refuses them all in one line (exit 2) before a run opens or
any data is read. It runs on the composed config of ``ecgml.train`` and on a stored run config
read back by ``resume=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ecgml.errors import EcgmlError


@dataclass(frozen=True)
class Bound:
    """``low ≤ value ≤ high`` (``<`` where open); ``integer``: a whole number; ``optional``:
    ``null`` allowed (the setting is off)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of bounds (None when it is fine)."""
        if value is None:
            return None if self.optional else f"must be {self.describe()}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {self.describe()}"
        if not math.isfinite(value) or (self.integer and not float(value).is_integer()):
            return f"must be {self.describe()}"
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        too_high = self.high is not None and (
            value >= self.high if self.high_open else value > self.high
        )
        return f"must be {self.describe()}" if too_low or too_high else None

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {self.high:g}")
        text = f"{kind} {' and '.join(parts)}" if parts else kind
        return f"{text} (or null)" if self.optional else text


POSITIVE = Bound(0, low_open=True)
AT_LEAST_ONE = Bound(1, integer=True)
COUNT = Bound(0, integer=True)
FRACTION = Bound(0, 1, low_open=True, high_open=True)

#: Every bounded setting: dotted key → bound. Keys a config does not have are skipped.
BOUNDS: dict[str, Bound] = {
    "seed": COUNT,
    "trainer.max_epochs": AT_LEAST_ONE,
    "trainer.min_epochs": Bound(0, integer=True, optional=True),
    "trainer.accumulate_grad_batches": AT_LEAST_ONE,
    "trainer.gradient_clip_val": Bound(0, optional=True),
    "trainer.log_every_n_steps": AT_LEAST_ONE,
    "model.optimizer.lr": Bound(0, 10, low_open=True),
    "model.optimizer.weight_decay": Bound(0),
    "model.scheduler.T_max": AT_LEAST_ONE,
    "data.batch_size": AT_LEAST_ONE,
    "data.num_workers": COUNT,
    "data.beat_length": Bound(1, integer=True, optional=True),
    "data.max_beat_s": POSITIVE,
    "data.max_beats": AT_LEAST_ONE,
    "data.train_beats": Bound(1, integer=True, optional=True),
    "data.strip_fs": POSITIVE,
    "data.strip_s": POSITIVE,
    "training.ensemble": AT_LEAST_ONE,
    "training.early_stopping_patience": COUNT,
    "evaluation.n_bootstrap": COUNT,
    "evaluation.ci_level": FRACTION,
    "evaluation.interval_level": FRACTION,
    "evaluation.threshold_value": Bound(0, 1),
    "evaluation.target_sensitivity": FRACTION,
    "evaluation.min_subgroup_patients": AT_LEAST_ONE,
    "evaluation.min_threshold_positives": AT_LEAST_ONE,
}

_ABSENT = object()


def _value(cfg: Mapping[str, Any] | DictConfig, key: str) -> Any:
    if isinstance(cfg, DictConfig):
        return OmegaConf.select(cfg, key, default=_ABSENT)
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


#: Settings that are a ``[low, high]`` range, each end within the bound and ``low < high``.
RANGES = {"evaluation.decision_thresholds": Bound(0, 1, low_open=True, high_open=True)}


def range_problem(value: Any, bound: Bound) -> str | None:
    """Why ``value`` is not a ``[low, high]`` range within ``bound`` (None when it is)."""
    ends = list(value) if isinstance(value, list | tuple) or OmegaConf.is_list(value) else None
    if ends is None or len(ends) != 2:
        return f"must be [low, high], each {bound.describe()}"
    why = bound.problem(ends[0]) or bound.problem(ends[1])
    if why:
        return f"must be [low, high], each {bound.describe()}"
    return None if ends[0] < ends[1] else "must be [low, high] with low < high"


def bound_problems(cfg: Mapping[str, Any] | DictConfig) -> list[str]:
    """``key=value must be …`` for every out-of-bounds setting of ``cfg``."""
    problems = []
    for key, bound in BOUNDS.items():
        value = _value(cfg, key)
        if value is _ABSENT:
            continue
        why = bound.problem(value)
        if why:
            problems.append(f"{key}={value} {why}")
    for key, bound in RANGES.items():
        value = _value(cfg, key)
        if value is _ABSENT:
            continue
        why = range_problem(value, bound)
        if why:
            shown = list(value) if OmegaConf.is_list(value) else value
            problems.append(f"{key}={shown} {why}")
    return problems


def check_bounds(cfg: Mapping[str, Any] | DictConfig, source: str = "") -> None:
    """Refuse every out-of-bounds setting in one line (:class:`EcgmlError`, exit 2)."""
    problems = bound_problems(cfg)
    if problems:
        where = f"{source}: " if source else ""
        raise EcgmlError(f"{where}{'; '.join(problems)}: change the setting(s) and rerun")
