"""What differs between logged models, as objects: the kind of their outputs (one disorder's
probability, one probability per named disorder, a serum value) and the unit one decision reads
(one beat, every beat of a recording, the recording itself). Reading, serving and scoring a
model ask these objects; they do not compare names.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from ecgml.errors import EcgmlError
from ecgml.evaluation.serum_intervals import SerumIntervals
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models.scoring import BeatProbabilityModel, BeatValueModel, backbone_from_config

if TYPE_CHECKING:
    from ecgml.modelfile.spec import ModelSpec


class OutputKind(ABC):
    """How a logged model's network answers: built from its spec, read back as named outputs."""

    #: The network answers a serum value (mmol/L), not probabilities.
    regression = False

    def check(self, spec: ModelSpec, source: str) -> None:
        """Refuse a spec this kind cannot be read from (one line); every spec by default."""
        return None

    def scorer(self, spec: ModelSpec, source: str) -> nn.Module:
        """The untrained architecture of ``spec``, ready for its weights."""
        backbone = backbone_from_config(
            spec.backbone,
            spec.seq_len,
            spec.ensemble,
            source,
            n_outputs=max(len(spec.outputs), 1),
            regression=self.regression,
            in_channels=len(spec.leads),
        )
        return self.around(backbone, spec)

    def around(self, backbone: nn.Module, spec: ModelSpec) -> nn.Module:
        """The scorer a (trained) backbone is saved and served as: its probabilities."""
        return BeatProbabilityModel(backbone)

    @abstractmethod
    def outputs(
        self, spec: ModelSpec, scorer: nn.Module, common: dict[str, Any]
    ) -> dict[str, LoadedModel]:
        """One :class:`LoadedModel` per answered output, by name (``common``: the fields every
        output shares)."""


class DisorderOutput(OutputKind):
    """``binary``: one disorder's probability, with its threshold and calibration."""

    def outputs(
        self, spec: ModelSpec, scorer: nn.Module, common: dict[str, Any]
    ) -> dict[str, LoadedModel]:
        model = LoadedModel(
            disorder=spec.disorder,
            model=scorer,
            threshold=spec.threshold,
            calibration=spec.calibration,
            **common,
        )
        return {spec.disorder: model}


class DisorderOutputs(OutputKind):
    """``multilabel``: one probability per named disorder, sharing one network, each with its
    own threshold and calibration (by name, so an output can never silently swap)."""

    def check(self, spec: ModelSpec, source: str) -> None:
        if not spec.outputs or set(spec.thresholds) != set(spec.outputs):
            raise EcgmlError(f"{source}: multi-label spec without a threshold per output; re-log")

    def outputs(
        self, spec: ModelSpec, scorer: nn.Module, common: dict[str, Any]
    ) -> dict[str, LoadedModel]:
        backbone = getattr(scorer, "backbone", scorer)
        return {
            name: LoadedModel(
                disorder=name,
                model=BeatProbabilityModel(backbone, k).eval(),
                threshold=spec.thresholds[name],
                calibration=spec.calibrations.get(name, {"method": "none"}),
                **common,
            )
            for k, name in enumerate(spec.outputs)
        }


class SerumOutput(OutputKind):
    """``potassium`` / ``sodium``: the value in mmol/L, ``target_mean + target_std · output``
    (no decision threshold)."""

    regression = True

    def around(self, backbone: nn.Module, spec: ModelSpec) -> nn.Module:
        return BeatValueModel(backbone, spec.target_mean, spec.target_std)

    def outputs(
        self, spec: ModelSpec, scorer: nn.Module, common: dict[str, Any]
    ) -> dict[str, LoadedModel]:
        interval = SerumIntervals.from_dict(spec.interval, common["uri"]) if spec.interval else None
        return {
            spec.task: LoadedModel(
                disorder=spec.task, model=scorer, threshold=math.nan, interval=interval, **common
            )
        }


#: Outputs that are serum values (mmol/L), not disorder probabilities.
SERUM_OUTPUTS = ("potassium", "sodium")
#: The output kind of each task a logged model can be trained for.
OUTPUT_KINDS: dict[str, OutputKind] = {
    "binary": DisorderOutput(),
    "multilabel": DisorderOutputs(),
    **{name: SerumOutput() for name in SERUM_OUTPUTS},
}


def output_kind(task: str, source: str) -> OutputKind:
    kind = OUTPUT_KINDS.get(task)
    if kind is None:
        raise EcgmlError(
            f"{source}: task {task!r} is not one of {tuple(OUTPUT_KINDS)}; re-log the model"
        )
    return kind


@dataclass(frozen=True)
class UnitInput:
    """What one decision of a logged model reads, and so how a request carries it."""

    name: str
    #: The model may read several leads (a beat model reads lead II only).
    multi_lead: bool
    #: The request carries the recording itself at its ``fs`` (a whole-strip model), not beats
    #: with their R-peak.
    reads_recording: bool


#: One beat; every beat of a recording (a set model); the recording itself (a strip model).
UNIT_INPUTS = {
    unit.name: unit
    for unit in (
        UnitInput("beat", multi_lead=False, reads_recording=False),
        UnitInput("record", multi_lead=True, reads_recording=False),
        UnitInput("strip", multi_lead=True, reads_recording=True),
    )
}
UNITS = tuple(UNIT_INPUTS)


def unit_input(unit: str, source: str) -> UnitInput:
    found = UNIT_INPUTS.get(unit)
    if found is None:
        raise EcgmlError(f"{source}: unit {unit!r} is not one of {UNITS}; re-log it")
    return found


def reads_recording(model: LoadedModel) -> bool:
    """A whole-strip model: it reads the recording, not beats."""
    return unit_input(model.unit, model.uri).reads_recording
