"""Load logged ecgml models for scoring — without unpickling and without running store code.

A model logged by this ecgml (:mod:`ecgml.pipeline.beat_model`) is rebuilt from ecgml's own
backbone classes and its safetensors weights. Models logged by ecgml before 2026-12 were
pickled (``mlflow.pytorch``): loading one can run arbitrary code, so it is refused unless the
caller passes ``allow_pickle=True`` (``ecgml.predict allow_pickle=true``), which loads it with
a warning. Re-training and promoting replaces such a model for good.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ecgml.tracking.registry as registry_module
from ecgml.errors import EcgmlError
from ecgml.modelfile.files import read_model_dir, single_disorder
from ecgml.modelfile.loaded import LoadedModel
from ecgml.modelfile.spec import SERUM_OUTPUTS, is_beat_model_dir
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.tracking import resolve_store
from ecgml.tracking.registry import (
    CHAMPION,
    ModelRef,
    downloaded_model,
    import_mlflow,
    resolve_model_refs,
)

log = logging.getLogger("ecgml.inference")


def _legacy_pickled(local: Path, meta: dict[str, Any], uri: str) -> LoadedModel:
    """A model of the old pickle format (``allow_pickle=True`` only)."""
    log.warning(
        "model %s is a pickled model of an older ecgml: loading it with allow_pickle=true runs "
        "whatever code it holds; retrain and promote to replace it",
        uri,
    )
    # the class path those pickles name (it moved to ecgml.models.scoring)
    registry_module.BeatProbabilityModel = BeatProbabilityModel  # type: ignore[attr-defined]
    module = import_mlflow().pytorch.load_model(str(local), map_location="cpu")  # opt-in pickle
    return LoadedModel(
        disorder=str(meta["disorder"]),
        model=module.eval(),
        seq_len=int(meta["seq_len"]),
        fs=float(meta["fs"]),
        r_index=None if meta.get("r_index") is None else int(meta["r_index"]),
        align=str(meta.get("align", "r_peak")),
        threshold=float(meta["threshold"]),
        uri=uri,
        calibration=dict(meta.get("calibration") or {"method": "none"}),
        baseline=str(meta.get("baseline", "none")),
    )


def read_downloaded(
    local: Path, meta: Mapping[str, Any], flavors: Any, uri: str, allow_pickle: bool
) -> dict[str, LoadedModel]:
    """Every output of a downloaded logged model, by name (a binary model: its disorder)."""
    if is_beat_model_dir(local):
        return read_model_dir(local, uri)
    if "seq_len" not in meta:
        raise EcgmlError(
            f"model {uri} was not logged by ecgml (no ecgml spec in it): promote a run "
            "trained with `python -m ecgml.train`"
        )
    if "pytorch" in flavors and allow_pickle:
        legacy = _legacy_pickled(local, dict(meta), uri)
        return {legacy.disorder: legacy}
    raise EcgmlError(
        f"model {uri} was saved with pickle by an older ecgml, and loading it could run "
        "any code it holds: retrain and promote it, or pass allow_pickle=true if you trust "
        "every writer of this store"
    )


def load_model_uri(uri: str, tracking_uri: str, allow_pickle: bool = False) -> LoadedModel:
    """A one-disorder ecgml model from a model URI (``models:/name@alias``, ``models:/m-…``)."""
    with downloaded_model(uri, tracking_uri) as (local, meta, flavors):
        return single_disorder(read_downloaded(local, meta, flavors, uri, allow_pickle), uri)


def load_outputs(
    ref: ModelRef, names: Sequence[str], tracking_uri: str | None, allow_pickle: bool = False
) -> dict[str, LoadedModel]:
    """The outputs ``names`` of the model behind ``ref``, whatever its task (a disorder's own
    model, a multi-label model, a serum regression); a missing one is a one-line error."""
    uri_store = resolve_store(tracking_uri).tracking_uri
    with downloaded_model(ref.uri, uri_store) as (local, meta, flavors):
        outputs = read_downloaded(local, meta, flavors, ref.uri, allow_pickle)
    missing = [n for n in names if n not in outputs]
    if missing and len(outputs) == 1:
        raise EcgmlError(
            f"model {ref.uri} is a {next(iter(outputs))} model, asked for {missing[0]}: point "
            f"models.{missing[0]} at a {missing[0]} model"
        )
    if missing:
        raise EcgmlError(
            f"model {ref.uri} has no output for {', '.join(missing)} (it has {list(outputs)}): "
            "promote a model trained with every disorder"
        )
    for model in outputs.values():
        model.run_id, model.version = ref.run_id, ref.version
    return {n: outputs[n] for n in names}


def load_models(
    disorders: Sequence[str],
    spec: str | Mapping[str, str] = CHAMPION,
    tracking_uri: str | None = None,
    allow_pickle: bool = False,
) -> dict[str, LoadedModel]:
    """Load one model per disorder; ``spec`` is an alias for all, or ``{disorder: alias-or-URI}``.

    With an alias for all, a multi-label model registered as ``ecgml-multilabel`` under that
    alias answers for every disorder (one network, each output by name); otherwise each
    disorder's own ``ecgml-<disorder>`` model does. Every missing model is named in one error
    before anything is loaded.
    """
    if isinstance(spec, str) and ":/" not in spec:
        multilabel = find_task_ref("multilabel", spec, tracking_uri)
        if multilabel is not None:
            return load_outputs(multilabel, disorders, tracking_uri)
    uri_store, refs = resolve_model_refs(disorders, spec, tracking_uri)
    found: dict[str, LoadedModel] = {}
    for ref in refs:
        found.update(load_outputs(ref, [ref.disorder], uri_store, allow_pickle))
    return found


def load_available_models(
    disorders: Sequence[str],
    alias: str,
    tracking_uri: str | None = None,
    allow_pickle: bool = False,
) -> tuple[dict[str, LoadedModel], list[str]]:
    """``(the models registered under alias, the disorders without one)``: what
    ``ecgml.predict`` uses when no disorder was named. A multi-label champion answers for every
    disorder; when no disorder has a model, the one-line error of :func:`load_models`."""
    if find_task_ref("multilabel", alias, tracking_uri) is not None:
        return load_models(disorders, alias, tracking_uri, allow_pickle), []
    missing = []
    for disorder in disorders:
        try:
            resolve_model_refs([disorder], alias, tracking_uri)
        except EcgmlError:
            missing.append(disorder)
    present = [d for d in disorders if d not in missing]
    if not present:
        resolve_model_refs(disorders, alias, tracking_uri)  # raises, naming every one and the fix
    return load_models(present, alias, tracking_uri, allow_pickle), missing


def find_task_ref(task: str, alias: str, tracking_uri: str | None) -> ModelRef | None:
    """``ecgml-<task>@alias`` when it is registered, else None."""
    from mlflow.exceptions import MlflowException

    try:
        _, refs = resolve_model_refs([task], alias, tracking_uri)
    except (EcgmlError, MlflowException):
        return None
    return refs[0]


def load_serum_models(alias: str, tracking_uri: str | None) -> dict[str, LoadedModel]:
    """The serum regressions registered under ``alias`` (``ecgml-potassium``,
    ``ecgml-sodium``), by name; none registered: ``{}``."""
    found: dict[str, LoadedModel] = {}
    for name in SERUM_OUTPUTS:
        ref = find_task_ref(name, alias, tracking_uri)
        if ref is not None:
            found.update(load_outputs(ref, [name], tracking_uri))
    return found


def load_disorder_model(
    disorder: str,
    alias: str = CHAMPION,
    tracking_uri: str | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """The model registered as ``ecgml-<disorder>`` under ``alias`` (or a ``models:/…`` URI)."""
    return load_models([disorder], alias, tracking_uri, allow_pickle)[disorder]
