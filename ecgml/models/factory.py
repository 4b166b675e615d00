"""Backbones from config: ``conf/model/<name>.yaml`` names the class in ``backbone._target_``.

Every backbone follows one convention: ``Backbone(in_channels, n_outputs, seq_len, **hparams)``
maps ``(batch, in_channels, seq_len)`` to logits ``(batch, n_outputs)``. ``n_outputs`` is 1 for
the binary task today and 3 for the planned multi-label model; ``in_channels`` > 1 leaves room
for multi-beat or multi-lead inputs. A new backbone is one module in ``models/backbones/`` plus
one ``conf/model/<name>.yaml``; nothing registers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ecgml import CONF_DIR
from ecgml.errors import EcgmlError
from ecgml.schemas import plain_dict
from ecgml.trust import check_backbone_config

MODEL_CONF_DIR = CONF_DIR / "model"


def _model_config(name: str) -> DictConfig:
    path = MODEL_CONF_DIR / f"{name}.yaml"
    if name not in available_backbones():
        raise EcgmlError(
            f"model {name!r} is not a backbone (conf/model/<name>.yaml with backbone._target_): "
            f"use one of {', '.join(available_backbones())}"
        )
    loaded = OmegaConf.load(path)
    assert isinstance(loaded, DictConfig)
    return loaded


def available_backbones() -> list[str]:
    """The ``conf/model/*.yaml`` whose ``backbone`` is a torch module (has ``_target_``)."""
    names = []
    for path in sorted(MODEL_CONF_DIR.glob("*.yaml")):
        loaded = OmegaConf.load(path)
        backbone = loaded.get("backbone") if isinstance(loaded, DictConfig) else None
        if isinstance(backbone, DictConfig) and "_target_" in backbone:
            names.append(path.stem)
    return names


def pinned_backbone(backbone_cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """``backbone_cfg`` as a plain dict, a record model's named ``encoder`` spelled out: every
    hyper-parameter of ``conf/model/<encoder>.yaml`` under its ``encoder_overrides``, so a logged
    model rebuilds the encoder it was trained with even after those defaults change."""
    backbone = plain_dict(backbone_cfg)
    encoder = backbone.get("encoder")
    if not isinstance(encoder, str):
        return backbone
    defaults = plain_dict(_model_config(encoder).backbone)
    defaults.pop("_target_", None)
    backbone["encoder_overrides"] = {**defaults, **dict(backbone.get("encoder_overrides") or {})}
    return backbone


def beat_backbones() -> list[str]:
    """The backbones of single beats: :func:`available_backbones` but the record models
    (those with an ``input`` in their config: ``beats``, a record's set of beats, or ``strip``),
    which no beat model format (pyfunc, ONNX) serves."""
    return [name for name in available_backbones() if not _model_config(name).get("input")]


#: The unit of data a model reads, by its config's ``input`` (``beat`` when it has none): a
#: record model reads a record's set of beats (``beats``) or its strip (``strip``).
UNIT_OF_INPUT = {"beat": "beat", "beats": "record", "strip": "record"}
#: Why a model cannot read the data's unit, by that unit.
_MISMATCH = {
    "record": "model={name} reads single beats, but the data's unit is a whole record "
    "(data=records or data.unit=record): use a record model ({readers})",
    "beat": "model={name} reads whole records, but the data's unit is a single beat: pass "
    "data=records (or data.unit=record), or use a beat model ({readers})",
}


def model_unit(model_cfg: Mapping[str, Any] | DictConfig) -> str:
    """What one example of the model is: ``beat`` or ``record`` (:data:`UNIT_OF_INPUT`)."""
    return UNIT_OF_INPUT.get(str(model_cfg.get("input", "beat")), "beat")


def models_reading(unit: str) -> list[str]:
    """The ``conf/model`` names whose examples are ``unit`` (``beat`` or ``record``)."""
    names = []
    for path in sorted(MODEL_CONF_DIR.glob("*.yaml")):
        loaded = OmegaConf.load(path)
        if isinstance(loaded, DictConfig) and model_unit(loaded) == unit:
            names.append(path.stem)
    return names


def check_model_reads_unit(model_cfg: Mapping[str, Any] | DictConfig, unit: str) -> None:
    """Refuse, in one line before any run opens, a model that cannot read the data's unit
    (a beat model handed whole recordings, or a record model handed single beats)."""
    if model_unit(model_cfg) == unit:
        return
    readers = ", ".join(f"model={m}" for m in models_reading(unit))
    name = model_cfg.get("name", "?")
    raise EcgmlError(_MISMATCH[unit].format(name=name, readers=readers))


def build_backbone(
    model: str | Mapping[str, Any] | DictConfig,
    in_channels: int,
    n_outputs: int,
    seq_len: int,
    **overrides: Any,
) -> nn.Module:
    """Instantiate ``model.backbone`` (a composed ``cfg.model``, or a ``conf/model`` name).

    ``overrides`` replace hyper-parameters of the config (e.g. ``dropout=0.0`` in tests).
    """
    model_cfg = _model_config(model) if isinstance(model, str) else OmegaConf.create(dict(model))
    backbone_cfg = plain_dict(OmegaConf.merge(model_cfg.backbone, overrides))
    name = model_cfg.get("name")
    if "_target_" not in backbone_cfg:
        raise EcgmlError(f"model {name!r} has no backbone._target_")
    # The class through the one gate (no attribute walk, no nested directive), then called.
    backbone_class = check_backbone_config(backbone_cfg, f"model {name!r}")
    if not issubclass(backbone_class, nn.Module):
        raise EcgmlError(f"model {name!r}: backbone {backbone_class.__name__} is not a network")
    hparams = {k: v for k, v in backbone_cfg.items() if k != "_target_"}
    return backbone_class(in_channels=in_channels, n_outputs=n_outputs, seq_len=seq_len, **hparams)
