"""The interface every task implements (:class:`RunTask`) and what the tasks share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ecgml.data.tasks import TaskSpec
from ecgml.errors import EcgmlError
from ecgml.evaluation.threshold import ThresholdChoice
from ecgml.modelfile.spec import ModelSpec
from ecgml.models.module import BeatClassifier

#: (output name or None for the model's one output, a ``(batch,)``-scoring view of the model,
#: that output's test rows in the binary ``predictions.csv`` layout)
ExplainView = tuple[str | None, nn.Module, pd.DataFrame]


def with_ci(m: dict[str, float], key: str, pct: bool = False) -> str:
    """``value (95% CI low–high)`` of the metric ``key`` (as a percentage with ``pct``)."""
    scale, unit, digits = (100.0, "%", 1) if pct else (1.0, "", 3)
    low, high = m.get(f"{key}_ci_low", np.nan), m.get(f"{key}_ci_high", np.nan)
    return (
        f"{m.get(key, np.nan) * scale:.{digits}f}{unit} "
        f"(95% CI {low * scale:.{digits}f}–{high * scale:.{digits}f})"
    )


def ci_text(metrics: dict[str, Any], key: str) -> str:
    """`` (95% CI low–high)`` of ``key`` when both bounds were logged, else nothing."""
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f" (95% CI {low:.3f}–{high:.3f})" if low is not None and high is not None else ""


def loss_pos_weight(setting: Any, balanced: float) -> float | None:
    """``training.pos_weight``: ``balanced`` (n_neg/n_pos), ``none``, or a number."""
    if setting in (None, "none", "None"):
        return None
    if setting == "balanced":
        return balanced
    try:
        return float(setting)
    except (TypeError, ValueError):
        raise EcgmlError(
            f"training.pos_weight={setting!r} is not valid: use balanced, none or a number"
        ) from None


def smoothing_setting(cfg: Any) -> float:
    """``training.label_smoothing``, checked: 0 ≤ ε < 1."""
    value = cfg.training.get("label_smoothing", 0.0)  # configs logged before the key existed
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise EcgmlError(
            f"training.label_smoothing={value!r} is not valid: use a number in [0, 1), e.g. 0.1"
        )
    return float(value)


class RunTask(ABC):
    """One learning task, as the run lifecycle, cross-validation and the console see it."""

    #: Whether a run of this task writes ``model_card.md``.
    writes_model_card = False
    #: Whether a scikit-learn model (``model=features_lr``) can learn this task.
    sklearn_fits = False
    #: Whether the loss has class labels to smooth (``training.label_smoothing``).
    smooths_labels = True

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def subject(self, cfg: Any) -> str:
        """What the run is about, for titles."""

    @abstractmethod
    def module(
        self,
        backbone: nn.Module,
        optimizer: Any,
        scheduler: Any,
        pos_weight: float | Sequence[float] | None,
        targets: Sequence[float] | np.ndarray,
        cfg: Any,
    ) -> BeatClassifier:
        """The task's LightningModule (its head and loss) around ``backbone``; ``targets``
        are the training targets a regression standardizes by."""

    @abstractmethod
    def pos_weight(self, setting: Any, data: Any) -> float | list[float] | None:
        """``training.pos_weight`` for this task's loss, from the training data's balance."""

    def label_smoothing(self, cfg: Any) -> float:
        """``training.label_smoothing`` (checked), or 0 where there are no labels to smooth."""
        value = smoothing_setting(cfg)
        return value if self.smooths_labels else 0.0

    def check_table(self, cfg: Any, meta: pd.DataFrame) -> None:
        """Refuse, before the run opens, a split table this task cannot evaluate (one line);
        every table by default."""
        return None

    def title(self, cfg: Any, detail: str = "") -> str:
        """The figures' title: the subject, the model and ``detail`` (e.g. ``records``)."""
        inside = f"{cfg.model.name}, {detail}" if detail else str(cfg.model.name)
        return f"{self.subject(cfg)} ({inside})"

    @abstractmethod
    def evaluate(
        self,
        predictions: pd.DataFrame,
        evaluation_cfg: Any,
        out: Path | None,
        title: str,
        calibration: str | None = None,
    ) -> Any:
        """The evaluation (``metrics``, ``predictions``) of val+test predictions."""

    @abstractmethod
    def metric_keys(self, prevalences: Sequence[float]) -> list[str]:
        """Exactly the end-of-run MLflow keys of this task's runs (docs/contracts.md)."""

    @abstractmethod
    def summary_keys(self) -> tuple[str, ...]:
        """The test metrics summarized over folds (``cv/<metric>_mean``, ``_sd``)."""

    def pooled_tables(
        self, test: pd.DataFrame, metrics: dict[str, float], evaluation_cfg: Any, out: Path
    ) -> list[Path]:
        """Extra tables of a cross-validation's pooled test rows (none by default)."""
        return []

    @abstractmethod
    def finish_spec(
        self, spec: ModelSpec, cfg: Any, model: nn.Module, evaluation: Any
    ) -> ModelSpec:
        """The logged model's spec with this task's outputs, thresholds and calibration."""

    @abstractmethod
    def explain_views(self, model: nn.Module, test: pd.DataFrame) -> list[ExplainView]:
        """What saliency explains: each output's view of the model and its test rows."""

    @abstractmethod
    def description(self, cfg: Any, metrics: dict[str, Any]) -> str:
        """The run page's one line."""

    @abstractmethod
    def summary_lines(
        self,
        cfg: Any,
        metrics: dict[str, float],
        unit_word: str,
        threshold: ThresholdChoice | None = None,
    ) -> list[str]:
        """The console's lines for the run's results (after its header); ``threshold``: the
        evaluation's decision threshold with its interval (a task with one output)."""

    @abstractmethod
    def summary_header(self, cfg: Any) -> str:
        """The console's first line, before the seed and the time."""
