"""ONNX export: every backbone, the same numbers as torch, the recalibration inside the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import Calibrator
from ecgml.inference.onnx_export import export_model
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models.export import SlicedAdaptivePool1d
from ecgml.models.factory import beat_backbones, build_backbone
from ecgml.models.scoring import BeatProbabilityModel
from tests.conftest import compose_once

SEQ, R = 450, 125


@pytest.mark.parametrize("length", [7, 57, 113, 225])
@pytest.mark.parametrize("bins", [1, 3, 8])
def test_sliced_pools_equal_torchs_adaptive_pools(length: int, bins: int) -> None:
    x = torch.randn(5, 4, length)
    torch.testing.assert_close(SlicedAdaptivePool1d(bins, "avg")(x), nn.AdaptiveAvgPool1d(bins)(x))
    torch.testing.assert_close(SlicedAdaptivePool1d(bins, "max")(x), nn.AdaptiveMaxPool1d(bins)(x))


def loaded(name: str, calibration: dict) -> LoadedModel:
    torch.manual_seed(0)
    scorer = BeatProbabilityModel(build_backbone(name, 1, 1, SEQ)).eval()
    return LoadedModel(
        "hyperkalemia",
        scorer,
        SEQ,
        500.0,
        R,
        "r_peak",
        0.3,
        f"models:/{name}",
        calibration=calibration,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", beat_backbones())
def test_every_backbone_exports_and_onnxruntime_matches_torch(name: str, tmp_path: Path) -> None:
    calibration = {"method": "temperature", "params": {"temperature": 1.7}}
    model = loaded(name, calibration)
    report = export_model(model, tmp_path / f"{name}.onnx", n_check=1000)
    assert report.max_abs_diff <= 1e-5 and report.calibration_in_graph
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for n in (1, 256):  # the batch dimension is dynamic
        x = np.random.default_rng(n).normal(0, 0.4, (n, 1, SEQ)).astype(np.float32)
        prob, raw = session.run(["probability", "probability_raw"], {"beats": x})
        np.testing.assert_allclose(raw, model.score(x[:, 0]), atol=1e-5)
        expected = Calibrator.from_dict(calibration).apply(model.score(x[:, 0]))
        np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_metadata_props_say_how_to_prepare_beats(tmp_path: Path) -> None:
    model = loaded("resnet1d", {"method": "platt", "params": {"a": 0.8, "b": -0.2}})
    report = export_model(model, tmp_path / "m.onnx", n_check=64)
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert props["ecgml.seq_len"] == str(SEQ) and props["ecgml.r_index"] == str(R)
    assert float(props["ecgml.threshold"]) == 0.3 and props["ecgml.baseline"] == "none"
    assert json.loads(props["ecgml.calibration"])["method"] == "platt"
    assert props["ecgml.calibration_in_graph"] == "true"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left beside it


def test_features_lr_run_and_bad_arguments_are_one_line(tmp_path: Path) -> None:
    from ecgml.cli.export import export

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    client.log_param(run_id, "model.name", "features_lr")
    cases = {
        "it has no network to export": [f"run_id={run_id}", f"out={tmp_path / 'a.onnx'}"],
        "format=tflite is not supported": [
            f"run_id={run_id}",
            "format=tflite",
            f"out={tmp_path / 'a.onnx'}",
        ],
        "must end in .onnx": [f"run_id={run_id}", f"out={tmp_path / 'a.bin'}"],
        "exactly one of run_id": [f"out={tmp_path / 'a.onnx'}"],
    }
    for message, overrides in cases.items():
        cfg = compose_once(*overrides, f"tracking_uri={uri}", name="export")
        with pytest.raises(EcgmlError, match=message):
            export(cfg)
