"""Score inputs with one model per disorder: beats prepared exactly as in training, batched.

Preparation is :func:`ecgml.inference.preprocess.prepare_beats`: each beat is resampled to the
model's ``fs`` when needed and laid out by :func:`ecgml.signal.align_beats` (training's own
alignment) with the model's ``r_index`` and ``seq_len``. Each beat's probability is the network's,
recalibrated by the calibrator stored with the model. A patient's probability is
the mean of its beats' (as in the evaluation's patient level); the decision is
``probability >= threshold`` with the threshold chosen on validation. A record champion (a set
model, ``unit: record`` in its spec) instead reads all of an input's beats together: one
probability per recording, each beat's attention weight in the JSON's ``contributions``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit

from ecgml import DISORDERS
from ecgml.beatstore import MAX_FS, MIN_FS
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import Calibrator
from ecgml.inference.inputs import (
    BeatInput,
    InputOptions,
    list_inputs,
    read_inputs,
    window_for,
)
from ecgml.inference.loading import load_available_models, load_models, load_serum_models
from ecgml.inference.preprocess import prepare_beats, prepare_strips
from ecgml.modelfile.kinds import reads_recording
from ecgml.modelfile.loaded import LoadedModel
from ecgml.modelfile.serving import answered, serum_answer_names, serum_columns
from ecgml.models.inference import fused_for_inference
from ecgml.models.record_models import strip_saliency
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.outputs import check_output_file, write_text_atomic
from ecgml.tracking.registry import CHAMPION, promote_command

log = logging.getLogger("ecgml.inference")

TABLE_ROWS = 40


@dataclasses.dataclass(frozen=True)
class RecordScore:
    """A record model's answer for one input: its recalibrated probability, or a serum model's
    estimate in mmol/L (None without a usable beat, for a strip model without a recording, or
    for an input lacking a lead the model reads) and each beat's weight in it (a set model's
    attention; empty for a strip model)."""

    probability: float | None
    weights: np.ndarray
    #: A strip model's decision share per second of the strip (empty for a set model).
    seconds: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


class UnitReader(ABC):
    """How ``ecgml.predict`` answers with the models of one unit (what one decision reads)."""

    #: One answer per beat (a patient's is their beats' mean), else one per recording.
    per_beat = False

    @abstractmethod
    def read(
        self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]
    ) -> dict[str, list[Any]]:
        """Per model, each entry's answer."""

    def warn(self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]) -> None:
        """Tell the entries these models cannot read why (nothing by default)."""
        return None


class BeatReader(UnitReader):
    """Beat models: each beat's recalibrated probability, or a serum model's estimate in
    mmol/L, every model's beats prepared and scored in one pass (:class:`SharedScorer`)."""

    per_beat = True

    def read(
        self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]
    ) -> dict[str, list[np.ndarray]]:
        return _per_entry(entries, models, answered)


class RecordReader(UnitReader):
    """Set models: an entry's beats of every lead the model reads, read together as one
    recording (no answer for an entry lacking one of them)."""

    def read(
        self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]
    ) -> dict[str, list[RecordScore]]:
        out: dict[str, list[RecordScore]] = {}
        for name, model in models.items():
            scores = []
            for entry in entries:
                beats = record_beats(entry, model)
                if beats is None or not len(beats):
                    scores.append(RecordScore(None, np.zeros(0)))
                    continue
                raw, weights = model.score_record(beats)
                scores.append(RecordScore(float(answered(model, np.array([raw]))[0]), weights))
            out[name] = scores
        return out

    def warn(self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]) -> None:
        warn_missing_leads(entries, models)


