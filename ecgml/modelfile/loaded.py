"""A logged model read back, ready to score prepared beats or recordings in batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgml.evaluation.serum_intervals import SerumIntervals

SCORE_BATCH = 1024


@dataclass
class LoadedModel:
    """One disorder's model, ready to score prepared beats ``(n, seq_len)`` in batches."""

    disorder: str
    model: nn.Module  # beats (n, 1, L) -> probabilities (n,)
    seq_len: int
    fs: float
    r_index: int | None
    align: str
    threshold: float
    uri: str
    calibration: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    baseline: str = "none"  # ecgml.signal.reference_beats method the model was trained with
    run_id: str | None = None
    version: str | None = None
    # "record": one decision from all of a recording's beats (a set model); "strip": from the
    # recording itself (``seq_len`` samples at ``fs``, ecgml.signal.prepare_strip)
    unit: str = "beat"
    #: The leads the model reads (its input channels, in order); a multi-lead record model's
    #: prepared input is ``(n, len(leads), seq_len)``, every other model's ``(n, seq_len)``.
    leads: tuple[str, ...] = ("II",)
    #: A serum model's calibrated intervals and severity probabilities (None: it has none).
    interval: SerumIntervals | None = None

    @property
    def pre_r_ms(self) -> float | None:
        """Milliseconds of signal the model sees before the R-peak (``None``: start-aligned)."""
        return None if self.r_index is None else 1000.0 * self.r_index / self.fs

    @property
    def post_r_ms(self) -> float | None:
        return None if self.r_index is None else 1000.0 * (self.seq_len - self.r_index) / self.fs

    def score(self, beats: np.ndarray, batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Probabilities ``(n,)`` for prepared beats ``(n, seq_len)``."""
        chunks = self._in_batches(self.model, beats, batch_size)
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    @property
    def layout_key(self) -> tuple[int, float, int | None, str]:
        """What beat preparation depends on: models with equal keys read the same prepared
        beats."""
        return (self.seq_len, self.fs, self.r_index, self.baseline)

    def logits(self, beats: np.ndarray, batch_size: int = SCORE_BATCH) -> np.ndarray:
        """Every output's logit ``(n, n_outputs)`` of the network inside a probability model
        (``model.backbone``), for prepared beats ``(n, seq_len)``."""
        backbone = self.model.backbone
        assert isinstance(backbone, nn.Module)
        chunks = self._in_batches(lambda x: backbone(x).flatten(1), beats, batch_size)
        return np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)

    def channels_first(self, beats: np.ndarray) -> np.ndarray:
        """Prepared input ``(n, seq_len)`` (one lead) or ``(n, len(leads), seq_len)`` as the
        network reads it, ``(n, C, seq_len)`` float32; a wrong shape is a ValueError."""
        beats = np.ascontiguousarray(beats, dtype=np.float32)
        if beats.ndim == 2 and len(self.leads) == 1:
            beats = beats[:, None, :]
        expected = (len(self.leads), self.seq_len)
        if beats.ndim != 3 or beats.shape[1:] != expected:
            shape = (
                f"(n, {self.seq_len})" if expected[0] == 1 else f"(n, {expected[0]}, {expected[1]})"
            )
            raise ValueError(f"beats must have shape {shape}, got {beats.shape}")
        return beats

    def _in_batches(
        self, network: Callable[[torch.Tensor], torch.Tensor], beats: np.ndarray, batch_size: int
    ) -> list[np.ndarray]:
        """``network`` applied to prepared input (:meth:`channels_first`) in batches of
        ``(b, C, L)``."""
        beats = self.channels_first(beats)
        with torch.inference_mode():
            return [
                network(torch.from_numpy(beats[start : start + batch_size])).float().numpy()
                for start in range(0, len(beats), batch_size)
            ]

    def score_record(self, beats: np.ndarray) -> tuple[float, np.ndarray]:
        """A record model's probability from one recording's prepared beats (``(n, seq_len)``,
        or ``(n, len(leads), seq_len)``) read together, and each beat's weight in that decision
        (its attention; ``1/n`` each under mean pooling)."""
        beats = self.channels_first(beats)
        if len(beats) == 0:
            raise ValueError("a record needs at least one beat")
        batch = {
            "beats": torch.from_numpy(beats)[None],
            "mask": torch.ones(1, len(beats), dtype=torch.bool),
        }
        with torch.inference_mode():
            probability = float(self.model(batch)[0])
            attention = getattr(getattr(self.model, "backbone", None), "attention", None)
            weights = (
                attention(batch)[0].double().numpy()
                if callable(attention)
                else np.full(len(beats), 1.0 / len(beats))
            )
        return probability, weights
