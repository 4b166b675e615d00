"""Backbones (built from ``conf/model`` by the factory) and the LightningModule training them."""

from ecgml.models.factory import available_backbones, build_backbone
from ecgml.models.module import BeatClassifier

__all__ = ["BeatClassifier", "available_backbones", "build_backbone"]
