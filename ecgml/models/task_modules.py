"""The LightningModules of the tasks beyond the study's binary one (:mod:`ecgml.data.tasks`).

Both reuse :class:`~ecgml.models.BeatClassifier`'s optimizer, scheduler and training loop and
change only the loss, the outputs and the per-epoch metrics:

* :class:`MultiLabelClassifier`: one sigmoid output per named disorder (BCE with a positive
  weight per output); logs ``val/<disorder>/auroc``, ``val/macro_auroc`` and its running best.
  The output names are hyper-parameters, saved in every checkpoint.
* :class:`BeatRegressor`: a serum value in mmol/L. The network predicts the standardized value
  (Huber loss on ``(y − mean) / std`` of the training targets); ``forward`` returns mmol/L.
  Logs ``val/mae`` and its running lowest ``val/mae_best``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MaxMetric, MeanAbsoluteError, MinMetric
from torchmetrics.classification import MultilabelAUROC

from ecgml.models.module import BeatClassifier, OptimizerFactory


class MultiLabelClassifier(BeatClassifier):
    """One logit per disorder in ``outputs`` order: ``forward`` returns ``(batch, k)``."""

    monitor_key = "val/macro_auroc"

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Callable[..., Any] | None = None,
        pos_weight: Sequence[float] | None = None,
        outputs: Sequence[str] = (),
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, None, label_smoothing)
        self.outputs = tuple(str(o) for o in outputs)
        if not self.outputs:
            raise ValueError("a multi-label model needs its output names")
        weight = torch.tensor([float(w) for w in pos_weight]) if pos_weight is not None else None
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
        k = len(self.outputs)
        self.train_auroc = MultilabelAUROC(num_labels=k, average="macro")
        self.val_auroc = MultilabelAUROC(num_labels=k, average="none")
        self.val_auroc_best = MaxMetric()
        self.val_auroc_best.persistent(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        loss, logits = self._step(batch)
        self.train_auroc.update(logits.detach(), batch[1].long())
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, batch_size=len(logits), sync_dist=True
        )
        self.log("train/macro_auroc", self.train_auroc, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        per_output = self.val_auroc.compute()
        if self.trainer.sanity_checking:
            return
        macro = per_output.mean()
        self.val_auroc_best.update(macro)
        for name, value in zip(self.outputs, per_output, strict=True):
            self.log(f"val/{name}/auroc", value, sync_dist=True)
        self.log("val/macro_auroc", macro, prog_bar=True, sync_dist=True)
        self.log(
            "val/macro_auroc_best", self.val_auroc_best.compute(), prog_bar=True, sync_dist=True
        )


class BeatRegressor(BeatClassifier):
    """A serum value (mmol/L) per beat: ``forward`` returns ``(batch,)`` in mmol/L."""

    monitor_key = "val/mae"

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Callable[..., Any] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        huber_delta: float = 1.0,
        outputs: Sequence[str] = (),
    ) -> None:
        super().__init__(backbone, optimizer, scheduler, pos_weight=None)
        self.outputs = tuple(str(o) for o in outputs)
        self.target_mean, self.target_std = float(target_mean), max(float(target_std), 1e-6)
        self.loss_fn = nn.HuberLoss(delta=float(huber_delta))
        self.train_mae = MeanAbsoluteError()
        self.val_mae = MeanAbsoluteError()
        self.val_mae_best = MinMetric()
        self.val_mae_best.persistent(True)

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_mean + self.target_std * self.standardized(x)

    def predict_values(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        z = self.standardized(x)
        loss = self.loss_fn(z, (y - self.target_mean) / self.target_std)
        return loss, self.target_mean + self.target_std * z

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        loss, values = self._step(batch)
        self.train_mae.update(values.detach(), batch[1])
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, batch_size=len(values), sync_dist=True
        )
        self.log("train/mae", self.train_mae, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_mae.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        loss, values = self._step(batch)
        self.val_mae.update(values, batch[1])
        self.log(
            "val/loss", loss, on_step=False, on_epoch=True, batch_size=len(values), sync_dist=True
        )

    def on_validation_epoch_end(self) -> None:
        mae = self.val_mae.compute()
        if self.trainer.sanity_checking:
            return
        self.val_mae_best.update(mae)
        self.log("val/mae", mae, prog_bar=True, sync_dist=True)
        self.log("val/mae_best", self.val_mae_best.compute(), prog_bar=True, sync_dist=True)


class OutputSelector(nn.Module):
    """One output of a multi-output model as a ``(batch,)`` score, for saliency: output
    ``index`` of a multi-label model, or ``sign`` × a regression's estimate (−1: saliency of a
    *low* value, e.g. hypokalemia)."""

    def __init__(self, model: nn.Module, index: int | None = None, sign: float = 1.0) -> None:
        super().__init__()
        self.model, self.index, self.sign = model, index, float(sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return self.sign * (out if self.index is None else out[..., self.index])