class StripReader(UnitReader):
    """Whole-strip models: an entry's recording read as one strip (``None`` where the input
    holds beats only, a beat file or a beat store's patient, or lacks a lead the model
    reads)."""

    def read(
        self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]
    ) -> dict[str, list[RecordScore]]:
        strips: dict[tuple[Any, ...], tuple[list[int], np.ndarray]] = {}  # prepared once per layout
        out: dict[str, list[RecordScore]] = {}
        for name, model in models.items():
            layout = (model.seq_len, model.fs, model.leads)
            if layout not in strips:
                strips[layout] = strip_inputs(entries, model)
            rows, x = strips[layout]
            raw = model.score(x) if len(x) else np.zeros(0)
            probability = dict(zip(rows, answered(model, raw).tolist(), strict=True))
            shares = dict(zip(rows, strip_shares(model, x), strict=True))
            out[name] = [
                RecordScore(probability.get(k), np.zeros(0), shares.get(k, np.zeros(0)))
                for k in range(len(entries))
            ]
        return out

    def warn(self, entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]) -> None:
        for entry in (e for e in entries if models and e.signal is None):
            entry.warnings.append(
                f"{', '.join(models)}: a whole-strip model reads the recording, and this "
                "input holds beats only: send the signal, image or WFDB record"
            )
        warn_missing_leads([e for e in entries if e.signal is not None], models)


#: The reader of each unit a logged model declares.
READERS: dict[str, UnitReader] = {
    "beat": BeatReader(),
    "record": RecordReader(),
    "strip": StripReader(),
}


def record_beats(entry: BeatInput, model: LoadedModel) -> np.ndarray | None:
    """``entry``'s beats of each lead ``model`` reads, laid out as in training (every lead by
    :func:`prepare_beats`, at the same R-peaks): ``(n, leads, seq_len)``; None when the input
    lacks a lead."""
    per_lead = entry.beats_of(model.leads)
    if per_lead is None:
        return None
    prepared = [prepare_beats(beats, entry.r_indices, entry.fs, model) for beats in per_lead]
    return np.stack(prepared, axis=1)


def strip_inputs(entries: Sequence[BeatInput], model: LoadedModel) -> tuple[list[int], np.ndarray]:
    """The entries a whole-strip model can read (a recording holding its leads) and their
    strips ``(n, leads, seq_len)`` (:func:`prepare_strips` of each lead)."""
    found = {k: e.strip_of(model.leads) for k, e in enumerate(entries)}
    readable = {k: signals for k, signals in found.items() if signals is not None}
    rows = list(readable)
    rates = [entries[k].signal_fs or model.fs for k in rows]
    per_lead = [
        prepare_strips([readable[k][c] for k in rows], rates, model)
        for c in range(len(model.leads))
    ]
    return rows, np.stack(per_lead, axis=1)


def strip_shares(model: LoadedModel, strips: np.ndarray) -> list[np.ndarray]:
    """Each prepared strip's (``(n, leads, seq_len)``) |gradient × input| share per second
    (training's ``segment_weights``: :func:`~ecgml.models.record_models.strip_saliency`), one
    array summing to 1 per strip."""
    if not len(strips):
        return []
    x = torch.from_numpy(model.channels_first(strips))
    return list(strip_saliency(model.model, x, model.fs).double().numpy())


def _per_entry(
    entries: Sequence[BeatInput],
    models: Mapping[str, LoadedModel],
    finish: Callable[[LoadedModel, np.ndarray], np.ndarray],
) -> dict[str, list[np.ndarray]]:
    """Per model, ``finish(model, scores)`` of every beat of every entry (scored in one pass),
    split back into one array per entry."""
    shared = SharedScorer(entries)
    raw = shared.raw_scores(models)
    return {name: shared.per_entry(finish(model, raw[name])) for name, model in models.items()}


