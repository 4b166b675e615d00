"""One model for all three disorders: one sigmoid output per disorder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ecgml.evaluation.tasks import (
    TaskEvaluation,
    evaluate_multilabel,
    multilabel_metric_keys,
    output_frame,
)
from ecgml.evaluation.threshold import ThresholdChoice
from ecgml.models.module import BeatClassifier
from ecgml.models.task_modules import MultiLabelClassifier, OutputSelector
from ecgml.tasks.base import ExplainView, loss_pos_weight, with_ci
from ecgml.tasks.outputs import OutputsTask


class MultilabelTask(OutputsTask):
    """``task=multilabel``: each disorder's output evaluated as a binary run
    (``test/<disorder>/*``), their macro AUROC, and ``per_disorder/`` tables."""

    headline_key = "test/macro_auroc"

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

    def pos_weight(self, setting: Any, data: Any) -> list[float] | None:
        """One weight per output (none, when ``training.pos_weight=none``)."""
        weights = [loss_pos_weight(setting, w) for w in data.pos_weights]
        return None if weights[0] is None else [float(w or 0.0) for w in weights]

    def evaluate(
        self,
        predictions: pd.DataFrame,
        evaluation_cfg: Any,
        out: Path | None,
        title: str,
        calibration: str | None = None,
    ) -> TaskEvaluation:
        return evaluate_multilabel(
            predictions, evaluation_cfg, self.spec.outputs, out, title, calibration
        )

    def metric_keys(self, prevalences: Sequence[float]) -> list[str]:
        return multilabel_metric_keys(self.spec.outputs, prevalences)

    def summary_keys(self) -> tuple[str, ...]:
        return ("test/macro_auroc", *(f"test/{d}/auroc" for d in self.spec.outputs))

    def explain_views(self, model: nn.Module, test: pd.DataFrame) -> list[ExplainView]:
        return [
            (d, OutputSelector(model, k), output_frame(test, d))
            for k, d in enumerate(self.spec.outputs)
        ]

    def summary_lines(
        self,
        cfg: Any,
        metrics: dict[str, float],
        unit_word: str,
        threshold: ThresholdChoice | None = None,
    ) -> list[str]:
        lines = [f"  test macro AUROC      {with_ci(metrics, 'test/macro_auroc')}"]
        lines += [
            f"  test {d:<16} {with_ci(metrics, f'test/{d}/auroc')}" for d in self.spec.outputs
        ]
        return lines
