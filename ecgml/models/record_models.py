"""Record models: one decision from every beat of a recording, or from the whole strip.

Both are backbones in the factory's sense (``Backbone(in_channels, n_outputs, seq_len,
**hparams)``, ``conf/model/set_*.yaml`` / ``strip_*.yaml``), built around any other registered
backbone (``encoder``: a ``conf/model`` name), and they read a record batch of
:mod:`ecgml.data.records`: ``{"beats": (B, N, C, L), "mask": (B, N), "strip": (B, C, S)}``.
Given a plain tensor ``(B, C, L)`` (a beat batch) the set model reads each beat as a record of
one beat and the strip model reads it as the strip, so both also fit the beat pipeline and the
backbone contract.

- :class:`SetModel`: a shared encoder embeds each real beat (padding beats never reach it), then
  gated attention (Ilse et al. 2018) or a mean pools the record's embeddings, and a linear head
  decides. Pooling runs on each record's own beats only, so a padded record gives exactly the
  output it gives alone. :meth:`SetModel.attention` returns the per-beat weights (saliency
  back to the beats).
- :class:`StripModel`: the encoder over the whole strip (the 10 s signal, resampled);
  :func:`strip_saliency` maps its decision back to one-second segments of the strip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ecgml.models.factory import build_backbone

RecordBatch = Mapping[str, torch.Tensor] | torch.Tensor
POOLINGS = ("attention", "mean")
#: How a record model reads several leads: ``joint`` (the encoder's first layer mixes them, one
#: input channel each) or ``shared`` (one encoder reads every lead alone, :class:`PerLeadEncoder`).
LEAD_MODES = ("joint", "shared")


class PerLeadEncoder(nn.Module):
    """One encoder for every lead: each lead of ``(B, C, L)`` is encoded alone (in_channels 1)
    into ``embed_dim`` features, and the leads' features are concatenated in lead order,
    ``(B, C · embed_dim)``. The leads share every weight, so a small cohort's records teach the
    encoder C times over (the same T wave or QT seen in each lead), and the head still knows
    which lead said what."""

    def __init__(
        self, encoder: str, n_leads: int, embed_dim: int, seq_len: int, overrides: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self.encoder = build_backbone(encoder, 1, embed_dim, seq_len, **dict(overrides))
        self.n_leads, self.embed_dim = int(n_leads), int(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, length = x.shape
        h = torch.relu(self.encoder(x.reshape(b * c, 1, length)))
        return h.reshape(b, c * self.embed_dim)


def lead_encoder(
    encoder: str,
    in_channels: int,
    out_dim: int,
    seq_len: int,
    overrides: Mapping[str, Any],
    leads: str,
    lead_dim: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """``(B, C, L)`` → ``(B, out_dim)``: the encoder over all leads at once (``joint``, and
    always for one lead), or :class:`PerLeadEncoder` (``lead_dim`` features per lead, default
    ``out_dim``), dropout, then a linear map of the leads' features (``shared``)."""
    if leads not in LEAD_MODES:
        raise ValueError(f"leads must be one of {', '.join(LEAD_MODES)}, got {leads!r}")
    if leads == "joint" or in_channels == 1:
        return build_backbone(encoder, in_channels, out_dim, seq_len, **dict(overrides))
    lead_dim = out_dim if lead_dim is None else int(lead_dim)
    return nn.Sequential(
        PerLeadEncoder(encoder, in_channels, lead_dim, seq_len, overrides),
        nn.Dropout(float(dropout)),
        nn.Linear(in_channels * lead_dim, out_dim),
    )


