"""The study's task: one disorder vs normal, one sigmoid output."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ecgml.evaluation import METRICS, Evaluation, evaluate_with_config
from ecgml.evaluation.clinical import MIN_THRESHOLD_POSITIVES
from ecgml.evaluation.predictions import metric_keys, metrics_for_frame
from ecgml.evaluation.subgroups import quiet_metric_warnings
from ecgml.evaluation.threshold import ThresholdChoice
from ecgml.modelfile.spec import ModelSpec
from ecgml.models.module import BeatClassifier
from ecgml.tasks.base import ExplainView, RunTask, ci_text, loss_pos_weight, with_ci

log = logging.getLogger(__name__)

#: The columns a cross-validation's pooled test rows are also reported by.
STRATA = ("center", "device")


def metrics_by_stratum(
    test: pd.DataFrame, column: str, threshold: float, n_bootstrap: int, seed: int, level: float
) -> pd.DataFrame:
    """The eight metrics with CIs for each value of ``column`` (center or device); a metric a
    one-class cell leaves undefined is n/a in the table, told in one line."""
    rows = []
    with quiet_metric_warnings():
        for value, part in test.groupby(column, sort=True):
            metrics = metrics_for_frame(
                part, threshold, None, n_bootstrap, seed, level, context=f"{column}={value}"
            )
            rows.append({column: value, **metrics})
    table = pd.DataFrame(rows)
    undefined = int(table["auroc"].isna().sum()) if "auroc" in table else 0
    if undefined:
        log.info(
            "results by %s: AUROC undefined in %d of %d %ss (one class only): n/a in the table",
            column,
            undefined,
            len(table),
            column,
        )
    return table


def threshold_lines(
    ev: Any, threshold: float, choice: ThresholdChoice | None
) -> tuple[str, list[str]]:
    """The threshold with its interval over validation patient resamples (the evaluation's
    ``choice``), and a caution line when few positive validation patients carry it."""
    if choice is None:
        return f"threshold {threshold:.3f} ({ev.threshold_rule} on validation)", []
    caution = choice.caution(int(ev.get("min_threshold_positives", MIN_THRESHOLD_POSITIVES)))
    return choice.text(), [f"  caution: the threshold was {caution}"] if caution else []


class BinaryTask(RunTask):
    """``task=binary``: ``predictions.csv`` has ``y_true, y_prob, y_pred``; the metrics are the
    study's eight with CIs at beat and patient level; the run writes a model card."""

    writes_model_card = True
    sklearn_fits = True

    def module(
        self,
        backbone: nn.Module,
        optimizer: Any,
        scheduler: Any,
        pos_weight: float | Sequence[float] | None,
        targets: Sequence[float] | np.ndarray,
        cfg: Any,
    ) -> BeatClassifier:
        weight = None if pos_weight is None else float(np.atleast_1d(pos_weight)[0])
        smoothing = self.label_smoothing(cfg)
        return BeatClassifier(backbone, optimizer, scheduler, weight, label_smoothing=smoothing)

    def pos_weight(self, setting: Any, data: Any) -> float | None:
        return loss_pos_weight(setting, data.pos_weight) or 0.0

    def subject(self, cfg: Any) -> str:
        return f"{cfg.disorder.name} vs {cfg.disorder.negative}"

    def evaluate(
        self,
        predictions: pd.DataFrame,
        evaluation_cfg: Any,
        out: Path | None,
        title: str,
        calibration: str | None = None,
    ) -> Evaluation:
        return evaluate_with_config(predictions, evaluation_cfg, out, title, calibration)

    def metric_keys(self, prevalences: Sequence[float]) -> list[str]:
        return metric_keys(tuple(prevalences))

    def summary_keys(self) -> tuple[str, ...]:
        return tuple(f"test/{m}" for m in METRICS)

    def pooled_tables(
        self, test: pd.DataFrame, metrics: dict[str, float], evaluation_cfg: Any, out: Path
    ) -> list[Path]:
        """``results_by_center.csv`` / ``results_by_device.csv`` at the pooled threshold."""
        written = []
        ev = evaluation_cfg
        for column in STRATA:
            if column not in test.columns or test[column].isna().all():
                continue
            table = metrics_by_stratum(
                test, column, metrics["test/threshold"], ev.n_bootstrap, ev.seed, ev.ci_level
            )
            path = out / f"results_by_{column}.csv"
            table.to_csv(path, index=False)
            written.append(path)
        return written

    def finish_spec(
        self, spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any
    ) -> ModelSpec:
        return dataclasses.replace(
            spec,
            threshold=float(evaluation.metrics["test/threshold"]),
            calibration=dict(evaluation.calibrator.to_dict()),
        )

    def explain_views(self, model: nn.Module, test: pd.DataFrame) -> list[ExplainView]:
        return [(None, model, test)]

    def description(self, cfg: Any, metrics: dict[str, Any]) -> str:
        auroc = metrics.get("test/auroc", float("nan"))
        return (
            f"{cfg.disorder.name} vs {cfg.disorder.negative} · task "
            f"{cfg.task.get('name', 'classify')} · model {cfg.model.name} · split "
            f"{cfg.split.name} · test AUROC {auroc:.3f}{ci_text(metrics, 'test/auroc')}"
        )

    def summary_header(self, cfg: Any) -> str:
        return f"{cfg.disorder.positive} vs {cfg.disorder.negative}, model={cfg.model.name}"

    def summary_lines(
        self,
        cfg: Any,
        metrics: dict[str, float],
        unit_word: str,
        threshold: ThresholdChoice | None = None,
    ) -> list[str]:
        m = metrics
        folds = (
            [
                f"  {int(m['cv/n_folds'])} folds, pooled out-of-fold test predictions; "
                f"fold AUROC {m.get('cv/auroc_mean', np.nan):.3f} "
                f"± {m.get('cv/auroc_sd', np.nan):.3f} (mean ± SD)"
            ]
            if "cv/n_folds" in m
            else []
        )
        chosen, caution = threshold_lines(
            cfg.evaluation, m.get("test/threshold", np.nan), threshold
        )
        return [
            f"  test {unit_word} {int(m.get('test/n_beats', 0))} from "
            f"{int(m.get('test/n_patients', 0))} patients, {chosen}",
            *folds,
            f"  test AUROC     {with_ci(m, 'test/auroc')}",
            f"  test accuracy  {with_ci(m, 'test/accuracy', pct=True)}",
            *caution,
        ]
