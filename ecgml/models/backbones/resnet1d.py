"""A 1D ResNet for single beats: a strided stem, residual stages that halve the length."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(c_out, c_out, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet1D(nn.Module):
    """Stem (conv stride 2), ``len(channels)`` stages of ``blocks_per_stage`` residual blocks
    (each stage after the first halves the length), global average + max pooling, linear head."""

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        channels: Sequence[int] = (16, 32, 64),
        blocks_per_stage: int = 2,
        kernel_size: int = 7,
        stem_kernel_size: int = 15,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.stem = nn.Sequential(
            nn.Conv1d(
                in_channels,
                channels[0],
                stem_kernel_size,
                stride=2,
                padding=stem_kernel_size // 2,
                bias=False,
            ),
            nn.BatchNorm1d(channels[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        width = channels[0]
        for stage, out in enumerate(channels):
            for k in range(blocks_per_stage):
                stride = 2 if stage > 0 and k == 0 else 1
                blocks.append(ResidualBlock(width, out, kernel_size, stride))
                width = out
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))
        return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1))