def as_record_batch(x: RecordBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(beats (B, N, C, L), mask (B, N))`` of a record batch; a beat tensor ``(B, C, L)`` is
    ``B`` records of one beat."""
    if isinstance(x, torch.Tensor):
        return x.unsqueeze(1), torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)
    return x["beats"], x["mask"].bool()


class SetModel(nn.Module):
    """A set of beats → one logit vector: shared encoder, masked attention/mean pooling, head."""

    #: ``forward`` branches on its input type (a tensor or a record batch): torch.fx would
    #: freeze one branch, so inference scores it unfused (:func:`fused_for_inference`).
    fx_traceable = False

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        encoder: str = "cnn1d",
        encoder_overrides: Mapping[str, Any] | None = None,
        embed_dim: int = 64,
        pooling: str = "attention",
        attention_dim: int = 32,
        dropout: float = 0.2,
        leads: str = "joint",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.encoder = lead_encoder(
            encoder, in_channels, embed_dim, seq_len, encoder_overrides or {}, leads
        )
        self.pooling = pooling
        self.attention_v = nn.Linear(embed_dim, attention_dim)
        self.attention_u = nn.Linear(embed_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, n_outputs))
        self.seq_len = seq_len

    def embed(self, beats: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Per record, its real beats' embeddings ``(n_i, D)`` (padding never encoded)."""
        counts = mask.sum(dim=1).tolist()
        h = torch.relu(self.encoder(beats[mask]))
        return list(torch.split(h, [int(c) for c in counts]))

    def _weights(self, h: torch.Tensor) -> torch.Tensor:
        if self.pooling == "mean":
            return torch.full((len(h),), 1.0 / max(len(h), 1), device=h.device, dtype=h.dtype)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        return torch.softmax(self.attention_w(gate).squeeze(-1), dim=0)

    def attention(self, x: RecordBatch) -> torch.Tensor:
        """Per-beat weights ``(B, N)`` (0 on padding; each record's sum to 1)."""
        beats, mask = as_record_batch(x)
        out = torch.zeros(mask.shape, dtype=beats.dtype, device=beats.device)
        for k, h in enumerate(self.embed(beats, mask)):
            out[k, mask[k]] = self._weights(h)
        return out

    def forward(self, x: RecordBatch) -> torch.Tensor:
        beats, mask = as_record_batch(x)
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every record needs at least one beat")
        pooled = [(self._weights(h).unsqueeze(-1) * h).sum(dim=0) for h in self.embed(beats, mask)]
        return self.head(torch.stack(pooled))


class StripModel(nn.Module):
    """The whole strip ``(B, C, S)`` → logits, through any registered backbone."""

    #: ``forward`` branches on its input type (a tensor or a record batch): torch.fx would
    #: freeze one branch, so inference scores it unfused (:func:`fused_for_inference`).
    fx_traceable = False

    def __init__(
        self,
        in_channels: int,
        n_outputs: int,
        seq_len: int,
        encoder: str = "cnn1d",
        encoder_overrides: Mapping[str, Any] | None = None,
        dropout: float | None = None,
        leads: str = "joint",
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        overrides = dict(encoder_overrides or {})
        if dropout is not None:  # the backbone contract's common knob, handed to the encoder
            overrides["dropout"] = dropout
        # shared: each lead's embed_dim features, the encoder's dropout, a linear head on all
        self.encoder = lead_encoder(
            encoder,
            in_channels,
            n_outputs,
            seq_len,
            overrides,
            leads,
            lead_dim=embed_dim,
            dropout=float(overrides.get("dropout", 0.0)),
        )
        self.seq_len = seq_len

    def forward(self, x: RecordBatch) -> torch.Tensor:
        strip = x if isinstance(x, torch.Tensor) else x["strip"]
        return self.encoder(strip)


def strip_saliency(
    model: nn.Module, strip: torch.Tensor, fs: float, segment_s: float = 1.0
) -> torch.Tensor:
    """Which part of the strip drove the decision: |gradient × input| of ``model``'s first output
    summed over leads and over ``segment_s``-second segments, ``(B, n_segments)``, each row
    summing to 1 (0 everywhere for a flat strip)."""
    strip = strip.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model({"strip": strip})
        out = out.reshape(len(strip), -1)[:, 0].sum()
        (grad,) = torch.autograd.grad(out, strip)
    saliency = (grad * strip).abs().sum(dim=1).detach()
    width = max(1, round(segment_s * fs))
    n = max(1, saliency.shape[-1] // width)
    per_segment = saliency[:, : n * width].reshape(len(strip), n, -1).sum(-1)
    return per_segment / per_segment.sum(-1, keepdim=True).clamp_min(1e-12)


#: Whether a record backbone reads the record's strip, by its ``conf/model`` file's ``input``
#: (else it reads the record's set of beats).
READS_STRIP = {"beats": False, "strip": True}


def reads_strip(model_cfg: Any) -> bool:
    """A ``conf/model`` file's record backbone reads the strip (``input: strip``), not the set
    of beats (``input: beats``, the default)."""
    return READS_STRIP[str(model_cfg.get("input", "beats"))]
