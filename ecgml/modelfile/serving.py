"""The served model: the MLflow pyfunc that ``mlflow models serve`` loads, and the request
parsing and answering it shares with ``ecgml.predict``. Raw beats (or recordings) in, in the
documented schema (:data:`~ecgml.modelfile.spec.INPUT_COLUMNS`); the model's own layout,
calibration and threshold applied here, so a caller needs no ecgml knowledge.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgml.beatstore import MAX_FS, MIN_FS
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibrator import Calibrator
from ecgml.evaluation.serum_intervals import severity_columns
from ecgml.modelfile.files import read_model_files
from ecgml.modelfile.kinds import reads_recording
from ecgml.modelfile.loaded import LoadedModel
from ecgml.modelfile.spec import (
    BEAT_COLUMN,
    MAX_ABS_MV,
    MAX_BEAT_SECONDS,
    MAX_STRIP_SECONDS,
    SERUM_OUTPUTS,
    ModelSpec,
)
from ecgml.models.inference import fused_for_inference
from ecgml.signal.prepare import FS_TOLERANCE, prepare_beats, prepare_strips

with warnings.catch_warnings():  # mlflow.pyfunc warns about its own agent types at import
    warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
    from mlflow.pyfunc import PythonModel  # not mlflow.pytorch: it would import Lightning

#: The models-from-code file MLflow copies into the logged model and imports to serve it.
ENTRY_FILE = Path(__file__).with_name("entry.py")


def serving_signature(
    disorder: str,
    outputs: Sequence[str] = (),
    regression: bool = False,
    leads: Sequence[str] = ("II",),
    intervals: bool = False,
) -> Any:
    """The served model's request and response columns (the documented schema): ``beat``, or
    for a multi-lead model one column per lead; per disorder ``<d>``, ``<d>_raw``,
    ``<d>_decision``; a regression answers ``<name>_mmol_l`` (with ``intervals``: also
    ``_low``, ``_high`` and its severity probabilities ``<name>_p_…``)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema, TensorSpec

    names = ["beat"] if tuple(leads) == ("II",) else list(leads)
    inputs = Schema(
        [
            *(ColSpec(Array(DataType.double), name) for name in names),
            # any, not long: MLflow would truncate 12.7 to 12 before the model could refuse it (and
            # a double refuses JSON integers: fs=500); the model checks both values itself
            ColSpec(AnyType(), "r_index", required=False),  # type: ignore[no-untyped-call]
            ColSpec(AnyType(), "fs", required=False),  # type: ignore[no-untyped-call]  # 500 too
        ]
    )
    if regression:
        names = serum_answer_names(disorder, intervals)
        return ModelSignature(
            inputs=inputs, outputs=Schema([ColSpec(DataType.double, n) for n in names])
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
    if spec.input.reads_recording:
        return pd.DataFrame({**flat, "fs": [spec.fs]})
    return pd.DataFrame({**flat, "r_index": [spec.r_index or 0]})


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
    if np.abs(beat).max() > MAX_ABS_MV:
        raise BadRequest(
            f"row {row}: beat has samples beyond ±{MAX_ABS_MV:g} mV (largest "
            f"{np.abs(beat).max():.3g}): send the signal in mV"
        )
    return beat


def _fs_of(value: Any, spec: LoadedModel, row: int) -> float:
    fs = spec.fs if value is None else _number(value, "fs", row)
    if not MIN_FS <= fs <= MAX_FS:
        raise BadRequest(f"row {row}: fs={value} Hz is outside {MIN_FS:g}–{MAX_FS:g}")
    return fs


def _number(value: Any, name: str, row: int) -> float:
    """A request's number (JSON int or float); text, lists and booleans are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise BadRequest(f"row {row}: {name}={str(value)[:20]!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise BadRequest(f"row {row}: {name}={value} is not a finite number")
    return number


def _r_of(value: Any, beat: np.ndarray, fs: float, spec: LoadedModel, row: int) -> int:
    if value is None:
        if beat.size != spec.seq_len or abs(fs - spec.fs) > FS_TOLERANCE:
            raise BadRequest(
                f"row {row}: a beat without r_index must be exactly {spec.seq_len} samples at "
                f"{spec.fs:g} Hz (R at sample {spec.r_index}); got {beat.size} at {fs:g} Hz: "
                "send r_index (the R-peak's sample) with beats of any length"
            )
        return int(spec.r_index or 0)
    r = _number(value, "r_index", row)
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
    others = [c for c in frame.columns if c not in (BEAT_COLUMN, *model.leads)]
    per_lead = [
        prepared_lead(frame[[lead, *others]].rename(columns={lead: "beat"}), model)
        for lead in model.leads
    ]
    return np.stack(per_lead, axis=1)


def prepared_lead(frame: pd.DataFrame, model: LoadedModel) -> np.ndarray:
    """One lead of a request (column ``beat``) laid out as ``model`` reads it."""
    if reads_recording(model):
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


def serum_answer_names(name: str, intervals: bool) -> list[str]:
    """A serum model's answer columns: ``<name>_mmol_l`` and, with ``intervals``,
    ``<name>_mmol_l_low`` / ``_high`` and each severity grade's ``<name>_p_…``."""
    names = [f"{name}_mmol_l"]
    if intervals:
        names += [f"{name}_mmol_l_low", f"{name}_mmol_l_high"]
        names += [f"{name}_{column}" for column in severity_columns(name)]
    return names


def serum_columns(model: LoadedModel, estimate: np.ndarray) -> dict[str, np.ndarray]:
    """A serum model's answer (:func:`serum_answer_names`) for each estimate."""
    values = [estimate]
    if model.interval is not None:
        values += [*model.interval.interval(estimate)]
        values += list(model.interval.probabilities(estimate).values())
    names = serum_answer_names(model.disorder, model.interval is not None)
    return dict(zip(names, values, strict=True))


def predict_outputs(models: Mapping[str, LoadedModel], frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`predict_frame`'s columns for every output of a model, by name (a regression's
    ``<name>_mmol_l``); the beats (a strip model's recordings) are parsed and prepared once."""
    first = next(iter(models.values()))
    x = prepared_request(frame, first)
    columns: dict[str, Any] = {}
    for name, model in models.items():
        raw = model.score(x)
        if model.disorder in SERUM_OUTPUTS:
            columns.update(serum_columns(model, answered(model, raw)))
            continue
        prob = answered(model, raw)
        columns.update(
            {
                name: prob,
                f"{name}_raw": raw.astype(np.float64),
                f"{name}_decision": prob >= model.threshold,
            }
        )
    return pd.DataFrame(columns)


class EcgmlBeatModel(PythonModel):
    """The served model: raw beats in (:data:`INPUT_COLUMNS`), probabilities out."""

    #: MLflow would wrap ``predict`` and read its type hints as a schema (and warn that there
    #: are none): the logged signature is the schema.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        models = read_model_files(
            Path(context.artifacts["weights"]), Path(context.artifacts["spec"]), "served model"
        )
        # Conv+BatchNorm folded, as ecgml.predict scores (same outputs, ~1.7x faster)
        self.models = {
            name: dataclasses.replace(m, model=fused_for_inference(m.model))
            for name, m in models.items()
        }
        self.model = next(iter(self.models.values()))

    # untyped on purpose: MLflow reads predict's type hints as a schema (the signature is logged)
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            return predict_outputs(self.models, as_frame(model_input))
        except BadRequest as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
