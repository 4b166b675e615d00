"""Writing and reading a logged model's two files: ``weights.safetensors`` (tensors, no
pickle) and ``ecgml_model.json`` (:class:`~ecgml.modelfile.spec.ModelSpec`, its backbone class
through the one gate of :mod:`ecgml.trust`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.modelfile.loaded import LoadedModel
from ecgml.modelfile.spec import FORMAT, SPEC_FILE, WEIGHTS_FILE, ModelSpec, read_spec


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
    scorer = spec.kind.scorer(spec, source)
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


def single_disorder(models: dict[str, LoadedModel], uri: str) -> LoadedModel:
    """The one output of a one-disorder (binary) model; a multi-label or serum model is a
    one-line error: it answers as a champion of its task, not of one disorder."""
    if len(models) == 1:
        (model,) = models.values()
        if not math.isnan(model.threshold):  # a serum regression has no decision threshold
            return model
    task = "multilabel" if len(models) > 1 else next(iter(models), "unknown")
    raise EcgmlError(
        f"{uri} is a task={task} model, not one disorder's: ecgml.predict uses it as a "
        "champion of its task"
    )


def read_model_files(weights: Path, spec_file: Path, uri: str) -> dict[str, LoadedModel]:
    """One :class:`LoadedModel` per output, by name: the disorder of a binary model; each
    disorder of a multi-label model (sharing one network, each with its own threshold and
    calibration); the serum value (``potassium`` / ``sodium``) of a regression."""
    spec = read_spec(spec_file, uri)
    scorer = load_scorer(weights, spec, uri)
    common: dict[str, Any] = {
        "seq_len": spec.seq_len,
        "fs": spec.fs,
        "r_index": spec.r_index,
        "align": spec.align,
        "uri": uri,
        "baseline": spec.baseline,
        "unit": spec.unit,
        "leads": tuple(spec.leads),
    }
    return spec.kind.outputs(spec, scorer, common)


def read_model_dir(folder: Path, uri: str) -> dict[str, LoadedModel]:
    """A downloaded logged model folder (``MLmodel`` + ``artifacts/``) of any task: one
    :class:`LoadedModel` per output (:func:`read_model_files`)."""
    artifacts = Path(folder) / "artifacts"
    return read_model_files(artifacts / WEIGHTS_FILE, artifacts / SPEC_FILE, uri)
