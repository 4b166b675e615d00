"""Self-supervised pretraining of a backbone, SimCLR style (``task=pretrain``).

Each batch of beats is augmented twice (:class:`~ecgml.data.augment.BeatAugmenter`, seeded); the
backbone maps both views to ``embedding_dim`` vectors and :func:`nt_xent_loss` pulls the two
views of one beat together and pushes the other beats of the batch away. The backbone's last
layer (its ``n_outputs=embedding_dim`` head) plays SimCLR's projection head: fine-tuning builds
the same backbone with ``n_outputs=1``, so only that layer, whose shape differs, starts afresh.

Logs ``pretrain/train_loss``, ``pretrain/val_loss`` and ``pretrain/val_top1`` (how often a view's
nearest neighbour in the batch is its own other view) once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from ecgml.data.augment import BeatAugmenter, SeededGenerators

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def _similarities(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosine similarities / temperature of the ``2n`` views, self-pairs masked to ``-inf``."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    self_pairs = torch.eye(len(z), dtype=torch.bool, device=z.device)
    return sim.masked_fill(self_pairs, float("-inf"))


def _positives(n: int, device: torch.device) -> torch.Tensor:
    """Row ``i`` of the ``2n`` views has its positive at ``i+n`` (first half) or ``i-n``."""
    index = torch.arange(n, device=device)
    return torch.cat([index + n, index])


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (normalized temperature-scaled cross entropy) of paired views ``(n, d)`` each."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"views must both be (n, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    sim = _similarities(z1, z2, temperature)
    return F.cross_entropy(sim, _positives(len(z1), z1.device))


def positive_top1(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Fraction of the ``2n`` views whose most similar other view is their own pair."""
    sim = _similarities(z1, z2, 1.0)
    return (sim.argmax(dim=1) == _positives(len(z1), z1.device)).float().mean()


class ContrastivePretrainer(L.LightningModule):
    """SimCLR around a backbone built with ``n_outputs=embedding_dim``.

    Training views come from one seeded generator per device; validation views are redrawn from
    the same seed every epoch, so ``pretrain/val_loss`` compares epochs on identical views.
    """

    def __init__(
        self,
        backbone: nn.Module,
        augmenter: BeatAugmenter,
        optimizer: OptimizerFactory,
        temperature: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "augmenter", "optimizer"])
        self.backbone = backbone
        self.augmenter = augmenter
        self.optimizer_factory = optimizer
        self.temperature = float(temperature)
        self.generators = SeededGenerators(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(batch, embedding_dim)`` (not normalized)."""
        return self.backbone(x)

    def _views(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        generator = self.generators.get(x.device, stage)
        z = self(torch.cat([self.augmenter(x, generator), self.augmenter(x, generator)]))
        return z[: len(x)], z[len(x) :]

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        z1, z2 = self._views(batch[0], "train")
        loss = nt_xent_loss(z1, z2, self.temperature)
        self.log("pretrain/train_loss", loss, on_step=False, on_epoch=True, batch_size=len(z1))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.generators.reset("val")

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        z1, z2 = self._views(batch[0], "val")
        loss = nt_xent_loss(z1, z2, self.temperature)
        self.log("pretrain/val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(z1))
        self.log("pretrain/val_top1", positive_top1(z1, z2), on_epoch=True, batch_size=len(z1))

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(params=self.parameters())
