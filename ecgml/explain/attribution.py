"""Captum attributions of the positive-class logit for a batch of padded beats.

Every method returns one attribution per input sample, shape ``(n, length)`` like the beats.
Baselines are the all-zero beat: zero is the padding value, i.e. "no signal".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from captum.attr import GradientShap, IntegratedGradients, Occlusion, Saliency
from torch import nn
from tqdm.auto import tqdm

from ecgml.errors import EcgmlError

METHODS = ("saliency", "integrated_gradients", "gradient_shap", "occlusion")
Attributor = Callable[[nn.Module, torch.Tensor, Mapping[str, Any], float], torch.Tensor]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise EcgmlError(f"explain.method={method!r} is unknown: use one of {', '.join(METHODS)}")
    return method


def _saliency(model: nn.Module, x: torch.Tensor, _: Mapping[str, Any], fs: float) -> torch.Tensor:
    return Saliency(model).attribute(x, abs=True)


def _integrated_gradients(
    model: nn.Module, x: torch.Tensor, cfg: Mapping[str, Any], fs: float
) -> torch.Tensor:
    options = cfg.get("integrated_gradients") or {}
    return IntegratedGradients(model).attribute(
        x,
        baselines=torch.zeros_like(x),
        n_steps=int(options.get("n_steps", 16)),
        internal_batch_size=int(options.get("internal_batch_size", 2048)),
    )


def _gradient_shap(
    model: nn.Module, x: torch.Tensor, cfg: Mapping[str, Any], fs: float
) -> torch.Tensor:
    options = cfg.get("gradient_shap") or {}
    baselines = torch.zeros((2, *x.shape[1:]), dtype=x.dtype, device=x.device)
    return GradientShap(model).attribute(
        x,
        baselines=baselines,
        n_samples=int(options.get("n_samples", 16)),
        stdevs=float(options.get("stdevs", 0.02)),
    )


def _occlusion(
    model: nn.Module, x: torch.Tensor, cfg: Mapping[str, Any], fs: float
) -> torch.Tensor:
    options = cfg.get("occlusion") or {}
    window = max(1, round(float(options.get("window_ms", 40)) * fs / 1000.0))
    stride = max(1, round(float(options.get("stride_ms", 10)) * fs / 1000.0))
    n_windows = max(1, (x.shape[-1] - window) // stride + 1)
    return Occlusion(model).attribute(
        x,
        sliding_window_shapes=(1, window),
        strides=(1, stride),
        baselines=0.0,
        perturbations_per_eval=max(1, min(n_windows, 4096 // max(len(x), 1))),
    )


_ATTRIBUTORS: dict[str, Attributor] = {
    "saliency": _saliency,
    "integrated_gradients": _integrated_gradients,
    "gradient_shap": _gradient_shap,
    "occlusion": _occlusion,
}


def compute_attributions(
    model: nn.Module,
    beats: np.ndarray,
    cfg: Mapping[str, Any],
    fs: float,
    progress: bool = True,
) -> np.ndarray:
    """Attributions ``(n, length)`` of ``model``'s logit for ``beats`` with ``cfg.method``.

    The model is put in eval mode (BatchNorm running statistics, no dropout) and restored after.
    """
    method = check_method(str(cfg.get("method", "saliency")))
    attribute = _ATTRIBUTORS[method]
    batch_size = int(cfg.get("batch_size", 256))
    seed = int(cfg.get("seed", 0))
    beats = np.asarray(beats, dtype=np.float32)
    if beats.ndim != 2:
        raise EcgmlError(f"beats must be a 2-D array (n, length), got shape {beats.shape}")
    out = np.zeros(beats.shape, dtype=np.float32)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        torch.manual_seed(seed)  # GradientShap draws baselines and noise
        with torch.enable_grad():
            starts = range(0, len(beats), batch_size)
            for start in tqdm(starts, desc=f"explain: {method}", disable=not progress, leave=False):
                chunk = torch.from_numpy(beats[start : start + batch_size]).unsqueeze(1)
                chunk = chunk.to(device).requires_grad_()
                attr = attribute(model, chunk, cfg, fs)
                out[start : start + len(chunk)] = attr.detach().squeeze(1).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy with every layer re-initialized (Adebayo et al.: full randomization)."""
    # A Lightning module holds its trainer: share it instead of copying it.
    trainer = getattr(model, "_trainer", None)
    clone = copy.deepcopy(model, memo={id(trainer): trainer} if trainer is not None else None)
    torch.manual_seed(seed)
    for module in clone.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
        reset_stats = getattr(module, "reset_running_stats", None)
        if callable(reset_stats):
            reset_stats()
    return clone
