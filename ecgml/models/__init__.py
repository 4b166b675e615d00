"""Backbones (registry) and the Lightning module that trains any of them."""

from ecgml.models.module import BeatClassifier
from ecgml.models.registry import available_backbones, build_backbone, register_backbone

__all__ = ["BeatClassifier", "available_backbones", "build_backbone", "register_backbone"]
