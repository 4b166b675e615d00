"""The linear baseline (``model=linear1d``) and cnn1d's wide path (``linear_bins``)."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from ecgml.models import build_backbone
from ecgml.models.backbones.cnn1d import CNN1D
from ecgml.models.backbones.linear1d import Linear1D, SegmentLinear

LENGTH, BINS = 200, 20  # 10 samples per segment
SHIFTED = slice(120, 140)  # segments 12 and 13: an "ST offset" after R


def offset_beats(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """White-noise beats (sd 1); the positives carry a 0.35 level shift over two segments. The
    best possible score (the sum over those samples) reaches an AUROC of about 0.87."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.5).float()
    x = torch.randn(n, 1, LENGTH, generator=g)
    x[:, 0, SHIFTED] += 0.35 * y[:, None]
    return x, y


def test_linear1d_learns_a_small_level_shift_and_weights_the_right_segments() -> None:
    torch.manual_seed(0)
    model = Linear1D(1, 1, LENGTH, bins=BINS)
    x, y = offset_beats(512, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(1), y)
        loss.backward()
        opt.step()
    model.eval()
    x_test, y_test = offset_beats(512, seed=2)
    with torch.no_grad():
        auroc = roc_auc_score(y_test.numpy(), model(x_test).squeeze(1).numpy())
    assert auroc > 0.8
    weights = model.segments.linear.weight.detach().abs().squeeze(0)
    assert set(weights.topk(2).indices.tolist()) == {12, 13}


def test_a_batch_of_one_beat_trains() -> None:
    model = build_backbone("linear1d", in_channels=1, n_outputs=1, seq_len=LENGTH).train()
    model(torch.randn(1, 1, LENGTH)).sum().backward()  # BatchNorm per lead, over the segments
    assert model.segments.linear.weight.grad is not None


def test_segments_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bins must be at least 1"):
        SegmentLinear(1, 1, bins=0)


def test_the_wide_path_adds_its_output_to_the_cnn_head() -> None:
    torch.manual_seed(0)
    model = CNN1D(1, 2, LENGTH, channels=(4, 8), head_bins=2, linear_bins=BINS).eval()
    x = torch.randn(3, 1, LENGTH)
    with torch.no_grad():
        deep_and_wide = model(x)
        wide = model.wide(x)  # type: ignore[misc]
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        torch.testing.assert_close(model(x), wide)
    assert not torch.allclose(deep_and_wide, wide)


def test_without_linear_bins_cnn1d_keeps_its_parameters() -> None:
    """Off by default: the state dict of runs logged before the wide path still loads."""
    plain = CNN1D(1, 1, LENGTH, channels=(4, 8))
    assert plain.wide is None
    assert not any(key.startswith("wide.") for key in plain.state_dict())
    with_wide = CNN1D(1, 1, LENGTH, channels=(4, 8), linear_bins=BINS)
    assert {k for k in with_wide.state_dict() if k.startswith("wide.")} >= {
        "wide.linear.weight",
        "wide.norm.running_mean",
    }