class SharedScorer:
    """Raw scores of every beat of ``entries`` for several models, each piece of work done
    once: beats are prepared once per layout (:attr:`LoadedModel.layout_key`), and a network
    that several models read different outputs of (a multi-label champion answering every
    disorder) runs once per layout, each model taking its own output."""

    def __init__(self, entries: Sequence[BeatInput]) -> None:
        self.entries = entries
        self._prepared: dict[tuple[Any, ...], np.ndarray] = {}
        self._logits: dict[tuple[Any, ...], np.ndarray] = {}

    def per_entry(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` of every beat (entries in order) split into one array per entry."""
        return np.split(values, np.cumsum([e.n_beats for e in self.entries])[:-1])

    def prepared(self, model: LoadedModel) -> np.ndarray:
        key = model.layout_key
        if key not in self._prepared:
            parts = [
                prepare_beats(e.beats, e.r_indices, e.fs, model) for e in self.entries if e.n_beats
            ]
            self._prepared[key] = (
                np.concatenate(parts) if parts else np.zeros((0, model.seq_len), np.float32)
            )
        return self._prepared[key]

    def raw_scores(self, models: Mapping[str, LoadedModel]) -> dict[str, np.ndarray]:
        out = {}
        for name, model in models.items():
            x = self.prepared(model)
            net = model.model
            if not isinstance(net, BeatProbabilityModel) or len(x) == 0:
                out[name] = model.score(x)
                continue
            key = (id(net.backbone), model.layout_key)
            if key not in self._logits:
                self._logits[key] = model.logits(x)
            out[name] = expit(self._logits[key][:, net.index]).astype(np.float32)
        return out


def model_source(model: LoadedModel) -> str:
    """Which registered model answered: its URI and version."""
    uri, version = getattr(model, "uri", ""), getattr(model, "version", None)
    return f"{uri} (v{version})" if version else str(uri)


def serum_answer(
    model: LoadedModel | None, name: str, estimates: np.ndarray
) -> dict[str, np.ndarray]:
    """``<name>_mmol_l`` per estimate and, for a model with logged intervals, its interval and
    severity probabilities (:func:`~ecgml.modelfile.serving.serum_columns`)."""
    values = np.asarray(estimates, dtype=np.float64)
    if model is None:
        return {f"{name}_mmol_l": values}
    return serum_columns(model, values)


def serum_scalars(
    model: LoadedModel | None, name: str, estimate: float | None
) -> dict[str, float | None]:
    """One entry's serum answer (``None`` everywhere when it has no estimate)."""
    if estimate is None:
        with_interval = model is not None and model.interval is not None
        return {column: None for column in serum_answer_names(name, with_interval)}
    return {k: float(v[0]) for k, v in serum_answer(model, name, np.array([estimate])).items()}


def entry_result(
    entry: BeatInput,
    probs: Mapping[str, np.ndarray],
    models: Mapping[str, LoadedModel],
    serum: Mapping[str, np.ndarray] | None = None,
    serum_models: Mapping[str, LoadedModel] | None = None,
    records: Mapping[str, RecordScore] | None = None,
) -> dict[str, Any]:
    """The JSON object of one input (or one beat-store patient); with serum models, their
    mean estimate over the beats as ``<name>_mmol_l`` (and per beat; a serum record model's
    one estimate from the recording). A beat model's probability is the mean of the beats'; a
    record model's (``records``) is its one decision from all of them, each beat's weight in it
    under ``contributions``."""
    serum, serum_models, records = serum or {}, serum_models or {}, records or {}
    beat_serum = {n: serum_answer(serum_models.get(n), n, v) for n, v in serum.items()}
    per_beat = [
        {
            "beat_id": beat_id,
            "r_peak_s": r_peak_s,
            "probabilities": {d: float(probs[d][k]) for d in models if d in probs},
            **(
                {"contributions": weights}
                if (
                    weights := {
                        d: float(r.weights[k]) for d, r in records.items() if len(r.weights)
                    }
                )
                else {}
            ),
            **{c: float(v[k]) for columns in beat_serum.values() for c, v in columns.items()},
        }
        for k, (beat_id, r_peak_s) in enumerate(zip(entry.beat_ids, entry.r_peak_s, strict=True))
    ]
    usable = entry.n_beats > 0
    patient = {
        d: records[d].probability
        if d in records
        else (float(np.mean(probs[d])) if usable else None)
        for d in models
    }
    return {
        "input": entry.input,
        "patient_id": entry.patient_id,
        "n_beats": entry.n_beats,
        "probabilities": patient,
        "decisions": {
            d: (bool(p >= models[d].threshold) if p is not None else None)
            for d, p in patient.items()
        },
        "thresholds": {d: m.threshold for d, m in models.items()},
        "units": {d: m.unit for d, m in models.items()},
        "calibration": {
            d: Calibrator.from_dict(m.calibration).describe() for d, m in models.items()
        },
        **{
            column: value
            for n, v in serum.items()
            for column, value in serum_scalars(
                serum_models.get(n), n, float(np.mean(v)) if usable else None
            ).items()
        },
        **{
            column: value
            for n in serum_models
            if n in records
            for column, value in serum_scalars(serum_models[n], n, records[n].probability).items()
        },
        "models": {
            **{d: model_source(m) for d, m in models.items()},
            **{n: model_source(m) for n, m in serum_models.items()},
        },
        "per_beat": per_beat,
        **(
            {"strip_contributions": strips}
            if (
                strips := {
                    d: [round(float(v), 6) for v in r.seconds]
                    for d, r in records.items()
                    if len(r.seconds)
                }
            )
            else {}
        ),
        "warnings": list(entry.warnings),
    }


def predict_entries(
    entries: Sequence[BeatInput],
    models: Mapping[str, LoadedModel],
    saliency_dir: Path | None = None,
    serum_models: Mapping[str, LoadedModel] | None = None,
) -> list[dict[str, Any]]:
    """Results for already-read inputs (optionally one saliency overlay PNG per entry)."""
    serum_models = serum_models or {}
    per_beat: dict[str, list[Any]] = {}
    records: dict[str, list[Any]] = {}
    for unit, chosen in by_unit({**models, **serum_models}).items():
        reader = READERS[unit]
        (per_beat if reader.per_beat else records).update(reader.read(entries, chosen))
        reader.warn(entries, chosen)
    beat_scores = {d: v for d, v in per_beat.items() if d in models}
    values = {n: v for n, v in per_beat.items() if n in serum_models}
    results = [
        entry_result(
            entry,
            {d: beat_scores[d][k] for d in beat_scores},
            models,
            {n: values[n][k] for n in values},
            serum_models,
            {d: records[d][k] for d in records},
        )
        for k, entry in enumerate(entries)
    ]
    if saliency_dir is not None:
        # deferred: overlays pull ecgml.explain (matplotlib, Captum: ~1 s), only for saliency=true
        from ecgml.inference.saliency import write_overlay

        used: set[str] = set()
        # overlays: the models that read lead-II beats (a strip model reads the recording; a
        # multi-lead model's beats are explained by their weights under ``contributions``)
        beat_read = {
            d: m for d, m in models.items() if not reads_recording(m) and m.leads == ("II",)
        }
        for entry, result in zip(entries, results, strict=True):
            if entry.n_beats and beat_read:
                path = saliency_dir / f"{unique_stem(entry, used)}.png"
                result["saliency_png"] = str(write_overlay(entry, result, beat_read, path))
    return results


def by_unit(models: Mapping[str, LoadedModel]) -> dict[str, dict[str, LoadedModel]]:
    """``models`` grouped by the unit each declares."""
    groups: dict[str, dict[str, LoadedModel]] = {}
    for name, model in models.items():
        groups.setdefault(model.unit, {})[name] = model
    return groups


def warn_missing_leads(entries: Sequence[BeatInput], models: Mapping[str, LoadedModel]) -> None:
    """Say, on each input that lacks a lead a multi-lead model reads, which and how to fix it
    (that model gives the input no answer)."""
    for entry in entries:
        if not entry.n_beats:
            continue
        for name, model in models.items():
            missing = entry.missing_leads(model.leads)
            if missing:
                held = ", ".join(entry.lead_signals) or "lead II only"
                entry.warnings.append(
                    f"{name}: the model reads leads {', '.join(model.leads)} and this input "
                    f"lacks {', '.join(missing)} (it holds {held}): send a signal CSV or WFDB "
                    "record with those leads, or a page whose leads span the whole strip (12×1)"
                )


def unique_stem(entry: BeatInput, used: set[str]) -> str:
    base = Path(entry.input).stem
    if entry.patient_id != base:
        base = f"{base}-{entry.patient_id}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "input"
    candidate, k = stem, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}-{k}"
    used.add(candidate)
    return candidate


def predict_path(
    path: Path | str,
    models: Mapping[str, LoadedModel],
    options: InputOptions | None = None,
    saliency_dir: Path | None = None,
    progress: bool = False,
    serum_models: Mapping[str, LoadedModel] | None = None,
) -> list[dict[str, Any]]:
    """Read ``path`` (file, beat store or folder) and score it with ``models`` (and the serum
    ``serum_models``)."""
    every = [*models.values(), *(serum_models or {}).values()]
    options = dataclasses.replace(options or InputOptions(), window=window_for(every))
    entries = read_inputs(list_inputs(Path(path)), options, progress=progress)
    return predict_entries(entries, models, saliency_dir, serum_models)


# --------------------------------------------------------------------------- output


def write_json_atomic(results: list[dict[str, Any]], path: Path) -> None:
    write_text_atomic(path, json.dumps(results, indent=2) + "\n")


def format_table(results: Sequence[Mapping[str, Any]], models: Mapping[str, LoadedModel]) -> str:
    """A short human-readable summary: one row per entry, ``p`` and ``+``/``-`` per disorder."""
    disorders = list(models)
    header = f"{'input':<28} {'patient':<12} {'beats':>5}  " + "  ".join(
        f"{d:>14}" for d in disorders
    )
    lines = [header]
    for result in results[:TABLE_ROWS]:
        cells = []
        for d in disorders:
            p = result["probabilities"][d]
            mark = "+" if result["decisions"][d] else "-"
            cells.append(f"{'n/a':>14}" if p is None else f"{p:>12.3f} {mark}")
        name = Path(result["input"]).name[-28:]
        lines.append(
            f"{name:<28} {str(result['patient_id'])[:12]:<12} {result['n_beats']:>5}  "
            + "  ".join(cells)
        )
    if len(results) > TABLE_ROWS:
        lines.append(f"… {len(results) - TABLE_ROWS} more (see the JSON)")
    thresholds = ", ".join(f"{d} {m.threshold:.3f}" for d, m in models.items())
    lines.append(f"(+ = probability ≥ threshold: {thresholds})")
    warned = [r for r in results if r["warnings"]]
    for result in warned[:TABLE_ROWS]:
        lines.append(f"warning: {Path(result['input']).name}: {'; '.join(result['warnings'])}")
    return "\n".join(lines)


def model_spec(value: Any) -> str | dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if value is None or str(value).strip() == "":
        return CHAMPION
    return str(value)


def beat_rate(value: Any) -> float | None:
    """``fs=`` of bare beat CSVs: a rate in Hz (50–10,000) or unset."""
    if value is None or str(value).strip() == "":
        return None
    try:
        fs = float(value)
    except (TypeError, ValueError):
        fs = float("nan")
    if not MIN_FS <= fs <= MAX_FS:
        raise EcgmlError(
            f"fs={value} is not a sampling rate in Hz ({MIN_FS:g}–{MAX_FS:,.0f}): e.g. fs=500"
        )
    return fs


def fused_models(models: Mapping[str, LoadedModel]) -> dict[str, LoadedModel]:
    """Each model with its Conv→BatchNorm pairs folded (:func:`fused_for_inference`); a network
    several models share (a multi-label model's outputs) is fused once and stays shared, so
    :class:`SharedScorer` runs it once."""
    fused: dict[int, Any] = {}
    out = {}
    for name, model in models.items():
        net = model.model
        if isinstance(net, BeatProbabilityModel):
            if id(net.backbone) not in fused:
                fused[id(net.backbone)] = fused_for_inference(net.backbone)
            backbone = fused[id(net.backbone)]
            out[name] = dataclasses.replace(
                model, model=BeatProbabilityModel(backbone, net.index).eval()
            )
        else:
            out[name] = dataclasses.replace(model, model=fused_for_inference(net))
    return out


def disorder_names(value: Any) -> list[str]:
    """``disorders=`` as a list of names: a list, one name, or empty/null (all three)."""
    if not value:
        return list(DISORDERS)
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(d) for d in value]
    raise EcgmlError(
        f"disorders={value!r} is not a list of disorder names: pass e.g. "
        f"disorders=[{','.join(DISORDERS)}]"
    )


def with_missing_models(result: dict[str, Any], missing: Sequence[str]) -> None:
    """A disorder without a model: ``null`` probability and decision, and the commands that
    create its model under ``missing_models`` (nothing when every disorder answered)."""
    if not missing:
        return
    for disorder in missing:
        result["probabilities"][disorder] = None
        result["decisions"][disorder] = None
    result["missing_models"] = {d: promote_command(d) for d in missing}


def run_predict(cfg: Any) -> list[dict[str, Any]]:
    """``python -m ecgml.predict``: load the models once, score ``cfg.input``, write the JSON."""
    if not cfg.get("input"):
        raise EcgmlError("input=PATH is required: an image, a CSV, a WFDB .hea or a folder")
    named = bool(cfg.get("disorders"))  # none named: every disorder that has a model answers
    disorders = disorder_names(cfg.get("disorders"))
    unknown = sorted(set(disorders) - set(DISORDERS))
    if unknown:
        raise EcgmlError(f"disorders={unknown} unknown: use some of {', '.join(DISORDERS)}")
    input_path = Path(str(cfg.input)).expanduser()
    list_inputs(input_path)  # fail on a wrong path before loading anything
    if cfg.get("output"):
        check_output_file(Path(str(cfg.output)).expanduser())
    beat_fs = beat_rate(cfg.get("fs"))
    start = time.perf_counter()
    chosen = model_spec(cfg.get("models"))
    allow_pickle = bool(cfg.get("allow_pickle", False))
    missing: list[str] = []
    if not named and isinstance(chosen, str) and ":/" not in chosen:
        loaded, missing = load_available_models(
            disorders, chosen, cfg.get("tracking_uri"), allow_pickle
        )
    else:
        loaded = load_models(disorders, chosen, cfg.get("tracking_uri"), allow_pickle)
    models = fused_models(loaded)
    if missing:
        log.warning(
            "no '%s' model for %s: their probabilities are null (missing_models says how to "
            "create one)",
            chosen,
            ", ".join(missing),
        )
    serum_models = (
        load_serum_models(chosen, cfg.get("tracking_uri"))
        if isinstance(chosen, str) and ":/" not in chosen
        else {}
    )
    loaded_s = time.perf_counter() - start
    output = Path(str(cfg.output)).expanduser() if cfg.get("output") else None
    saliency_dir = None
    if cfg.get("saliency"):
        default = output.with_name(f"{output.stem}_saliency") if output else Path("saliency")
        saliency_dir = Path(str(cfg.get("saliency_dir") or default)).expanduser()
    image = cfg.get("image") or {}
    options = InputOptions(
        image_fs=float(image.get("fs", 500)),
        layout=str(image.get("layout", "auto")),
        dpi=image.get("dpi"),
        beat_fs=beat_fs,
        allow_implausible_amplitude=bool(cfg.get("allow_implausible_amplitude", False)),
    )
    start = time.perf_counter()
    results = predict_path(
        input_path, models, options, saliency_dir, bool(cfg.get("progress")), serum_models
    )
    scored_s = time.perf_counter() - start
    for result in results:
        with_missing_models(result, missing)
    if output is not None:
        write_json_atomic(results, output)
    else:
        print(json.dumps(results, indent=2), flush=True)
    summary = ", ".join(
        f"{d} {'(multilabel) ' if 'ecgml-multilabel' in m.uri else ''}v{m.version or '?'}"
        for d, m in {**models, **serum_models}.items()
    )
    print(
        f"ecgml predict: {len(results)} entr{'y' if len(results) == 1 else 'ies'}, "
        f"models {summary} (loaded in {loaded_s:.1f} s, scored in {scored_s:.1f} s)\n"
        + format_table(results, models)
        + (f"\nwritten: {output}" if output else "")
        + (f"\nsaliency overlays: {saliency_dir}" if saliency_dir else ""),
        file=sys.stderr,
        flush=True,
    )
    return results
