"""What a run learns: the ``task`` config group as a small object (:class:`TaskSpec`), one
class per kind of learning, so that code asking a kind-dependent question calls a method.

* ``binary`` (the default, the study): one disorder vs normal, one sigmoid output (``y``).
* ``multilabel``: one model, one sigmoid output per disorder (``y_<disorder>``), every group's
  patients used, ``normal`` = all outputs 0. Outputs are named, in :data:`ecgml.DISORDERS`
  order, and the names travel with the model so that an output can never silently swap.
* ``potassium`` / ``sodium``: regression of the serum value in mmol/L (``target``); patients
  without a value are left out (count logged).

Every task carries a stratum per patient in ``y`` (the binary label, the label combination, or
the group for regression): the patient-level splits stratify on it and the bootstrap resamples
within it. ``task=pretrain`` is handled by :mod:`ecgml.pipeline.pretrain`, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ecgml import DISORDERS, run_subject
from ecgml.data.labels import LabelSummary, binary_labels, multilabel_labels, regression_targets
from ecgml.data.splits import merge_rare_strata
from ecgml.errors import EcgmlError

#: The normal range (mmol/L) of each serum value and the disorders read off an estimate.
SERUM = {
    "potassium": {
        "column": "potassium",
        "low": 3.5,
        "high": 5.0,
        "disorders": {"hyperkalemia": "high", "hypokalemia": "low"},
    },
    "sodium": {
        "column": "sodium",
        "low": 135.0,
        "high": 145.0,
        "disorders": {"hyponatremia": "low"},
    },
}
#: Fewest patients a label combination (multi-label) or group (regression) keeps as its own
#: stratum of the patient-level split; rarer ones join the largest.
MIN_STRATUM_PATIENTS = 5


@dataclass(frozen=True)
class TaskSpec:
    """One learning task: its name and named outputs; its class is its kind."""

    name: str
    outputs: tuple[str, ...]
    #: ``binary`` | ``multilabel`` | ``regression``: the key of the run's task object.
    kind: ClassVar[str]
    is_binary: ClassVar[bool] = False
    is_regression: ClassVar[bool] = False

    @property
    def target_columns(self) -> tuple[str, ...]:
        """The ``meta`` columns the model is trained on, one per output."""
        raise NotImplementedError

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def experiment(self, disorder: str) -> str:
        """Default MLflow experiment: ``ecgml-<disorder>`` (binary) else ``ecgml-<task>``."""
        return f"ecgml-{self.subject(disorder)}"

    def subject(self, disorder: str) -> str:
        """What the run is about, for run names and titles."""
        return run_subject(self.name, disorder)

    def labels(
        self, meta: pd.DataFrame, disorder_cfg: Any, source: str
    ) -> tuple[pd.DataFrame, LabelSummary]:
        """The task's beats (or records), targets (:attr:`target_columns`) and strata ``y``."""
        raise NotImplementedError

    def class_names(self, disorder_cfg: Any) -> tuple[str, str]:
        """The words for a positive and a negative patient, in the data summary."""
        return ("abnormal", "normal")

    def true_columns(self, meta: pd.DataFrame) -> dict[str, np.ndarray]:
        """The ``y_true…`` columns of ``predictions.csv`` from the rows' targets."""
        return {"y_true": meta[self.target_columns[0]].to_numpy()}


class BinarySpec(TaskSpec):
    """One disorder vs normal (its output is the disorder)."""

    kind = "binary"
    is_binary = True

    @property
    def target_columns(self) -> tuple[str, ...]:
        return ("y",)

    def labels(
        self, meta: pd.DataFrame, disorder_cfg: Any, source: str
    ) -> tuple[pd.DataFrame, LabelSummary]:
        return binary_labels(meta, disorder_cfg.positive, disorder_cfg.negative, source=source)

    def class_names(self, disorder_cfg: Any) -> tuple[str, str]:
        return (str(disorder_cfg.positive), str(disorder_cfg.negative))


class MultilabelSpec(TaskSpec):
    """One output per disorder, every group's patients."""

    kind = "multilabel"

    @property
    def target_columns(self) -> tuple[str, ...]:
        return tuple(f"y_{d}" for d in self.outputs)

    def labels(
        self, meta: pd.DataFrame, disorder_cfg: Any, source: str
    ) -> tuple[pd.DataFrame, LabelSummary]:
        selected, summary = multilabel_labels(meta, self.outputs, source=source)
        return merge_rare_strata(selected, MIN_STRATUM_PATIENTS), summary

    def true_columns(self, meta: pd.DataFrame) -> dict[str, np.ndarray]:
        return {
            f"y_true_{name}": meta[column].to_numpy()
            for name, column in zip(self.outputs, self.target_columns, strict=True)
        }


class RegressionSpec(TaskSpec):
    """A serum value in mmol/L (patients without one left out)."""

    kind = "regression"
    is_regression = True

    @property
    def target_columns(self) -> tuple[str, ...]:
        return ("target",)

    @property
    def serum(self) -> dict[str, Any]:
        """The serum value's column, normal range and the disorders it reads."""
        return SERUM[self.name]

    def labels(
        self, meta: pd.DataFrame, disorder_cfg: Any, source: str
    ) -> tuple[pd.DataFrame, LabelSummary]:
        serum = self.serum
        selected, summary = regression_targets(
            meta, serum["column"], serum["low"], serum["high"], source=source
        )
        return merge_rare_strata(selected, MIN_STRATUM_PATIENTS), summary


def binary_spec(disorder: str) -> TaskSpec:
    """The study's task: ``disorder`` vs normal."""
    return BinarySpec("binary", (disorder,))


#: Every ``task.name`` and how its spec is built from the run's disorder (``classify`` is the
#: binary task's old name).
KINDS: dict[str, Callable[[str, str], TaskSpec]] = {
    "binary": lambda name, disorder: binary_spec(disorder),
    "classify": lambda name, disorder: binary_spec(disorder),
    "multilabel": lambda name, disorder: MultilabelSpec(name, DISORDERS),
    "potassium": lambda name, disorder: RegressionSpec(name, (name,)),
    "sodium": lambda name, disorder: RegressionSpec(name, (name,)),
}


def task_spec(cfg: Any) -> TaskSpec:
    """The :class:`TaskSpec` of a composed config (``task.name``; ``classify`` = ``binary``)."""
    task = cfg.get("task") if hasattr(cfg, "get") else None
    name = str(task.get("name", "binary")) if task else "binary"
    build = KINDS.get(name)
    if build is None:
        known = ", ".join(n for n in KINDS if n != "classify")
        raise EcgmlError(f"task={name} is unknown: use one of {known} (or pretrain)")
    return build(name, str(cfg.disorder.name))
