"""Folding Conv+BN for scoring changes speed, never the probabilities."""

from __future__ import annotations

import torch
from torch import nn

from ecgml.models import available_backbones, build_backbone
from ecgml.models.inference import fused_for_inference


def trained_like(name: str) -> nn.Module:
    """A backbone whose BatchNorm statistics are not the identity (as after training)."""
    torch.manual_seed(0)
    model = build_backbone(name, in_channels=1, n_outputs=1, seq_len=300)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_every_backbone_scores_the_same_fused() -> None:
    x = torch.randn(8, 1, 300)
    for name in available_backbones():
        model = trained_like(name)
        with torch.inference_mode():
            torch.testing.assert_close(
                fused_for_inference(model)(x), model(x), atol=1e-5, rtol=1e-4
            )


def test_cnn1d_loses_its_batchnorm_and_the_original_is_untouched() -> None:
    model = trained_like("cnn1d")
    fused = fused_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            return self.bn(self.conv(x))
        return self.conv(x)


def test_untraceable_module_is_returned_unfused_in_eval_mode() -> None:
    model = Untraceable().train()
    fused = fused_for_inference(model)
    assert isinstance(fused, Untraceable) and not fused.training
    assert model.training
