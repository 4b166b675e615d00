"""Typed schemas for the ``data``, ``task``, ``split``, ``evaluation`` and ``explain`` config
groups and the ``training`` block.

Each YAML file of those groups lists its schema first in its defaults list (Hydra's "Structured
Config schema" pattern), so a misspelt key (``explain.methd=…``), a wrong type
(``evaluation.n_bootstrap=abc``) or a value outside a choice (``explain.method=bogus``) fails at
composition with Hydra's own message, before any work starts. The YAML files keep every default
value; the schemas hold types only (``MISSING`` everywhere), so nothing is stated twice.

Choices are :class:`~enum.StrEnum` members: they compare, hash, format and log as their string.
:func:`register_schemas` runs on ``import ecgml`` (like the resolvers): every entry point, test
and script that composes ``conf/`` gets them. This module imports nothing of ecgml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# OmegaConf reads the annotations at runtime: keep Optional[...] (it does not take `X | None`).
# ruff: noqa: UP045


class DataSource(StrEnum):
    synthetic = "synthetic"
    beats = "beats"
    records = "records"


class DataUnit(StrEnum):
    """What one training example is: a single beat, or a whole record (ecgml.data.records)."""

    beat = "beat"
    record = "record"


class Align(StrEnum):
    r_peak = "r_peak"
    start = "start"


class BaselineMethod(StrEnum):
    none = "none"
    pr_segment = "pr_segment"
    linear = "linear"


class CalibrationMethod(StrEnum):
    none = "none"
    temperature = "temperature"
    platt = "platt"
    isotonic = "isotonic"


class PatientAggregate(StrEnum):
    mean = "mean"
    median = "median"
    max = "max"


class ThresholdRule(StrEnum):
    fixed = "fixed"
    youden = "youden"
    sensitivity = "sensitivity"
    binormal = "binormal"


class ExplainMethod(StrEnum):
    saliency = "saliency"
    integrated_gradients = "integrated_gradients"
    gradient_shap = "gradient_shap"
    occlusion = "occlusion"


class ExplainSubset(StrEnum):
    all = "all"
    correct = "correct"


class RegionSource(StrEnum):
    class_median = "class_median"
    patient_median = "patient_median"
    fixed = "fixed"


@dataclass
class AugmentConfig:
    """``conf/data/augment/<name>.yaml``: training-batch augmentation (ecgml/data/augment.py)."""

    enabled: bool = MISSING
    p: float = MISSING
    amplitude: float = MISSING
    stretch: float = MISSING
    wander_mv: float = MISSING
    noise_mv: float = MISSING


@dataclass
class DataConfig:
    """``conf/data/beats.yaml``: a beat store on disk."""

    source: DataSource = MISSING
    path: Optional[str] = MISSING
    fs: int = MISSING
    beat_length: Optional[int] = MISSING
    max_beat_s: float = MISSING
    align: Align = MISSING
    baseline: BaselineMethod = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    cache_dir: Optional[str] = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Record-level runs (ecgml.data.records); defaults here so beat stores need not state them.
    unit: DataUnit = DataUnit.beat
    leads: Any = field(default_factory=lambda: ["II"])  # a list of lead names, or "all"
    strip_fs: float = 100.0
    strip_s: float = 10.0
    max_beats: int = 40
    train_beats: Optional[int] = 6  # beats drawn per training record and epoch (None: all)


@dataclass
class SyntheticDataConfig(DataConfig):
    """``conf/data/synthetic.yaml``: the generator knobs sit under ``cohort`` (conf/cohort)."""

    cohort: Any = MISSING


@dataclass
class RecordDataConfig(DataConfig):
    """``conf/data/records.yaml``: a record store on disk (records.csv + one CSV per record)."""

    unit: DataUnit = DataUnit.record


@dataclass
class EvaluationConfig:
    """``conf/evaluation/default.yaml``."""

    threshold_rule: ThresholdRule = MISSING
    threshold_value: float = MISSING
    target_sensitivity: float = MISSING
    n_bootstrap: int = MISSING
    ci_level: float = MISSING
    seed: int = MISSING
    calibration: CalibrationMethod = MISSING
    prevalence: list[float] = MISSING
    operating_sensitivities: list[float] = MISSING
    subgroups: Optional[list[str]] = MISSING
    min_subgroup_patients: int = MISSING
    aggregate: PatientAggregate = MISSING
    decision_thresholds: list[float] = MISSING
    min_threshold_positives: int = MISSING
    interval_level: float = MISSING


@dataclass
class IntegratedGradientsConfig:
    n_steps: int = MISSING
    internal_batch_size: int = MISSING


@dataclass
class GradientShapConfig:
    n_samples: int = MISSING
    stdevs: float = MISSING


@dataclass
class OcclusionConfig:
    window_ms: int = MISSING
    stride_ms: int = MISSING


@dataclass
class LocalizationConfig:
    smooth_ms: int = MISSING
    segment_threshold: float = MISSING


@dataclass
class FixedRegionsConfig:
    p_on: int = MISSING
    p_off: int = MISSING
    qrs_on: int = MISSING
    qrs_off: int = MISSING
    t_on: int = MISSING
    t_off: int = MISSING


@dataclass
class RegionsConfig:
    source: RegionSource = MISSING
    tiles: int = MISSING
    min_t_half_ms: int = MISSING
    min_st_ms: int = MISSING
    u_ms: int = MISSING
    fixed_ms: FixedRegionsConfig = field(default_factory=FixedRegionsConfig)


@dataclass
class SanityConfig:
    enabled: bool = MISSING
    max_beats: int = MISSING
    max_similarity: float = MISSING


@dataclass
class FiguresConfig:
    enabled: bool = MISSING
    examples_per_class: int = MISSING
    dpi: int = MISSING


@dataclass
class ExplainConfig:
    """``conf/explain/default.yaml``."""

    enabled: bool = MISSING
    method: ExplainMethod = MISSING
    batch_size: int = MISSING
    subset: ExplainSubset = MISSING
    seed: int = MISSING
    integrated_gradients: IntegratedGradientsConfig = field(
        default_factory=IntegratedGradientsConfig
    )
    gradient_shap: GradientShapConfig = field(default_factory=GradientShapConfig)
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)
    localization: LocalizationConfig = field(default_factory=LocalizationConfig)
    regions: RegionsConfig = field(default_factory=RegionsConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)


@dataclass
class ExplainCliConfig(ExplainConfig):
    """``conf/explain.yaml``: the explain knobs at the top level plus the CLI's own keys."""

    task_name: str = MISSING
    run_id: Optional[str] = MISSING
    tracking_uri: Optional[str] = MISSING
    log_to_run: bool = MISSING
    traceback: bool = MISSING


