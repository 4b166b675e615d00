"""InceptionTime (Ismail Fawaz et al., 2020) for single beats.

Inception modules (1x1 bottleneck, three parallel convolutions of different widths, a max-pool
branch) with a residual shortcut every ``residual_every`` modules. An optional average-pool stem
(``stem_pool``) halves a 500 Hz beat first: the T wave is a slow wave and CPU time halves with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def odd(k: int) -> int:
    """'same' padding needs odd kernels."""
    return k if k % 2 else k + 1


class InceptionModule(nn.Module):
    def __init__(
        self, c_in: int, n_filters: int, kernel_sizes: Sequence[int], bottleneck: int
    ) -> None:
        super().__init__()
        use_bottleneck = bottleneck > 0 and c_in > 1
        width = bottleneck if use_bottleneck else c_in
        self.bottleneck: nn.Module = (
            nn.Conv1d(c_in, bottleneck, 1, bias=False) if use_bottleneck else nn.Identity()
        )
        self.convs = nn.ModuleList(
            nn.Conv1d(width, n_filters, odd(k), padding=odd(k) // 2, bias=False)
            for k in kernel_sizes
        )
        self.pool_branch = nn.Sequential(
            nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, n_filters, 1, bias=False)
        )
        self.out = nn.Sequential(
            nn.BatchNorm1d(n_filters * (len(kernel_sizes) + 1)), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        branches = [conv(z) for conv in self.convs] + [self.pool_branch(x)]
        return self.out(torch.cat(branches, dim=1))


class InceptionTime1D(nn.Module):
    """``depth`` inception modules with residual shortcuts, global average pooling, linear head."""

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        n_filters: int = 16,
        depth: int = 6,
        kernel_sizes: Sequence[int] = (39, 19, 9),
        bottleneck: int = 16,
        residual_every: int = 3,
        stem_pool: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.stem: nn.Module = (
            nn.AvgPool1d(stem_pool, ceil_mode=True) if stem_pool > 1 else nn.Identity()
        )
        width = n_filters * (len(kernel_sizes) + 1)
        self.modules_ = nn.ModuleList()
        self.shortcuts = nn.ModuleDict()
        c_in, block_in = in_channels, in_channels
        for d in range(depth):
            self.modules_.append(InceptionModule(c_in, n_filters, kernel_sizes, bottleneck))
            c_in = width
            if residual_every and (d + 1) % residual_every == 0:
                self.shortcuts[str(d)] = nn.Sequential(
                    nn.Conv1d(block_in, width, 1, bias=False), nn.BatchNorm1d(width)
                )
                block_in = width
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        residual = h
        for d, module in enumerate(self.modules_):
            h = module(h)
            if str(d) in self.shortcuts:
                h = self.act(h + self.shortcuts[str(d)](residual))
                residual = h
        return self.head(h.mean(dim=-1))
