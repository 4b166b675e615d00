"""A compact 1D CNN for single beats, in the spirit of the study's model."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from ecgml.models.backbones.linear1d import SegmentLinear


def conv_block(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(2, ceil_mode=True),
    )


class CNN1D(nn.Module):
    """Conv-BN-ReLU-pool blocks, average + max pooling, dropout, linear head.

    ``head_bins`` = 1 pools the whole beat (global pooling: *what* shapes occur); more bins pool
    equal time segments of the R-aligned beat, so the head also sees *when* they occur relative
    to R (PR, QT, the T–U transition) — timing that global pooling throws away.

    ``input_pool`` > 1 averages that many input samples first (500 Hz → 250 Hz for 2): the
    P/T/U waves and intervals live well below 125 Hz, and every later layer costs half as much.

    ``linear_bins`` > 0 adds a *wide* path beside the deep one (wide-and-deep): a
    :class:`SegmentLinear` on the raw beat, its output added to the head's. A linear model on
    R-aligned amplitudes learns small level and timing shifts (an ST offset, a later T end) from
    fewer patients than the convolutions do; the convolutions keep what is non-linear (a peaked
    T, a U wave). Measured neutral on the synthetic cohort (README, small-data levers), so off.
    """

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        channels: Sequence[int] = (16, 32, 64, 64),
        kernel_size: int = 7,
        dropout: float = 0.3,
        input_pool: int = 1,
        head_bins: int = 1,
        linear_bins: int = 0,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        stem = [nn.AvgPool1d(input_pool, ceil_mode=True)] if input_pool > 1 else []
        self.features = nn.Sequential(
            *stem, *(conv_block(a, b, kernel_size) for a, b in itertools.pairwise(widths))
        )
        self.avg_pool = nn.AdaptiveAvgPool1d(head_bins)
        self.max_pool = nn.AdaptiveMaxPool1d(head_bins)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * widths[-1] * head_bins, n_outputs)
        )
        self.wide = SegmentLinear(in_channels, n_outputs, linear_bins) if linear_bins > 0 else None
        self.seq_len = seq_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([self.avg_pool(h), self.max_pool(h)], dim=1).flatten(1)
        out = self.head(pooled)
        return out if self.wide is None else out + self.wide(x)
