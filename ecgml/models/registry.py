"""Backbone registry: ``model.name`` → constructor.

Every backbone follows one convention: ``Backbone(in_channels, n_outputs, seq_len, **hparams)``
maps ``(batch, in_channels, seq_len)`` to logits ``(batch, n_outputs)``. ``n_outputs`` is 1 for
the binary task today and 3 for the planned multi-label model; ``in_channels`` > 1 leaves room
for multi-beat or multi-lead inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ecgml.errors import EcgmlError

BackboneFactory = Callable[..., nn.Module]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Class decorator adding a backbone under ``name``."""

    def add(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = factory
        return factory

    return add


def available_backbones() -> list[str]:
    _import_builtin_backbones()
    return sorted(_BACKBONES)


def build_backbone(
    name: str, in_channels: int, n_outputs: int, seq_len: int, **hparams: Any
) -> nn.Module:
    _import_builtin_backbones()
    if name not in _BACKBONES:
        raise EcgmlError(
            f"model {name!r} is not a registered backbone: use one of "
            f"{', '.join(sorted(_BACKBONES))}"
        )
    return _BACKBONES[name](
        in_channels=in_channels, n_outputs=n_outputs, seq_len=seq_len, **hparams
    )


def _import_builtin_backbones() -> None:
    """Import the modules whose decorators fill the registry."""
    from ecgml.models import backbones  # noqa: F401
