"""The logged beat model: weights without pickle, a config without code, an MLflow pyfunc.

Every training run logs its model as an MLflow **pyfunc "models from code"** model:

- ``artifacts/weights.safetensors``: the scorer's tensors (safetensors: no pickle, no code);
- ``artifacts/ecgml_model.json``: the :class:`ModelSpec` — the backbone config, the input
  layout training used (``seq_len``, ``fs``, ``r_index``, ``baseline``), the threshold chosen on
  validation and the recalibration fitted there — also shown as the MLmodel ``metadata``;
- ``beat_model_entry.py``: the python model is a file of this package
  (:class:`EcgmlBeatModel`), not a pickled object.

``ecgml.predict`` never executes anything from the store: :func:`read_model_dir` rebuilds the
architecture from ecgml's own backbone classes (:func:`~ecgml.models.scoring.scorer_from_config`)
and loads the tensors. ``mlflow models serve`` loads the pyfunc (importing the entry file, as
for any MLflow pyfunc model): its ``predict`` takes raw beats in the documented schema
(:data:`INPUT_COLUMNS`) and applies the model's layout, calibration and threshold itself, so a
caller needs no ecgml knowledge.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ecgml
from ecgml import TWELVE_LEADS
from ecgml.beatstore import MAX_FS, MIN_FS
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import Calibrator
from ecgml.models.inference import fused_for_inference
from ecgml.models.scoring import (
    BeatProbabilityModel,
    BeatValueModel,
    backbone_from_config,
    scorer_from_config,
)
from ecgml.schemas import plain_dict
from ecgml.signal.prepare import FS_TOLERANCE, prepare_beats, prepare_strips
from ecgml.tracking.registry import LoadedModel, import_mlflow, log_python_model
from ecgml.trust import check_backbone_config

FORMAT = "ecgml-beat-model"
FORMAT_VERSION = 2
WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "ecgml_model.json"
#: The models-from-code file MLflow copies into the logged model and imports to serve it.
ENTRY_FILE = Path(__file__).with_name("beat_model_entry.py")
#: Request columns: ``beat`` (mV samples) is required; ``r_index`` (the R-peak's sample in
#: ``beat``; absent: the beat is already ``seq_len`` long with R at the model's ``r_index``)
#: and ``fs`` (Hz; absent: the model's) are optional.
INPUT_COLUMNS = ("beat", "r_index", "fs")
#: Longest beat a request may send (seconds at its ``fs``): a beat is one cardiac cycle.
MAX_BEAT_SECONDS = 4.0
#: What one decision of a logged model reads: one beat, every beat of a recording (a set
#: model), or the recording itself (a whole-strip model).
UNITS = ("beat", "record", "strip")
#: Longest recording a request may send to a whole-strip model (seconds at its ``fs``).
MAX_STRIP_SECONDS = 60.0
#: Outputs that are serum values (mmol/L), not disorder probabilities.
SERUM_OUTPUTS = ("potassium", "sodium")


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
                disorder=str(data["disorder"]), negative=str(data.get("negative", "normal")),
                model_name=str(data["model_name"]), backbone=dict(data["backbone"]),
                seq_len=int(data["seq_len"]), fs=float(data["fs"]),
                r_index=None if r_index is None else int(r_index), align=str(data["align"]),
                baseline=str(data.get("baseline", "none")), threshold=float(data["threshold"]),
                calibration=dict(data.get("calibration") or {"method": "none"}),
                ensemble=int(data.get("ensemble", 1)), task=str(data.get("task", "binary")),
                outputs=[str(o) for o in data.get("outputs") or []],
                thresholds={str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
                calibrations={str(k): dict(v)
                              for k, v in (data.get("calibrations") or {}).items()},
                target_mean=float(data.get("target_mean", 0.0)),
                target_std=float(data.get("target_std", 1.0)),
                unit=str(data.get("unit", "beat")),
                leads=[str(lead) for lead in data.get("leads") or ["II"]],
                ecgml_version=str(data.get("ecgml_version", "?")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise EcgmlError(
                f"{source}: model spec is damaged ({type(err).__name__}: {err}); re-log the "
                "model with ecgml.train"
            ) from None
        check_backbone_config(spec.backbone, source)  # the gate, before anything is built
        if spec.unit not in UNITS:
            raise EcgmlError(f"{source}: unit {spec.unit!r} is not one of {UNITS}; re-log it")
        if not set(spec.leads) <= set(TWELVE_LEADS) or len(set(spec.leads)) != len(spec.leads):
            raise EcgmlError(
                f"{source}: leads {spec.leads} are not distinct standard leads; re-log"
            )
        if spec.leads != ["II"] and spec.unit == "beat":
            raise EcgmlError(f"{source}: a beat model reads lead II only (leads {spec.leads})")
        if spec.seq_len < 1 or not math.isfinite(spec.fs) or spec.fs <= 0:
            raise EcgmlError(f"{source}: implausible seq_len/fs in the model spec; re-log it")
        if spec.task == "multilabel" and (
            not spec.outputs or set(spec.thresholds) != set(spec.outputs)
        ):
            raise EcgmlError(f"{source}: multi-label spec without a threshold per output; re-log")
        return spec

    @property
    def is_regression(self) -> bool:
        return self.task not in ("binary", "multilabel")


def model_spec(
    cfg: DictConfig,
    seq_len: int,
    fs: float,
    r_index: int | None,
    threshold: float,
    calibration: Mapping[str, Any] | None = None,
    ensemble: int = 1,
) -> ModelSpec:
    """The spec of a model trained with the composed ``cfg``."""
    backbone = plain_dict(cfg.model.backbone)
    return ModelSpec(
        disorder=str(cfg.disorder.name), negative=str(cfg.disorder.negative),
        model_name=str(cfg.model.name), backbone=backbone, seq_len=int(seq_len), fs=float(fs),
        r_index=None if r_index is None else int(r_index),
        align=str(cfg.data.align) if r_index is not None else "start",
        baseline=str(cfg.data.get("baseline", "none")), threshold=float(threshold),
        calibration=dict(calibration or {"method": "none"}), ensemble=int(ensemble),
    )  # fmt: skip


def scorer_of(model: nn.Module) -> BeatProbabilityModel:
    """The probability model of a trained ``BeatClassifier`` (or a bare backbone), on CPU."""
    backbone = getattr(model, "backbone", model)
    return BeatProbabilityModel(backbone).cpu().eval()


def task_model_spec(
    cfg: DictConfig, seq_len: int, fs: float, r_index: int | None, model: nn.Module,
    evaluation: Any,
) -> ModelSpec:  # fmt: skip
    """The spec of a multi-label or regression model: output names, and per output the
    threshold and calibration its evaluation chose on validation (multi-label), or the
    training targets' standardization (regression)."""
    # ``threshold`` is the binary field: a multi-label model's are in ``thresholds``
    base = model_spec(cfg, seq_len, fs, r_index, 0.5, ensemble=n_ensemble_members(model))
    outputs = [str(o) for o in getattr(model, "outputs", ())]
    per = getattr(evaluation, "per_output", {})
    return dataclasses.replace(
        base, disorder=str(cfg.task.name), task=str(cfg.task.name), outputs=outputs,
        thresholds={d: float(e.metrics["test/threshold"]) for d, e in per.items()},
        calibrations={d: e.calibrator.to_dict() for d, e in per.items()},
        target_mean=float(getattr(model, "target_mean", 0.0)),
        target_std=float(getattr(model, "target_std", 1.0)),
    )  # fmt: skip


