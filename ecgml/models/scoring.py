"""A backbone as a probability model, and rebuilding one from a logged config without code.

:class:`BeatProbabilityModel` turns a backbone's positive-class logit into a probability:
beats ``(n, 1, seq_len)`` → ``(n,)``. A logged model stores its weights (safetensors) and the
backbone's config; :func:`scorer_from_config` rebuilds the architecture from ecgml's own
backbone classes only — a config naming any other class (``_target_``), or carrying Hydra
directives that could call one, is refused, so loading a model can never run foreign code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.models.ensemble import MeanOutputEnsemble, MeanProbabilityEnsemble
from ecgml.models.factory import build_backbone

#: The only classes a logged model may name as its backbone.
TRUSTED_BACKBONES = ("ecgml.models.backbones.", "ecgml.models.record_models.")


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


def _directives(node: Any, path: str = "backbone") -> list[str]:
    """Every Hydra directive key (``_target_``, ``_partial_``, …) below ``node``'s top level."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}"
            if str(key).startswith("_") and str(key).endswith("_"):
                found.append(here)
            found += _directives(value, here)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            found += _directives(value, f"{path}[{i}]")
    return found


def check_trusted_backbone(backbone_cfg: Mapping[str, Any], source: str) -> None:
    """Refuse a backbone config that would instantiate anything but an ecgml backbone."""
    target = str(backbone_cfg.get("_target_", ""))
    if not target.startswith(TRUSTED_BACKBONES):
        raise EcgmlError(
            f"{source}: backbone class {target!r} is not one of ecgml's backbones "
            f"({'*, '.join(TRUSTED_BACKBONES)}*): refusing to build it; re-log the model with "
            "ecgml.train"
        )
    nested = [d for d in _directives(backbone_cfg) if d != "backbone._target_"]
    if nested:
        raise EcgmlError(
            f"{source}: backbone config carries Hydra directives {nested[:3]}: refusing to build "
            "it (a logged model may only name its backbone class); re-log the model"
        )


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
    backbone_cfg: Mapping[str, Any], seq_len: int, ensemble: int = 1, source: str = "model",
    n_outputs: int = 1, regression: bool = False, in_channels: int = 1,
) -> nn.Module:  # fmt: skip
    """An untrained backbone of the logged architecture (``ensemble`` members combined as in
    training: mean probability, or mean value for a regression; ``in_channels`` leads), ready
    for its weights."""
    check_trusted_backbone(backbone_cfg, source)
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
    backbone_cfg: Mapping[str, Any], seq_len: int, ensemble: int = 1, source: str = "model",
    in_channels: int = 1,
) -> BeatProbabilityModel:  # fmt: skip
    """An untrained :class:`BeatProbabilityModel` of the logged architecture (``ensemble``
    members averaged as in training), ready for ``load_state_dict``."""
    return BeatProbabilityModel(
        backbone_from_config(backbone_cfg, seq_len, ensemble, source, in_channels=in_channels)
    ).eval()
