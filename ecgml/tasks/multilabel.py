"""One model for all three disorders: one sigmoid output per disorder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ecgml.evaluation.tasks import TaskEvaluation, evaluate_task, output_frame
from ecgml.modelfile.spec import ModelSpec
from ecgml.models.module import BeatClassifier
from ecgml.models.task_modules import MultiLabelClassifier, OutputSelector
from ecgml.tasks.base import ExplainView, RunTask, ci_text, loss_pos_weight, with_ci


def outputs_spec(spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any) -> ModelSpec:
    """The spec of a model with named outputs: their names, and per output the threshold and
    calibration its evaluation chose on validation (multi-label), or the training targets'
    standardization (regression). ``threshold`` is the binary field: unused here."""
    per = getattr(evaluation, "per_output", {})
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
    )


class MultilabelTask(RunTask):
    """``task=multilabel``: each disorder's output evaluated as a binary run
    (``test/<disorder>/*``), their macro AUROC, and ``per_disorder/`` tables."""

    def module(
        self,
        backbone: nn.Module,
        optimizer: Any,
        scheduler: Any,
        pos_weight: float | Sequence[float] | None,
        targets: Sequence[float] | np.ndarray,
        cfg: Any,
    ) -> BeatClassifier:
        weights = None if pos_weight is None else [float(w) for w in np.atleast_1d(pos_weight)]
        smoothing = self.label_smoothing(cfg)
        return MultiLabelClassifier(
            backbone, optimizer, scheduler, weights, self.spec.outputs, label_smoothing=smoothing
        )

    def module_class(self) -> type[BeatClassifier]:
        return MultiLabelClassifier

    def pos_weight(self, setting: Any, data: Any) -> list[float] | None:
        """One weight per output (none, when ``training.pos_weight=none``)."""
        weights = [loss_pos_weight(setting, w) for w in data.pos_weights]
        return None if weights[0] is None else [float(w or 0.0) for w in weights]

    def subject(self, cfg: Any) -> str:
        return self.name

    def evaluate(
        self,
        predictions: pd.DataFrame,
        evaluation_cfg: Any,
        out: Path | None,
        title: str,
        calibration: str | None = None,
    ) -> TaskEvaluation:
        return evaluate_task(self.spec, predictions, evaluation_cfg, out, title, calibration)

    def summary_keys(self) -> tuple[str, ...]:
        return ("test/macro_auroc", *(f"test/{d}/auroc" for d in self.spec.outputs))

    def finish_spec(
        self, spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any
    ) -> ModelSpec:
        return outputs_spec(spec, cfg, model, evaluation)

    def explain_views(self, model: nn.Module, test: pd.DataFrame) -> list[ExplainView]:
        return [
            (d, OutputSelector(model, k), output_frame(test, d))
            for k, d in enumerate(self.spec.outputs)
        ]

    def description(self, cfg: Any, metrics: dict[str, Any]) -> str:
        key = "test/macro_auroc"
        return (
            f"task {self.name} · model {cfg.model.name} · split {cfg.split.name} · "
            f"{key} {metrics.get(key, float('nan')):.3f}{ci_text(metrics, key)}"
        )

    def summary_header(self, cfg: Any) -> str:
        return f"task={self.name}, model={cfg.model.name}"

    def summary_lines(self, cfg: Any, metrics: dict[str, float], unit_word: str) -> list[str]:
        lines = [f"  test macro AUROC      {with_ci(metrics, 'test/macro_auroc')}"]
        lines += [
            f"  test {d:<16} {with_ci(metrics, f'test/{d}/auroc')}" for d in self.spec.outputs
        ]
        return lines
