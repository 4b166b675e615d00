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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ecgml
from ecgml.beatstore import MAX_FS, MIN_FS
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import Calibrator
from ecgml.models.inference import fused_for_inference
from ecgml.models.scoring import BeatProbabilityModel, scorer_from_config
from ecgml.signal.prepare import FS_TOLERANCE, prepare_beats
from ecgml.tracking.registry import LoadedModel, import_mlflow, log_python_model

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
                ensemble=int(data.get("ensemble", 1)),
                ecgml_version=str(data.get("ecgml_version", "?")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise EcgmlError(
                f"{source}: model spec is damaged ({type(err).__name__}: {err}); re-log the "
                "model with ecgml.train"
            ) from None
        if spec.seq_len < 1 or not math.isfinite(spec.fs) or spec.fs <= 0:
            raise EcgmlError(f"{source}: implausible seq_len/fs in the model spec; re-log it")
        return spec


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
    backbone = OmegaConf.to_container(cfg.model.backbone, resolve=True)
    assert isinstance(backbone, dict)
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


def load_scorer(weights: Path, spec: ModelSpec, source: str) -> BeatProbabilityModel:
    """The architecture of ``spec`` with the tensors of ``weights`` (no pickle anywhere)."""
    scorer = scorer_from_config(spec.backbone, spec.seq_len, spec.ensemble, source)
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
    """A :class:`LoadedModel` from the two artifact files."""
    try:
        data = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EcgmlError(f"{uri}: cannot read {spec_file.name} ({err}); re-log the model") from None
    if not isinstance(data, dict):
        raise EcgmlError(f"{uri}: {spec_file.name} is not a JSON object; re-log the model")
    spec = ModelSpec.from_dict(data, uri)
    return LoadedModel(
        disorder=spec.disorder, model=load_scorer(weights, spec, uri), seq_len=spec.seq_len,
        fs=spec.fs, r_index=spec.r_index, align=spec.align, threshold=spec.threshold, uri=uri,
        calibration=spec.calibration, baseline=spec.baseline,
    )  # fmt: skip


def read_model_dir(folder: Path, uri: str) -> LoadedModel:
    """A downloaded logged model folder (``MLmodel`` + ``artifacts/``) as a :class:`LoadedModel`."""
    artifacts = Path(folder) / "artifacts"
    return read_model_files(artifacts / WEIGHTS_FILE, artifacts / SPEC_FILE, uri)


def is_beat_model_dir(folder: Path) -> bool:
    return (Path(folder) / "artifacts" / SPEC_FILE).is_file()


def serving_signature(disorder: str) -> Any:
    """The served model's request and response columns (the documented schema)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema([
        ColSpec(Array(DataType.double), "beat"),
        ColSpec(DataType.long, "r_index", required=False),
        ColSpec(DataType.double, "fs", required=False),
    ])  # fmt: skip
    outputs = Schema([
        ColSpec(DataType.double, disorder),
        ColSpec(DataType.double, f"{disorder}_raw"),
        ColSpec(DataType.boolean, f"{disorder}_decision"),
    ])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=outputs)


def request_example(spec: ModelSpec) -> pd.DataFrame:
    """One request row (a flat beat of the model's own length): MLflow stores it as the
    model's input example and checks that the served model answers it."""
    r_index = spec.r_index or 0
    return pd.DataFrame({"beat": [np.zeros(spec.seq_len).tolist()], "r_index": [r_index]})


def log_beat_model(tracking_uri: str, run_id: str, model: nn.Module, spec: ModelSpec) -> str:
    """Log ``model`` (a ``BeatClassifier``, an ensemble or a bare backbone) with ``spec`` as the
    run's MLflow model; returns the logged model's id."""
    with tempfile.TemporaryDirectory(prefix="ecgml-model-") as tmp:
        artifacts = write_model_files(scorer_of(model), spec, Path(tmp))
        return log_python_model(
            tracking_uri, run_id, ENTRY_FILE, artifacts, serving_signature(spec.disorder),
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
    beats, rs, fs = parse_request(frame, model)
    x = prepare_beats(beats, rs, fs, model)
    raw = model.score(x)
    prob = Calibrator.from_dict(model.calibration).apply(raw)
    d = model.disorder
    return pd.DataFrame({d: prob, f"{d}_raw": raw.astype(np.float64),
                         f"{d}_decision": prob >= model.threshold})  # fmt: skip


class EcgmlBeatModel(import_mlflow().pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The served model: raw beats in (:data:`INPUT_COLUMNS`), probabilities out."""

    #: MLflow would wrap ``predict`` and read its type hints as a schema (and warn that there
    #: are none): the logged signature is the schema.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        model = read_model_files(
            Path(context.artifacts["weights"]), Path(context.artifacts["spec"]), "served model"
        )
        # Conv+BatchNorm folded, as ecgml.predict scores (same outputs, ~1.7x faster)
        self.model = dataclasses.replace(model, model=fused_for_inference(model.model))

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            return predict_frame(self.model, as_frame(model_input))
        except BadRequest as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
