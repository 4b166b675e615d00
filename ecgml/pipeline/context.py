"""What every run of the lifecycle shares, whatever its task and unit: its output folder, the
overrides it was started with, what it was resumed from and what it leaves behind."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ecgml.evaluation.threshold import ThresholdChoice


@dataclass
class RunResult:
    """What a run leaves behind: its evaluation metrics and the fit's last per-epoch metrics.

    ``tags`` and ``skipped`` carry what a unit adds to a run (a record run's skipped records and
    their counts), so that a cross-validation parent logs them once for its folds."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    predictions: pd.DataFrame = field(repr=False)
    checkpoint: Path | None = None
    fit_metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    skipped: pd.DataFrame | None = field(default=None, repr=False)
    #: The decision threshold with its interval (a binary task's evaluation; None otherwise).
    threshold: ThresholdChoice | None = None


@dataclass(frozen=True)
class Resume:
    """``resume=<run_id>``: the run to re-open, its downloaded ``last.ckpt`` and the overrides
    it was started with."""

    run_id: str
    checkpoint: Path
    overrides: list[str]


def run_dir() -> Path:
    """This job's Hydra output folder, or a temporary one when called without Hydra."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(tempfile.mkdtemp(prefix="ecgml-run-"))


def hydra_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_config_files(cfg: DictConfig, out: Path, overrides: list[str]) -> None:
    """``config.yaml`` (resolved) and ``overrides.yaml`` in the run's folder."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