def task_scorer_of(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """The scorer whose tensors a multi-label or regression model is saved as (every output)."""
    backbone = getattr(model, "backbone", model)
    if spec.is_regression:
        return BeatValueModel(backbone, spec.target_mean, spec.target_std).cpu().eval()
    return BeatProbabilityModel(backbone).cpu().eval()


def n_ensemble_members(model: nn.Module) -> int:
    members = getattr(getattr(model, "backbone", model), "members", None)
    return len(members) if members is not None else 1


def write_model_files(scorer: nn.Module, spec: ModelSpec, folder: Path) -> dict[str, str]:
    """``weights.safetensors`` and ``ecgml_model.json`` in ``folder``; the pyfunc artifacts."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    (folder / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    return {"weights": str(folder / WEIGHTS_FILE), "spec": str(folder / SPEC_FILE)}


def load_scorer(weights: Path, spec: ModelSpec, source: str) -> nn.Module:
    """The architecture of ``spec`` with the tensors of ``weights`` (no pickle anywhere): a
    :class:`BeatProbabilityModel` (output 0), or for another task its scorer of every output
    (the backbone inside a probability or a value model)."""
    if spec.task == "binary":
        scorer: nn.Module = scorer_from_config(
            spec.backbone, spec.seq_len, spec.ensemble, source, in_channels=len(spec.leads)
        )
    else:
        backbone = backbone_from_config(
            spec.backbone, spec.seq_len, spec.ensemble, source,
            n_outputs=max(len(spec.outputs), 1), regression=spec.is_regression,
            in_channels=len(spec.leads),
        )  # fmt: skip
        scorer = (
            BeatValueModel(backbone, spec.target_mean, spec.target_std)
            if spec.is_regression
            else BeatProbabilityModel(backbone)
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise EcgmlError(f"{source}: cannot read {weights.name} ({err}); re-log it") from None
    try:
        scorer.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1 if "\n" in str(err) else 0].strip()
        raise EcgmlError(
            f"{source}: {weights.name} does not match its config ({spec.model_name}, "
            f"seq_len {spec.seq_len}): {first}; re-log the model with ecgml.train"
        ) from None
    return scorer.eval()


def read_model_files(weights: Path, spec_file: Path, uri: str) -> LoadedModel:
    """A :class:`LoadedModel` from the two artifact files (a binary model)."""
    models = read_task_files(weights, spec_file, uri)
    if len(models) != 1 or read_spec(spec_file, uri).task != "binary":
        raise EcgmlError(
            f"{uri} is a task={read_spec(spec_file, uri).task} model, not one disorder's: "
            "ecgml.predict uses it as a champion of its task"
        )
    return next(iter(models.values()))


def read_spec(spec_file: Path, uri: str) -> ModelSpec:
    """The :class:`ModelSpec` of a logged model's ``ecgml_model.json``."""
    try:
        data = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EcgmlError(f"{uri}: cannot read {spec_file.name} ({err}); re-log the model") from None
    if not isinstance(data, dict):
        raise EcgmlError(f"{uri}: {spec_file.name} is not a JSON object; re-log the model")
    return ModelSpec.from_dict(data, uri)


def read_task_files(weights: Path, spec_file: Path, uri: str) -> dict[str, LoadedModel]:
    """One :class:`LoadedModel` per output, by name: the disorder of a binary model; each
    disorder of a multi-label model (sharing one network, each with its own threshold and
    calibration); the serum value (``potassium`` / ``sodium``) of a regression."""
    spec = read_spec(spec_file, uri)
    scorer = load_scorer(weights, spec, uri)
    common: dict[str, Any] = {
        "seq_len": spec.seq_len, "fs": spec.fs, "r_index": spec.r_index, "align": spec.align,
        "uri": uri, "baseline": spec.baseline, "unit": spec.unit, "leads": tuple(spec.leads),
    }  # fmt: skip
    if spec.task == "binary":
        return {spec.disorder: LoadedModel(
            disorder=spec.disorder, model=scorer, threshold=spec.threshold,
            calibration=spec.calibration, **common,
        )}  # fmt: skip
    if spec.is_regression:
        return {spec.task: LoadedModel(disorder=spec.task, model=scorer,
                                       threshold=float("nan"), **common)}  # fmt: skip
    backbone = scorer.backbone
    assert isinstance(backbone, nn.Module)
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


def read_model_dir(folder: Path, uri: str) -> LoadedModel:
    """A downloaded logged model folder (``MLmodel`` + ``artifacts/``) as a :class:`LoadedModel`."""
    artifacts = Path(folder) / "artifacts"
    return read_model_files(artifacts / WEIGHTS_FILE, artifacts / SPEC_FILE, uri)


def read_task_dir(folder: Path, uri: str) -> dict[str, LoadedModel]:
    """A downloaded logged model folder of any task: one :class:`LoadedModel` per output."""
    artifacts = Path(folder) / "artifacts"
    return read_task_files(artifacts / WEIGHTS_FILE, artifacts / SPEC_FILE, uri)


def is_beat_model_dir(folder: Path) -> bool:
    return (Path(folder) / "artifacts" / SPEC_FILE).is_file()


def serving_signature(disorder: str, outputs: Sequence[str] = (), regression: bool = False,
                      leads: Sequence[str] = ("II",)) -> Any:  # fmt: skip
    """The served model's request and response columns (the documented schema): ``beat``, or
    for a multi-lead model one column per lead; per disorder ``<d>``, ``<d>_raw``,
    ``<d>_decision``; a regression answers ``<name>_mmol_l``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema, TensorSpec

    names = ["beat"] if tuple(leads) == ("II",) else list(leads)
    inputs = Schema([
        *(ColSpec(Array(DataType.double), name) for name in names),
        ColSpec(DataType.long, "r_index", required=False),
        ColSpec(DataType.double, "fs", required=False),
    ])  # fmt: skip
    if regression:
        return ModelSignature(
            inputs=inputs, outputs=Schema([ColSpec(DataType.double, f"{disorder}_mmol_l")])
        )
    columns: list[ColSpec | TensorSpec] = []
    for name in outputs or [disorder]:
        columns += [
            ColSpec(DataType.double, name),
            ColSpec(DataType.double, f"{name}_raw"),
            ColSpec(DataType.boolean, f"{name}_decision"),
        ]
    return ModelSignature(inputs=inputs, outputs=Schema(columns))


def request_example(spec: ModelSpec) -> pd.DataFrame:
    """One request row (a flat beat of the model's own length; a strip model's: a flat
    recording): MLflow stores it as the model's input example and checks that the served model
    answers it."""
    columns = ["beat"] if spec.leads == ["II"] else spec.leads
    flat = {name: [np.zeros(spec.seq_len).tolist()] for name in columns}
    if spec.unit == "strip":
        return pd.DataFrame({**flat, "fs": [spec.fs]})
    return pd.DataFrame({**flat, "r_index": [spec.r_index or 0]})


def log_beat_model(tracking_uri: str, run_id: str, model: nn.Module, spec: ModelSpec) -> str:
    """Log ``model`` (a ``BeatClassifier``, an ensemble or a bare backbone) with ``spec`` as the
    run's MLflow model; returns the logged model's id."""
    with tempfile.TemporaryDirectory(prefix="ecgml-model-") as tmp:
        scorer = scorer_of(model) if spec.task == "binary" else task_scorer_of(model, spec)
        artifacts = write_model_files(scorer, spec, Path(tmp))
        signature = serving_signature(spec.disorder, spec.outputs, spec.is_regression, spec.leads)
        return log_python_model(
            tracking_uri, run_id, ENTRY_FILE, artifacts, signature,
            spec.to_dict(),
            pip_requirements=[f"ecgml=={ecgml.__version__}",
                              f"torch=={torch.__version__.split('+')[0]}"],
            input_example=request_example(spec),
        )  # fmt: skip


# --------------------------------------------------------------------------- serving


class BadRequest(EcgmlError):
    """A request the served model refuses (HTTP 400 under ``mlflow models serve``)."""


def _column(frame: pd.DataFrame, name: str, n: int) -> list[Any]:
    if name not in frame.columns:
        return [None] * n
    return [None if _missing(v) else v for v in frame[name].tolist()]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _beat_array(value: Any, row: int) -> np.ndarray:
    try:
        beat = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"row {row}: beat is not a list of numbers") from None
    if beat.ndim != 1 or beat.size == 0:
        raise BadRequest(f"row {row}: beat must be a non-empty list of numbers (mV)")
    if not np.isfinite(beat).all():
        raise BadRequest(f"row {row}: beat has NaN or infinite samples; send finite mV values")
    return beat


def _fs_of(value: Any, spec: LoadedModel, row: int) -> float:
    fs = spec.fs if value is None else float(value)
    if not MIN_FS <= fs <= MAX_FS:
        raise BadRequest(f"row {row}: fs={value} Hz is outside {MIN_FS:g}–{MAX_FS:g}")
    return fs


def _r_of(value: Any, beat: np.ndarray, fs: float, spec: LoadedModel, row: int) -> int:
    if value is None:
        if beat.size != spec.seq_len or abs(fs - spec.fs) > FS_TOLERANCE:
            raise BadRequest(
                f"row {row}: a beat without r_index must be exactly {spec.seq_len} samples at "
                f"{spec.fs:g} Hz (R at sample {spec.r_index}); got {beat.size} at {fs:g} Hz: "
                "send r_index (the R-peak's sample) with beats of any length"
            )
        return int(spec.r_index or 0)
    r = float(value)
    if not r.is_integer() or not 0 <= r < beat.size:
        raise BadRequest(f"row {row}: r_index={value} is not a sample of its {beat.size} samples")
    return int(r)


Request = tuple[list[np.ndarray], list[int], float]


def parse_request(frame: pd.DataFrame, spec: LoadedModel) -> Request:
    """(beats, R indices, fs) of a request; :class:`BadRequest` names the first bad row."""
    if "beat" not in frame.columns:
        raise BadRequest(f"request has no 'beat' column (columns: {list(frame.columns)})")
    n = len(frame)
    if n == 0:
        raise BadRequest("empty batch: send at least one beat")
    beats, rs, rates = [], [], []
    columns = (frame["beat"].tolist(), _column(frame, "r_index", n), _column(frame, "fs", n))
    for row, (value, r, fs) in enumerate(zip(*columns, strict=True)):
        beat = _beat_array(value, row)
        rate = _fs_of(fs, spec, row)
        if beat.size > MAX_BEAT_SECONDS * rate:
            raise BadRequest(
                f"row {row}: beat of {beat.size} samples is longer than {MAX_BEAT_SECONDS:g} s at "
                f"{rate:g} Hz: send one cardiac cycle per row"
            )
        beats.append(beat)
        rs.append(_r_of(r, beat, rate, spec, row))
        rates.append(rate)
    if len(set(rates)) > 1:
        raise BadRequest("rows have different fs: send one sampling rate per request")
    return beats, rs, rates[0]


def as_frame(model_input: Any) -> pd.DataFrame:
    """The request as a DataFrame (MLflow passes a DataFrame for ``dataframe_split`` /
    ``dataframe_records`` and a dict of arrays for ``inputs``)."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, Mapping):
        try:
            return pd.DataFrame({k: list(v) for k, v in model_input.items()})
        except (TypeError, ValueError) as err:
            raise BadRequest(f"request columns have different lengths ({err})") from None
    raise BadRequest(f"request must be a table of beats, got {type(model_input).__name__}")


def predict_frame(model: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``<disorder>`` (recalibrated probability), ``<disorder>_raw`` (the network's own) and
    ``<disorder>_decision`` (probability ≥ the validation threshold), one row per beat."""
    return predict_outputs({model.disorder: model}, frame)


def parse_strip_request(frame: pd.DataFrame, spec: LoadedModel) -> tuple[list[np.ndarray], float]:
    """(recordings, fs) of a request to a whole-strip model: each row's ``beat`` is a lead-II
    recording (``r_index`` is ignored); :class:`BadRequest` names the first bad row."""
    if "beat" not in frame.columns:
        raise BadRequest(f"request has no 'beat' column (columns: {list(frame.columns)})")
    if len(frame) == 0:
        raise BadRequest("empty batch: send at least one recording")
    signals, rates = [], []
    for row, (value, fs) in enumerate(
        zip(frame["beat"].tolist(), _column(frame, "fs", len(frame)), strict=True)
    ):
        signal, rate = _beat_array(value, row), _fs_of(fs, spec, row)
        if signal.size > MAX_STRIP_SECONDS * rate:
            raise BadRequest(
                f"row {row}: recording of {signal.size} samples is longer than "
                f"{MAX_STRIP_SECONDS:g} s at {rate:g} Hz: send one recording per row"
            )
        signals.append(signal)
        rates.append(rate)
    if len(set(rates)) > 1:
        raise BadRequest("rows have different fs: send one sampling rate per request")
    return signals, rates[0]


def prepared_request(frame: pd.DataFrame, model: LoadedModel) -> np.ndarray:
    """The request's rows laid out as ``model`` reads them: beats, or whole recordings (a
    multi-lead model: ``(n, leads, L)``, :func:`prepared_lead_request`)."""
    if model.leads != ("II",):
        return prepared_lead_request(frame, model)
    return prepared_lead(frame, model)


def prepared_lead_request(frame: pd.DataFrame, model: LoadedModel) -> np.ndarray:
    """A multi-lead model's request: one column per lead it reads, named after the lead, each
    row the same beat (set model; one ``r_index`` for every lead) or recording (strip model)
    of every lead; each lead is laid out as a lead-II request is."""
    missing = [lead for lead in model.leads if lead not in frame.columns]
    if missing:
        raise BadRequest(
            f"request has no column {', '.join(missing)}: this model reads leads "
            f"{', '.join(model.leads)}, one column per lead (each row the same beat or recording "
            "of every lead)"
        )
    lengths = [[np.size(v) for v in frame[lead].tolist()] for lead in model.leads]
    for row, sizes in enumerate(zip(*lengths, strict=True)):
        if len(set(sizes)) > 1:
            raise BadRequest(
                f"row {row}: the leads have different lengths ({', '.join(map(str, sizes))} "
                "samples): send the same stretch of every lead"
            )
    others = [c for c in frame.columns if c not in ("beat", *model.leads)]
    per_lead = [
        prepared_lead(frame[[lead, *others]].rename(columns={lead: "beat"}), model)
        for lead in model.leads
    ]
    return np.stack(per_lead, axis=1)


def prepared_lead(frame: pd.DataFrame, model: LoadedModel) -> np.ndarray:
    """One lead of a request (column ``beat``) laid out as ``model`` reads it."""
    if model.unit == "strip":
        signals, fs = parse_strip_request(frame, model)
        return prepare_strips(signals, fs, model)
    beats, rs, fs = parse_request(frame, model)
    return prepare_beats(beats, rs, fs, model)


def answered(model: LoadedModel, raw: np.ndarray) -> np.ndarray:
    """A model's raw outputs as it answers them: a disorder's probability recalibrated (the
    calibration it logged), a serum model's estimate (mmol/L) as it is."""
    if model.disorder in SERUM_OUTPUTS:
        return raw.astype(np.float64)
    return Calibrator.from_dict(model.calibration).apply(raw)


def predict_outputs(models: Mapping[str, LoadedModel], frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`predict_frame`'s columns for every output of a model, by name (a regression's
    ``<name>_mmol_l``); the beats (a strip model's recordings) are parsed and prepared once."""
    first = next(iter(models.values()))
    x = prepared_request(frame, first)
    columns: dict[str, Any] = {}
    for name, model in models.items():
        raw = model.score(x)
        if model.disorder in SERUM_OUTPUTS:
            columns[f"{name}_mmol_l"] = answered(model, raw)
            continue
        prob = answered(model, raw)
        columns.update({name: prob, f"{name}_raw": raw.astype(np.float64),
                        f"{name}_decision": prob >= model.threshold})  # fmt: skip
    return pd.DataFrame(columns)


class EcgmlBeatModel(import_mlflow().pyfunc.PythonModel):  # type: ignore[misc]
    """The served model: raw beats in (:data:`INPUT_COLUMNS`), probabilities out."""

    #: MLflow would wrap ``predict`` and read its type hints as a schema (and warn that there
    #: are none): the logged signature is the schema.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        models = read_task_files(
            Path(context.artifacts["weights"]), Path(context.artifacts["spec"]), "served model"
        )
        # Conv+BatchNorm folded, as ecgml.predict scores (same outputs, ~1.7x faster)
        self.models = {
            name: dataclasses.replace(m, model=fused_for_inference(m.model))
            for name, m in models.items()
        }
        self.model = next(iter(self.models.values()))

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            return predict_outputs(self.models, as_frame(model_input))
        except BadRequest as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