class MonitorMode(StrEnum):
    min = "min"
    max = "max"


class Direction(StrEnum):
    minimize = "minimize"
    maximize = "maximize"


@dataclass
class TaskConfig:
    """``conf/task/<name>.yaml``: what a run learns; ``_target_`` names its ``ecgml.tasks``
    class (none for ``task=pretrain``, which has its own lifecycle)."""

    _target_: Optional[str] = None
    name: str = MISSING
    monitor: str = MISSING
    monitor_mode: MonitorMode = MISSING
    objective: str = MISSING
    direction: Direction = MISSING


@dataclass
class SerumTaskConfig(TaskConfig):
    """``conf/task/potassium.yaml`` / ``sodium.yaml``: a serum regression."""

    huber_delta: float = MISSING


@dataclass
class PretrainTaskConfig(TaskConfig):
    """``conf/task/pretrain.yaml``: contrastive pretraining (ecgml/pipeline/pretrain.py)."""

    embedding_dim: int = MISSING
    temperature: float = MISSING
    max_epochs: int = MISSING
    batch_size: int = MISSING
    lr: Optional[float] = MISSING
    val_fraction: float = MISSING
    experiment_name: Optional[str] = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class SplitConfig:
    """``conf/split/<name>.yaml``: a patient-level split class (ecgml/data/splits.py)."""

    _target_: str = MISSING
    name: str = MISSING
    seed: int = MISSING


@dataclass
class HoldoutConfig(SplitConfig):
    train: float = MISSING
    val: float = MISSING
    test: float = MISSING


@dataclass
class GroupKFoldConfig(SplitConfig):
    n_splits: int = MISSING
    fold: Optional[int] = MISSING  # null: every fold, under one parent run
    val_fraction: float = MISSING
    shared_folds: bool = MISSING


@dataclass
class LeaveCenterOutConfig(SplitConfig):
    by: str = MISSING
    fold: Any = MISSING  # a center (or device) to hold out; null: every one in turn
    val_fraction: float = MISSING


@dataclass
class TrainingConfig:
    """``training:`` in ``conf/train.yaml``: the loss, the checkpoint and what a run logs."""

    pos_weight: Any = MISSING  # "balanced", "none" or a number
    monitor: str = MISSING
    monitor_mode: MonitorMode = MISSING
    early_stopping_patience: int = MISSING
    # checked by ecgml itself, with a one-line error naming the fix (ecgml.pipeline.fitters)
    ensemble: Any = MISSING
    label_smoothing: Any = MISSING
    log_checkpoint: bool = MISSING
    log_model: bool = MISSING


#: (group, name, schema): a YAML file of ``group`` lists ``name`` first in its defaults.
SCHEMAS: tuple[tuple[str | None, str, type], ...] = (
    ("data", "data_schema", DataConfig),
    ("data", "synthetic_data_schema", SyntheticDataConfig),
    ("data", "records_data_schema", RecordDataConfig),
    ("task", "task_schema", TaskConfig),
    ("task", "serum_task_schema", SerumTaskConfig),
    ("task", "pretrain_task_schema", PretrainTaskConfig),
    ("split", "holdout_schema", HoldoutConfig),
    ("split", "group_kfold_schema", GroupKFoldConfig),
    ("split", "leave_center_out_schema", LeaveCenterOutConfig),
    ("training", "training_schema", TrainingConfig),
    ("evaluation", "evaluation_schema", EvaluationConfig),
    ("explain", "explain_schema", ExplainConfig),
    (None, "explain_cli_schema", ExplainCliConfig),
)


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for group, name, node in SCHEMAS:
        store.store(group=group, name=name, node=node, provider="ecgml")


def plain_dict(node: Any) -> dict[str, Any]:
    """A config node (or any mapping) as a plain ``dict`` with string keys, interpolations
    resolved: what code below the entry points receives instead of a ``DictConfig``."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(plain, Mapping):
        raise TypeError(f"expected a mapping, got {type(plain).__name__}")
    return {str(k): v for k, v in plain.items()}
