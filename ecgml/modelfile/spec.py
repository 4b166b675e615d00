"""The logged model's spec (``ecgml_model.json``) and the file names of its format."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ecgml
from ecgml import TWELVE_LEADS
from ecgml.errors import EcgmlError
from ecgml.modelfile.kinds import SERUM_OUTPUTS as SERUM_OUTPUTS  # re-exported
from ecgml.modelfile.kinds import UNITS as UNITS  # re-exported
from ecgml.modelfile.kinds import (
    OutputKind,
    UnitInput,
    output_kind,
    unit_input,
)
from ecgml.trust import check_backbone_config

FORMAT = "ecgml-beat-model"


FORMAT_VERSION = 2


WEIGHTS_FILE = "weights.safetensors"


SPEC_FILE = "ecgml_model.json"


#: Request columns: ``beat`` (mV samples) is required; ``r_index`` (the R-peak's sample in
#: ``beat``; absent: the beat is already ``seq_len`` long with R at the model's ``r_index``)
#: and ``fs`` (Hz; absent: the model's) are optional.
INPUT_COLUMNS = ("beat", "r_index", "fs")
#: The request column of a lead-II model's samples.
BEAT_COLUMN = INPUT_COLUMNS[0]


#: Longest beat a request may send (seconds at its ``fs``): a beat is one cardiac cycle.
MAX_BEAT_SECONDS = 4.0
#: Largest sample magnitude a request may send (mV): far beyond any ECG (a few mV), so only a
#: wrong unit or a garbage value is refused, before arithmetic on it overflows.
MAX_ABS_MV = 1000.0


#: Longest recording a request may send to a whole-strip model (seconds at its ``fs``).
MAX_STRIP_SECONDS = 60.0


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a logged model and prepare beats for it."""

    disorder: str
    negative: str
    model_name: str
    backbone: dict[str, Any]
    seq_len: int
    fs: float
    r_index: int | None
    align: str
    baseline: str
    threshold: float
    calibration: dict[str, Any] = field(default_factory=lambda: {"method": "none"})
    ensemble: int = 1
    #: ``binary`` (one output, ``disorder``), ``multilabel`` (one output per name in
    #: ``outputs``, each with its own threshold and calibration, by name) or a serum regression
    #: (``potassium`` / ``sodium``: one value, ``target_mean + target_std · output`` in mmol/L).
    task: str = "binary"
    outputs: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    calibrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_mean: float = 0.0
    target_std: float = 1.0
    #: ``beat`` (one score per beat; a patient's is their mean), ``record`` (a set model: one
    #: decision from every beat of a recording, :class:`~ecgml.models.record_models.SetModel`)
    #: or ``strip`` (a whole-strip model: one decision from the recording's first
    #: ``seq_len / fs`` seconds at ``fs``, :func:`~ecgml.signal.prepare_strip`).
    unit: str = "beat"
    #: The leads the model reads, one input channel each in this order (a multi-lead record
    #: model's ``data.leads``); every other model reads lead II.
    leads: list[str] = field(default_factory=lambda: ["II"])
    #: A serum model's calibrated intervals (:class:`~ecgml.evaluation.serum_intervals.
    #: SerumIntervals` as numbers: method, level, the calibration residuals); empty: none.
    interval: dict[str, Any] = field(default_factory=dict)
    ecgml_version: str = ecgml.__version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> ModelSpec:
        """The spec of a logged model, every field type-checked (one-line error otherwise)."""
        if data.get("format") != FORMAT:
            raise EcgmlError(f"{source} is not an {FORMAT} (format {data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise EcgmlError(
                f"{source} was logged by a newer ecgml (format {data['format_version']} > "
                f"{FORMAT_VERSION}): upgrade ecgml to load it"
            )
        try:
            r_index = data.get("r_index")
            spec = cls(
                disorder=str(data["disorder"]),
                negative=str(data.get("negative", "normal")),
                model_name=str(data["model_name"]),
                backbone=dict(data["backbone"]),
                seq_len=int(data["seq_len"]),
                fs=float(data["fs"]),
                r_index=None if r_index is None else int(r_index),
                align=str(data["align"]),
                baseline=str(data.get("baseline", "none")),
                threshold=float(data["threshold"]),
                calibration=dict(data.get("calibration") or {"method": "none"}),
                ensemble=int(data.get("ensemble", 1)),
                task=str(data.get("task", "binary")),
                outputs=[str(o) for o in data.get("outputs") or []],
                thresholds={str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
                calibrations={str(k): dict(v) for k, v in (data.get("calibrations") or {}).items()},
                target_mean=float(data.get("target_mean", 0.0)),
                target_std=float(data.get("target_std", 1.0)),
                unit=str(data.get("unit", "beat")),
                leads=[str(lead) for lead in data.get("leads") or ["II"]],
                interval=dict(data.get("interval") or {}),
                ecgml_version=str(data.get("ecgml_version", "?")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EcgmlError(
                f"{source}: model spec is damaged ({type(err).__name__}: {err}); re-log the "
                "model with ecgml.train"
            ) from None
        check_backbone_config(spec.backbone, source)  # the gate, before anything is built
        unit = unit_input(spec.unit, source)
        if not set(spec.leads) <= set(TWELVE_LEADS) or len(set(spec.leads)) != len(spec.leads):
            raise EcgmlError(
                f"{source}: leads {spec.leads} are not distinct standard leads; re-log"
            )
        if spec.leads != ["II"] and not unit.multi_lead:
            raise EcgmlError(f"{source}: a beat model reads lead II only (leads {spec.leads})")
        if spec.seq_len < 1 or not math.isfinite(spec.fs) or spec.fs <= 0:
            raise EcgmlError(f"{source}: implausible seq_len/fs in the model spec; re-log it")
        output_kind(spec.task, source).check(spec, source)
        return spec

    @property
    def kind(self) -> OutputKind:
        """How the model's outputs are built and read (its task's :class:`OutputKind`)."""
        return output_kind(self.task, "model spec")

    @property
    def input(self) -> UnitInput:
        """What one decision reads (its unit's :class:`UnitInput`)."""
        return unit_input(self.unit, "model spec")

    @property
    def is_regression(self) -> bool:
        return self.kind.regression


def read_spec(spec_file: Path, uri: str) -> ModelSpec:
    """The :class:`ModelSpec` of a logged model's ``ecgml_model.json``."""
    try:
        data = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EcgmlError(f"{uri}: cannot read {spec_file.name} ({err}); re-log the model") from None
    if not isinstance(data, dict):
        raise EcgmlError(f"{uri}: {spec_file.name} is not a JSON object; re-log the model")
    return ModelSpec.from_dict(data, uri)


def is_beat_model_dir(folder: Path) -> bool:
    return (Path(folder) / "artifacts" / SPEC_FILE).is_file()
