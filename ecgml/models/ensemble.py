"""An ensemble of backbones that behaves like one backbone: its probability is the members' mean.

``forward`` returns the logit of the mean member probability, so ``sigmoid(forward(x))`` equals
the mean of the members' probabilities exactly, and everything downstream of a backbone (the
LightningModule, saliency, the logged MLflow model) works unchanged on an ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Probabilities are clamped this far from 0 and 1 before the logit (finite logits).
_EPS = 1e-7


class MeanOutputEnsemble(nn.Module):
    """Members' raw outputs averaged (regression: the mean estimate)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.seq_len = getattr(members[0], "seq_len", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


class MeanProbabilityEnsemble(MeanOutputEnsemble):
    """Members' sigmoid outputs averaged; returned as a logit of shape ``(batch, n_outputs)``."""

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_members, batch, n_outputs)`` probabilities."""
        return torch.stack([torch.sigmoid(member(x)) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.member_probabilities(x).mean(dim=0).clamp(_EPS, 1 - _EPS)
        return torch.logit(mean)
