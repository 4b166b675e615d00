"""On-the-fly beat augmentation for training batches (``data/augment=standard``).

Every transform keeps the R-peak where the alignment put it, so a beat stays a beat of the
study's pipeline (R at ``r_index``, zero padding outside the recorded span):

- ``amplitude``: one gain per beat, log-uniform in ``[1/a, a]`` (electrode and body-habitus gain);
- ``stretch``: the segments before and after R are each resampled by their own factor in
  ``[1-s, 1+s]`` around the R sample (heart-rate dependence of PR and QT, sampling jitter);
- ``wander``: a random low-frequency baseline (one sine of 0.05–0.5 Hz, random phase) that is
  zero at R, so the R sample's value is unchanged by it;
- ``noise``: white noise of standard deviation drawn in ``[0, noise_mv]``.

Wander and noise touch only the recorded span of each beat (the padding stays zero). Each
transform acts on a beat with probability ``p``. The transforms run batched in torch on the
training batches only (``BeatDataModule.on_after_batch_transfer``); validation, test, predict
and explain never see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ecgml.errors import EcgmlError


@dataclass(frozen=True)
class AugmentSettings:
    """Magnitudes of each transform (0 switches that transform off)."""

    p: float = 0.8
    amplitude: float = 1.0
    stretch: float = 0.0
    wander_mv: float = 0.0
    noise_mv: float = 0.0

    @classmethod
    def from_config(cls, cfg: Any) -> AugmentSettings | None:
        """``cfg.data.augment`` (a mapping, or None / ``enabled: false`` for no augmentation)."""
        if cfg is None or not cfg.get("enabled", True):
            return None
        settings = cls(
            p=float(cfg.get("p", cls.p)),
            amplitude=float(cfg.get("amplitude", cls.amplitude)),
            stretch=float(cfg.get("stretch", cls.stretch)),
            wander_mv=float(cfg.get("wander_mv", cls.wander_mv)),
            noise_mv=float(cfg.get("noise_mv", cls.noise_mv)),
        )
        settings.check()
        return settings

    def _mv(self) -> dict[str, float]:
        return {"wander_mv": self.wander_mv, "noise_mv": self.noise_mv}

    def check(self) -> None:
        problems = []
        if not 0.0 <= self.p <= 1.0:
            problems.append(f"p={self.p} must be in [0, 1]")
        if self.amplitude < 1.0:
            problems.append(f"amplitude={self.amplitude} must be >= 1 (gain range [1/a, a])")
        if not 0.0 <= self.stretch < 0.5:
            problems.append(f"stretch={self.stretch} must be in [0, 0.5)")
        problems += [f"{k}={v} must be >= 0 (mV)" for k, v in self._mv().items() if v < 0]
        if problems:
            raise EcgmlError(f"data.augment: {'; '.join(problems)}")


class BeatAugmenter:
    """Batched transforms of ``(batch, channels, length)`` beats, R-peak at ``r_index``."""

    def __init__(self, settings: AugmentSettings, fs: float, r_index: int | None) -> None:
        self.settings, self.fs, self.r_index = settings, float(fs), r_index

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.settings
        if s.stretch > 0:
            x = self._stretch(x, generator)
        valid = recorded_span(x)
        if s.amplitude > 1.0:
            x = x * self._gain(len(x), x, generator)
        if s.wander_mv > 0:
            x = x + self._wander(x, generator) * valid
        if s.noise_mv > 0:
            sd = self._chosen(len(x), x, generator) * _uniform(
                len(x), 0.0, s.noise_mv, x, generator
            )
            x = (
                x
                + sd[:, None, None]
                * torch.randn(x.shape, generator=generator, device=x.device)
                * valid
            )
        return x

    def _chosen(
        self, n: int, like: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """1.0 for the beats a transform acts on (probability ``p``), else 0.0."""
        return (torch.rand(n, generator=generator, device=like.device) < self.settings.p).to(
            like.dtype
        )

    def _gain(self, n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        log_a = torch.log(torch.tensor(self.settings.amplitude))
        log_gain = _uniform(n, -float(log_a), float(log_a), like, generator)
        return torch.exp(log_gain * self._chosen(n, like, generator))[:, None, None]

    def _wander(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, length = len(x), x.shape[-1]
        t = torch.arange(length, device=x.device, dtype=x.dtype) / self.fs
        t_r = (self.r_index or 0) / self.fs
        freq = _uniform(n, 0.05, 0.5, x, generator)[:, None]
        phase = _uniform(n, 0.0, 2 * torch.pi, x, generator)[:, None]
        amp = _uniform(n, 0.0, self.settings.wander_mv, x, generator) * self._chosen(
            n, x, generator
        )
        wave = torch.sin(2 * torch.pi * freq * t + phase) - torch.sin(
            2 * torch.pi * freq * t_r + phase
        )
        return (amp[:, None] * wave)[:, None, :]

    def _stretch(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Resample the pre-R and post-R segments around the R sample (R stays put)."""
        n, length = len(x), x.shape[-1]
        r = float(self.r_index or 0)
        s = self.settings.stretch
        chosen = self._chosen(n, x, generator)[:, None]
        pre = 1.0 + _uniform(n, -s, s, x, generator)[:, None] * chosen
        post = 1.0 + _uniform(n, -s, s, x, generator)[:, None] * chosen
        t = torch.arange(length, device=x.device, dtype=x.dtype)[None, :]
        factor = torch.where(t < r, pre, post)
        source = r + (t - r) / factor  # output sample t reads the input at `source`
        return _linear_sample(x, source)


class SeededGenerators:
    """One ``torch.Generator`` per (device, stream), each seeded with ``seed`` when first asked
    for: augmented batches are reproducible on any device. ``reset(stream)`` restarts a stream."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._generators: dict[tuple[str, str], torch.Generator] = {}

    def get(self, device: torch.device, stream: str = "train") -> torch.Generator:
        key = (stream, str(device))
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def reset(self, stream: str) -> None:
        self._generators = {k: g for k, g in self._generators.items() if k[0] != stream}


def recorded_span(x: torch.Tensor) -> torch.Tensor:
    """1.0 between each beat's first and last non-zero sample (its recorded span), else 0.0."""
    nonzero = (x != 0).any(dim=1, keepdim=True)
    idx = torch.arange(x.shape[-1], device=x.device)
    first = torch.where(nonzero, idx, x.shape[-1]).amin(dim=-1, keepdim=True)
    last = torch.where(nonzero, idx, -1).amax(dim=-1, keepdim=True)
    return ((idx >= first) & (idx <= last)).to(x.dtype)


def _linear_sample(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``x`` read at fractional positions ``source`` (batch, length); zero outside the beat."""
    length = x.shape[-1]
    lo = source.floor()
    frac = (source - lo)[:, None, :]
    lo = lo.long()
    inside_lo = ((lo >= 0) & (lo < length))[:, None, :]
    inside_hi = ((lo + 1 >= 0) & (lo + 1 < length))[:, None, :]
    index_lo = lo.clamp(0, length - 1)[:, None, :].expand(-1, x.shape[1], -1)
    index_hi = (lo + 1).clamp(0, length - 1)[:, None, :].expand(-1, x.shape[1], -1)
    a = torch.gather(x, -1, index_lo) * inside_lo
    b = torch.gather(x, -1, index_hi) * inside_hi
    return a * (1 - frac) + b * frac


def _uniform(
    n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * u
