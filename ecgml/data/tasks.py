"""What a run learns: the ``task`` config group as a small object (:class:`TaskSpec`).

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

from dataclasses import dataclass
from typing import Any

from ecgml import DISORDERS
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
KINDS = {
    "binary": "binary",
    "classify": "binary",
    "multilabel": "multilabel",
    "potassium": "regression",
    "sodium": "regression",
}


@dataclass(frozen=True)
class TaskSpec:
    """One learning task: its kind, its named outputs and where their targets live."""

    name: str
    kind: str  # binary | multilabel | regression
    outputs: tuple[str, ...]

    @property
    def target_columns(self) -> tuple[str, ...]:
        """The ``meta`` columns the model is trained on, one per output."""
        if self.kind == "multilabel":
            return tuple(f"y_{d}" for d in self.outputs)
        return ("target",) if self.kind == "regression" else ("y",)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def is_binary(self) -> bool:
        return self.kind == "binary"

    @property
    def serum(self) -> dict[str, Any]:
        """The serum value's column, normal range and the disorders it reads (regression)."""
        return SERUM[self.name]

    def experiment(self, disorder: str) -> str:
        """Default MLflow experiment: ``ecgml-<disorder>`` (binary) else ``ecgml-<task>``."""
        return f"ecgml-{disorder}" if self.is_binary else f"ecgml-{self.name}"

    def subject(self, disorder: str) -> str:
        """What the run is about, for run names and titles."""
        return disorder if self.is_binary else self.name


def task_spec(cfg: Any) -> TaskSpec:
    """The :class:`TaskSpec` of a composed config (``task.name``; ``classify`` = ``binary``)."""
    task = cfg.get("task") if hasattr(cfg, "get") else None
    name = str(task.get("name", "binary")) if task else "binary"
    kind = KINDS.get(name)
    if kind is None:
        known = ", ".join(n for n in KINDS if n != "classify")
        raise EcgmlError(f"task={name} is unknown: use one of {known} (or pretrain)")
    if kind == "binary":
        return TaskSpec("binary", kind, (str(cfg.disorder.name),))
    if kind == "multilabel":
        return TaskSpec(name, kind, DISORDERS)
    return TaskSpec(name, kind, (name,))
