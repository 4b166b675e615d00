"""Serum potassium or sodium in mmol/L, and the disorders read off the estimate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ecgml.data.tasks import RegressionSpec
from ecgml.errors import EcgmlError
from ecgml.evaluation.serum_intervals import (
    DEFAULT_LEVEL,
    check_level,
    min_calibration_patients,
    severity_auroc_key,
    severity_columns,
)
from ecgml.evaluation.tasks import (
    REGRESSION_METRICS,
    TaskEvaluation,
    evaluate_regression,
    regression_metric_keys,
)
from ecgml.evaluation.threshold import ThresholdChoice
from ecgml.models.module import BeatClassifier
from ecgml.models.task_modules import BeatRegressor, OutputSelector
from ecgml.tasks.base import ExplainView, with_ci
from ecgml.tasks.outputs import OutputsTask


class SerumTask(OutputsTask):
    """``task=potassium`` / ``task=sodium``: MAE, RMSE, r and the AUROC of each disorder read
    off the estimate against the normal range."""

    smooths_labels = False  # a value, not a label
    spec: RegressionSpec

    @property
    def serum(self) -> dict[str, Any]:
        """The serum value's column, normal range and the disorders read off the estimate."""
        return self.spec.serum

    headline_key = "test/mae"

    def module(
        self,
        backbone: nn.Module,
        optimizer: Any,
        scheduler: Any,
        pos_weight: float | Sequence[float] | None,
        targets: Sequence[float] | np.ndarray,
        cfg: Any,
    ) -> BeatClassifier:
        """Huber loss on the value standardized by the training targets' mean and SD."""
        values = np.asarray(targets, dtype=float)
        mean, std = (float(values.mean()), float(values.std())) if values.size else (0.0, 1.0)
        delta = float(cfg.task.get("huber_delta", 1.0))
        return BeatRegressor(backbone, optimizer, scheduler, mean, std, delta, self.spec.outputs)

    def pos_weight(self, setting: Any, data: Any) -> None:
        return None  # no classes to balance

    def check_table(self, cfg: Any, meta: pd.DataFrame) -> None:
        """The validation patients calibrate the intervals: enough of them for the level."""
        level = check_level(cfg.evaluation.get("interval_level", DEFAULT_LEVEL))
        n = int(meta.loc[meta["split"] == "val", "patient_id"].nunique())
        needed = min_calibration_patients(level)
        if n < needed:
            raise EcgmlError(
                f"the validation split has {n} patients with a {self.name} value, but "
                f"evaluation.interval_level={level:g} needs at least {needed} to calibrate the "
                "intervals: lower it, or give the validation split more patients"
            )

    def evaluate(
        self,
        predictions: pd.DataFrame,
        evaluation_cfg: Any,
        out: Path | None,
        title: str,
        calibration: str | None = None,
    ) -> TaskEvaluation:
        return evaluate_regression(predictions, evaluation_cfg, self.serum, out, title)

    def metric_keys(self, prevalences: Sequence[float]) -> list[str]:
        return regression_metric_keys(self.serum)

    def summary_keys(self) -> tuple[str, ...]:
        return tuple(f"test/{m}" for m in REGRESSION_METRICS)

    def explain_views(self, model: nn.Module, test: pd.DataFrame) -> list[ExplainView]:
        """Per disorder read off the estimate, the estimate (negated for a low state) on that
        disorder's and the normal patients' test beats."""
        views: list[ExplainView] = []
        for disorder, direction in self.serum["disorders"].items():
            rows = test[test["group"].isin([disorder, "normal"])].copy()
            rows["y_true"] = (rows["group"] == disorder).astype(int)
            rows = rows.drop(columns=["y_pred"])
            sign = 1.0 if direction == "high" else -1.0
            views.append((disorder, OutputSelector(model, None, sign), rows))
        return views

    def summary_lines(
        self,
        cfg: Any,
        metrics: dict[str, float],
        unit_word: str,
        threshold: ThresholdChoice | None = None,
    ) -> list[str]:
        m = metrics
        lines = [
            f"  test {unit_word} {int(m.get('test/n_beats', 0))} from "
            f"{int(m.get('test/n_patients', 0))} patients",
            f"  test MAE (mmol/L)     {with_ci(m, 'test/mae')}",
            f"  test Pearson r        {with_ci(m, 'test/pearson_r')}",
        ]
        lines += [
            f"  test {d} AUROC {with_ci(m, f'test/{d}_auroc')}" for d in self.serum["disorders"]
        ]
        level = float(cfg.evaluation.get("interval_level", DEFAULT_LEVEL))
        lines.append(
            f"  test {level:.0%} intervals: patients inside "
            f"{m.get('test_patient/interval_coverage', float('nan')):.3f}, mean width "
            f"{m.get('test_patient/interval_width', float('nan')):.3f} mmol/L"
        )
        for column in severity_columns(self.name):
            key = f"test_patient/{severity_auroc_key(self.name, column)}"
            lines.append(f"  test {column} AUROC (patients) {with_ci(m, key)}")
        return lines
