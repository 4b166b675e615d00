"""A backbone as a probability model, and rebuilding one from a logged config without code.

:class:`BeatProbabilityModel` turns a backbone's positive-class logit into a probability:
beats ``(n, 1, seq_len)`` → ``(n,)``. A logged model stores its weights (safetensors) and the
backbone's config; :func:`scorer_from_config` rebuilds the architecture from ecgml's own
backbone classes only: the config passes :func:`ecgml.trust.check_backbone_config` (the exact
class of a backbone or record-model module, no other Hydra directive) before anything is built,
so loading a model can never run foreign code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.models.ensemble import MeanOutputEnsemble, MeanProbabilityEnsemble
from ecgml.models.factory import build_backbone
from ecgml.trust import check_backbone_config


class BeatProbabilityModel(nn.Module):
    """A backbone's positive-class logit turned into a probability: ``(n, 1, L)`` → ``(n,)``.
    ``index`` picks one output of a multi-label backbone (the disorder it names)."""

    def __init__(self, backbone: nn.Module, index: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.index = int(index)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(1)[:, self.index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


class BeatValueModel(nn.Module):
    """A regression backbone's standardized output in its unit (serum mmol/L): ``mean + std ·
    output``, ``(n, 1, L)`` → ``(n,)``."""

    def __init__(self, backbone: nn.Module, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * self.backbone(x).flatten(1)[:, 0]


def backbone_from_config(
    backbone_cfg: Mapping[str, Any],
    seq_len: int,
    ensemble: int = 1,
    source: str = "model",
    n_outputs: int = 1,
    regression: bool = False,
    in_channels: int = 1,
) -> nn.Module:
    """An untrained backbone of the logged architecture (``ensemble`` members combined as in
    training: mean probability, or mean value for a regression; ``in_channels`` leads), ready
    for its weights."""
    check_backbone_config(backbone_cfg, source)
    if int(ensemble) < 1:
        raise EcgmlError(f"{source}: ensemble size {ensemble} must be >= 1; re-log the model")
    model_cfg = {"name": source, "backbone": dict(backbone_cfg)}
    members = [
        build_backbone(model_cfg, int(in_channels), int(n_outputs), int(seq_len))
        for _ in range(int(ensemble))
    ]
    if len(members) == 1:
        return members[0]
    return MeanOutputEnsemble(members) if regression else MeanProbabilityEnsemble(members)


def scorer_from_config(
    backbone_cfg: Mapping[str, Any],
    seq_len: int,
    ensemble: int = 1,
    source: str = "model",
    in_channels: int = 1,
) -> BeatProbabilityModel:
    """An untrained :class:`BeatProbabilityModel` of the logged architecture (``ensemble``
    members averaged as in training), ready for ``load_state_dict``."""
    return BeatProbabilityModel(
        backbone_from_config(backbone_cfg, seq_len, ensemble, source, in_channels=in_channels)
    ).eval()
