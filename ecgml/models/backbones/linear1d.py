"""A linear model on the R-aligned beat: the small-cohort baseline, and cnn1d's wide path."""

from __future__ import annotations

import torch
from torch import nn


class SegmentLinear(nn.Module):
    """The beat's mean over ``bins`` equal time segments, standardized, read by one linear layer.

    On R-aligned beats a segment is a fixed place in the cardiac cycle (PR segment, ST, T
    downslope), so the weights say which amplitude shifts move the decision: a level change
    (an ST offset) or a timing one (a later T end lowers the amplitude at T's old end). The
    normalization is per lead over the batch and every segment (not per segment), so a batch of
    one beat trains too and the segments keep their relative amplitudes.
    """

    def __init__(self, in_channels: int, n_outputs: int, bins: int) -> None:
        super().__init__()
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        self.pool = nn.AdaptiveAvgPool1d(bins)
        self.norm = nn.BatchNorm1d(in_channels)
        self.linear = nn.Linear(in_channels * bins, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(self.pool(x)).flatten(1))


class Linear1D(nn.Module):
    """:class:`SegmentLinear` as a backbone (``model=linear1d``): logistic regression on segment
    means, trained and tracked like any network. At the study's size it is the baseline a CNN
    has to beat; its gradient saliency is its weights laid out on the beat."""

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        bins: int = 45,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.segments = SegmentLinear(in_channels, n_outputs, bins)
        self.seq_len = seq_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segments(self.dropout(x))
