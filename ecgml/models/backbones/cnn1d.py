"""A compact 1D CNN for single beats, in the spirit of the study's model."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def conv_block(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(2, ceil_mode=True),
    )


class CNN1D(nn.Module):
    """Conv-BN-ReLU-pool blocks, global average + max pooling, dropout, linear head."""

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        channels: Sequence[int] = (16, 32, 64, 64),
        kernel_size: int = 7,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.features = nn.Sequential(
            *(conv_block(a, b, kernel_size) for a, b in itertools.pairwise(widths))
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * widths[-1], n_outputs))
        self.seq_len = seq_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)
        return self.head(pooled)
