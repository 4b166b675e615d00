"""What the tasks with named outputs share (multi-label, serum): their evaluation, the logged
model's spec, the run page's line and the console's header."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ecgml.modelfile.spec import ModelSpec
from ecgml.tasks.base import RunTask, ci_text


def outputs_spec(spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any) -> ModelSpec:
    """The spec of a model with named outputs: their names, and per output the threshold and
    calibration its evaluation chose on validation (multi-label), or the training targets'
    standardization and calibrated intervals (regression). ``threshold`` is the binary field:
    unused here."""
    per = getattr(evaluation, "per_output", {})
    intervals = getattr(evaluation, "intervals", None)
    return dataclasses.replace(
        spec,
        threshold=0.5,
        calibration={"method": "none"},
        disorder=str(cfg.task.name),
        task=str(cfg.task.name),
        outputs=[str(o) for o in getattr(model, "outputs", ())],
        thresholds={d: float(e.metrics["test/threshold"]) for d, e in per.items()},
        calibrations={d: e.calibrator.to_dict() for d, e in per.items()},
        target_mean=float(getattr(model, "target_mean", 0.0)),
        target_std=float(getattr(model, "target_std", 1.0)),
        interval=intervals.to_dict() if intervals is not None else {},
    )


class OutputsTask(RunTask):
    """A task whose model has named outputs."""

    #: The test metric the run page's line reports.
    headline_key: str

    def subject(self, cfg: Any) -> str:
        return self.name

    def finish_spec(
        self, spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any
    ) -> ModelSpec:
        return outputs_spec(spec, cfg, model, evaluation)

    def description(self, cfg: Any, metrics: dict[str, Any]) -> str:
        key = self.headline_key
        return (
            f"task {self.name} · model {cfg.model.name} · split {cfg.split.name} · "
            f"{key} {metrics.get(key, float('nan')):.3f}{ci_text(metrics, key)}"
        )

    def summary_header(self, cfg: Any) -> str:
        return f"task={self.name}, model={cfg.model.name}"
