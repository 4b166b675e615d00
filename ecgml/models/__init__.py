"""Backbones (built from ``conf/model`` by the factory) and the LightningModule training them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecgml.models.factory import available_backbones, build_backbone
    from ecgml.models.module import BeatClassifier

#: Where each public name lives: imported on first use, so importing one light submodule
#: (the served model does) does not import every sibling.
_LAZY = {
    "BeatClassifier": "ecgml.models.module",
    "available_backbones": "ecgml.models.factory",
    "build_backbone": "ecgml.models.factory",
}

__all__ = ["BeatClassifier", "available_backbones", "build_backbone"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
