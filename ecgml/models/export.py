"""Trained models as ONNX graphs: the same numbers, any runtime.

Two things stand between a backbone and an ONNX graph with a dynamic batch: adaptive pooling
to a size that does not divide the feature length (cnn1d's timing-aware head) has no ONNX
operator, and the recalibration ecgml applies after the network lives outside it.
:func:`export_ready` swaps every adaptive 1-D pool for :class:`SlicedAdaptivePool1d` (the
same bins, sliced explicitly: beats have one fixed length, so the slices are static) and wraps
the scorer in :class:`CalibratedScorer`, whose outputs are the network's probability and the
recalibrated one. :func:`export_onnx` runs ``torch.onnx.export`` (the ``torch.export``-based
exporter) with the batch dimension dynamic.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.models.scoring import BeatProbabilityModel

#: Logits are clamped like ecgml's calibrator clips probabilities (to [1e-6, 1 - 1e-6]).
LOGIT_LIMIT = math.log((1 - 1e-6) / 1e-6)
INPUT_NAME = "beats"
OUTPUT_NAMES = ("probability", "probability_raw")


class SlicedAdaptivePool1d(nn.Module):
    """``AdaptiveAvgPool1d`` / ``AdaptiveMaxPool1d`` as explicit slices (PyTorch's bins:
    ``[floor(i·L/n), ceil((i+1)·L/n))``), exportable for any ``L``."""

    def __init__(self, output_size: int, mode: str) -> None:
        super().__init__()
        self.output_size, self.mode = int(output_size), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, n = x.shape[-1], self.output_size
        parts = []
        for i in range(n):
            segment = x[..., (i * length) // n : -((-(i + 1) * length) // n)]
            pooled = segment.mean(-1) if self.mode == "avg" else segment.amax(-1)
            parts.append(pooled.unsqueeze(-1))
        return torch.cat(parts, dim=-1)


def _size(pool: nn.AdaptiveAvgPool1d | nn.AdaptiveMaxPool1d) -> int:
    size = pool.output_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def with_sliced_pools(module: nn.Module) -> nn.Module:
    """``module`` (in place) with every adaptive 1-D pool replaced by its sliced equivalent."""
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool1d):
            setattr(module, name, SlicedAdaptivePool1d(_size(child), "avg"))
        elif isinstance(child, nn.AdaptiveMaxPool1d):
            setattr(module, name, SlicedAdaptivePool1d(_size(child), "max"))
        else:
            with_sliced_pools(child)
    return module


class CalibratedScorer(nn.Module):
    """``(probability, probability_raw)``: ``sigmoid(a·logit + b)`` and ``sigmoid(logit)``."""

    def __init__(self, scorer: BeatProbabilityModel, slope: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scorer = scorer
        self.slope: torch.Tensor
        self.bias: torch.Tensor
        self.register_buffer("slope", torch.tensor(float(slope)))
        self.register_buffer("bias", torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.scorer.logits(x).clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
        return torch.sigmoid(self.slope * logit + self.bias), torch.sigmoid(logit)


def calibration_in_graph(calibration: dict) -> tuple[float, float] | None:
    """``(a, b)`` of a temperature / Platt recalibration; ``None`` for isotonic (not a line)."""
    method, params = calibration.get("method", "none"), calibration.get("params", {})
    if method == "none":
        return 1.0, 0.0
    if method == "temperature":
        return 1.0 / float(params["temperature"]), 0.0
    if method == "platt":
        return float(params["a"]), float(params["b"])
    return None


def export_ready(scorer: nn.Module, calibration: dict) -> tuple[nn.Module, bool]:
    """(an exportable copy of ``scorer`` with the recalibration inside, whether it is inside)."""
    line = calibration_in_graph(calibration)
    slope, bias = line or (1.0, 0.0)
    sliced = with_sliced_pools(copy.deepcopy(scorer)).eval()
    if not isinstance(sliced, BeatProbabilityModel):
        raise TypeError(f"only a probability model exports, not {type(scorer).__name__}")
    model = CalibratedScorer(sliced, slope, bias)
    return model.eval(), line is not None


#: The torch.onnx logger that warns about every torchvision op it cannot register.
TORCHVISION_REGISTRY = "torch.onnx._internal.exporter._registration"


def export_onnx(model: nn.Module, seq_len: int, path: Path) -> Path:
    """Write ``model`` (beats ``(n, 1, seq_len)`` float32 → :data:`OUTPUT_NAMES`) as ONNX."""
    example = torch.zeros(2, 1, int(seq_len))
    batch = torch.export.Dim("batch")
    for name in ("onnx_ir", "onnxscript", "torch.onnx"):  # per-pass INFO lines under Hydra
        logging.getLogger(name).setLevel(logging.WARNING)
    # "torchvision is not installed. Skipping torchvision::nms", once per op: ecgml's graphs hold
    # no torchvision op, so the registry's warning says nothing a user can act on
    logging.getLogger(TORCHVISION_REGISTRY).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter (deprecations, torchvision ops)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                external_data=False,  # one self-contained file (beat models are small)
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; name the first line
        raise EcgmlError(
            f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    return path
