"""One LightningModule for every backbone: logits + BCE, AdamW, torchmetrics per epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn
from torchmetrics import MaxMetric, Metric
from torchmetrics.classification import BinaryAUROC

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class BeatClassifier(L.LightningModule):
    """Binary beat classifier around a registered backbone.

    Logs ``train/loss``, ``train/auroc``, ``val/loss``, ``val/auroc`` and the running best
    ``val/auroc_best`` (the sweep objective) once per epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Callable[..., Any] | None = None,
        pos_weight: float | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "optimizer", "scheduler"])
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must lie in [0, 1)")
        self.label_smoothing = float(label_smoothing)
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        weight = torch.tensor([pos_weight]) if pos_weight else None
        # a task's subclass swaps in its own loss and metrics (multi-label, serum)
        self.loss_fn: nn.Module = nn.BCEWithLogitsLoss(pos_weight=weight)
        self.train_auroc: Metric = BinaryAUROC()
        self.val_auroc: Metric = BinaryAUROC()
        self.val_auroc_best = MaxMetric()
        self.val_auroc_best.persistent(True)  # in checkpoints: a resumed run keeps its best

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch,)``."""
        return self.backbone(x).squeeze(-1)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return self.loss_fn(logits, self.loss_targets(y)), logits

    def loss_targets(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` pulled towards 0.5 by ``label_smoothing`` while training (0 → 0.5ε, 1 → 1 − 0.5ε),
        so that no beat is pushed to an extreme logit; validation keeps the hard labels."""
        if not (self.training and self.label_smoothing):
            return y
        return y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        loss, logits = self._step(batch)
        self.train_auroc.update(logits.detach(), batch[1].long())
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, batch_size=len(logits), sync_dist=True
        )
        self.log("train/auroc", self.train_auroc, on_step=False, on_epoch=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_auroc.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        loss, logits = self._step(batch)
        self.val_auroc.update(logits, batch[1].long())
        self.log(
            "val/loss", loss, on_step=False, on_epoch=True, batch_size=len(logits), sync_dist=True
        )

    def on_validation_epoch_end(self) -> None:
        auroc = self.val_auroc.compute()
        if self.trainer.sanity_checking:
            return
        self.val_auroc_best.update(auroc)
        # DDP: the torchmetrics compute() above already gathered every rank's samples, so all
        # ranks hold the same value (sync_dist only keeps Lightning from warning)
        self.log("val/auroc", auroc, prog_bar=True, sync_dist=True)
        self.log("val/auroc_best", self.val_auroc_best.compute(), prog_bar=True, sync_dist=True)

    #: Per-epoch key that drives the LR scheduler (subclasses of other tasks change it).
    monitor_key = "val/auroc"

    def predict_values(self, x: torch.Tensor) -> torch.Tensor:
        """What ``predictions.csv`` holds for ``x``: probabilities here; a value for regression."""
        return torch.sigmoid(self(x))

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return self.predict_values(batch[0])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor_key},
        }
