"""A CNN-stem transformer: strided convolutions turn the beat into tokens, self-attention
relates them (e.g. the T wave to the QRS), a sinusoidal position code keeps any length valid."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """``(length, dim)`` position code of Vaswani et al. (no parameters, any length)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    code = torch.zeros(length, dim, device=device)
    code[:, 0::2] = torch.sin(position * frequency)
    code[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return code


class Transformer1D(nn.Module):
    """Conv stem (two stride-2 conv-BN-ReLU layers: one token per 4 samples), pre-norm
    transformer encoder, mean-pooled tokens, linear head."""

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        d_model: int = 48,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 96,
        stem_kernel_size: int = 9,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        pad = stem_kernel_size // 2
        half = max(d_model // 2, 1)
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, half, stem_kernel_size, stride=2, padding=pad, bias=False),
            nn.BatchNorm1d(half),
            nn.ReLU(inplace=True),
            nn.Conv1d(half, d_model, stem_kernel_size, stride=2, padding=pad, bias=False),
            nn.BatchNorm1d(d_model),
            nn.ReLU(inplace=True),
        )
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).transpose(1, 2)  # (batch, tokens, d_model)
        tokens = tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], x.device)
        h = self.norm(self.encoder(tokens))
        return self.head(h.mean(dim=1))
