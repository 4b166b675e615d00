"""An ensemble's probability is exactly the mean of its members' probabilities."""

from __future__ import annotations

import pytest
import torch

from ecgml.models import build_backbone
from ecgml.models.ensemble import MeanProbabilityEnsemble


def members(n: int) -> list[torch.nn.Module]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=200).eval())
    return out


def test_ensemble_probability_is_the_mean_of_members() -> None:
    nets = members(3)
    x = torch.randn(16, 1, 200)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(x)) for m in nets]).mean(dim=0)
        got = torch.sigmoid(MeanProbabilityEnsemble(nets)(x))
        single = torch.sigmoid(nets[0](x))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, single)  # the other members do count


def test_ensemble_of_one_is_its_member() -> None:
    (net,) = members(1)
    x = torch.randn(8, 1, 200)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.sigmoid(MeanProbabilityEnsemble([net])(x)),
            torch.sigmoid(net(x)),
            atol=1e-6,
            rtol=1e-5,
        )


def test_ensemble_is_differentiable_for_saliency() -> None:
    x = torch.randn(4, 1, 200, requires_grad=True)
    MeanProbabilityEnsemble(members(2))(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_ensemble_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        MeanProbabilityEnsemble([])
