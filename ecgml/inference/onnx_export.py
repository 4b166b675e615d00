"""``ecgml.export``: a logged model as an ONNX file that any runtime scores identically.

The graph takes prepared beats — ``beats`` float32 ``(n, 1, seq_len)``, laid out as
:func:`ecgml.signal.prepare_beats` does (R at ``r_index``, referenced, zero-padded) — and
returns ``probability`` (recalibrated, what the threshold applies to) and ``probability_raw``.
Everything a caller needs to prepare beats and read the outputs is in the file's metadata
properties (``ecgml.seq_len``, ``ecgml.fs``, ``ecgml.r_index``, ``ecgml.baseline``,
``ecgml.threshold``, ``ecgml.calibration``, …). Every export is checked: onnxruntime must
reproduce torch within ``tolerance`` on random beats, or no file is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import ecgml
from ecgml.errors import EcgmlError
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models.export import INPUT_NAME, OUTPUT_NAMES, export_onnx, export_ready

DEFAULT_CHECK_BEATS = 1000
DEFAULT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float
    n_checked: int
    calibration_in_graph: bool


def metadata_props(model: LoadedModel, in_graph: bool) -> dict[str, str]:
    """The ONNX metadata properties: how to prepare beats and read the outputs."""
    return {
        "ecgml.version": ecgml.__version__,
        "ecgml.disorder": model.disorder,
        "ecgml.seq_len": str(model.seq_len),
        "ecgml.fs": repr(float(model.fs)),
        "ecgml.r_index": "" if model.r_index is None else str(model.r_index),
        "ecgml.align": model.align,
        "ecgml.baseline": model.baseline,
        "ecgml.threshold": repr(float(model.threshold)),
        "ecgml.calibration": json.dumps(model.calibration),
        "ecgml.calibration_in_graph": str(in_graph).lower(),
        "ecgml.input": f"{INPUT_NAME}: float32 (n, 1, {model.seq_len}), prepared beats in mV",
        "ecgml.outputs": ", ".join(OUTPUT_NAMES),
        "ecgml.source": model.uri,
    }


def _write_props(path: Path, props: dict[str, str]) -> None:
    import onnx

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))


def parity(model: torch.nn.Module, path: Path, seq_len: int, n: int, seed: int = 0) -> float:
    """Largest |onnxruntime − torch| over both outputs on ``n`` random beats (batches of 256)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    beats = np.random.default_rng(seed).normal(0.0, 0.4, (n, 1, seq_len)).astype(np.float32)
    worst = 0.0
    for start in range(0, n, 256):
        chunk = beats[start : start + 256]
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
        with torch.inference_mode():
            want = [t.numpy() for t in model(torch.from_numpy(chunk))]
        worst = max(worst, *(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True)))
    return worst


def export_model(
    model: LoadedModel,
    out: Path,
    n_check: int = DEFAULT_CHECK_BEATS,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportReport:
    """Export ``model`` to ``out`` (written only after the parity check passes)."""
    ready, in_graph = export_ready(model.model, model.calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        export_onnx(ready, model.seq_len, tmp)
        _write_props(tmp, metadata_props(model, in_graph))
        worst = parity(ready, tmp, model.seq_len, n_check)
        if not worst <= tolerance:
            raise EcgmlError(
                f"ONNX export of {model.uri}: onnxruntime differs from torch by {worst:.2e} "
                f"(> {tolerance:g}) on {n_check} beats; the file was not written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(out, worst, n_check, in_graph)
