"""Built-in backbones; importing this package registers them."""

from ecgml.models.backbones import cnn1d

__all__ = ["cnn1d"]
