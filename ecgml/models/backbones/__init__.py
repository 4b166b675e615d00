"""Built-in backbones; importing this package registers them."""

from ecgml.models.backbones import cnn1d, inception1d, resnet1d, transformer1d

__all__ = ["cnn1d", "inception1d", "resnet1d", "transformer1d"]
