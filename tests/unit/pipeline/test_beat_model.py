"""The logged model format: no pickle, no code from the store, the same numbers after a trip."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.inference.loading import load_model_uri
from ecgml.models.ensemble import MeanProbabilityEnsemble
from ecgml.models.factory import build_backbone
from ecgml.models.scoring import BeatProbabilityModel, scorer_from_config
from ecgml.pipeline.beat_model import (
    BadRequest,
    ModelSpec,
    log_beat_model,
    model_spec,
    predict_frame,
    read_model_files,
    single_disorder,
    write_model_files,
)
from ecgml.tracking.registry import tracking_uri_set

SEQ, R, FS = 450, 125, 500.0


@pytest.fixture()
def store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("models", artifact_location=str(tmp_path / "art"))
    return uri, client, experiment


def beats(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (n, SEQ)).astype(np.float32)


@pytest.mark.parametrize("members", [1, 2])
def test_logged_model_round_trips_to_the_same_probabilities(store, compose_cfg, members) -> None:
    uri, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    cfg = compose_cfg("disorder=hyperkalemia")
    torch.manual_seed(0)
    parts = [build_backbone(cfg.model, 1, 1, SEQ).eval() for _ in range(members)]
    backbone = parts[0] if members == 1 else MeanProbabilityEnsemble(parts).eval()
    calibration = {"method": "temperature", "params": {"temperature": 2.0}}
    spec = model_spec(cfg, SEQ, FS, R, 0.4, calibration, ensemble=members)
    model_id = log_beat_model(uri, run_id, backbone, spec)
    loaded = load_model_uri(f"models:/{model_id}", uri)
    x = beats(64)
    with torch.no_grad():
        expected = BeatProbabilityModel(backbone)(torch.from_numpy(x).unsqueeze(1)).numpy()
    np.testing.assert_allclose(loaded.score(x), expected, rtol=1e-5, atol=1e-7)
    assert (loaded.threshold, loaded.r_index, loaded.calibration) == (0.4, R, calibration)
    # the logged model sits in the run's experiment, linked to the run, status untouched
    logged = client.get_logged_model(model_id)
    assert logged.experiment_id == experiment and logged.source_run_id == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    frame = pd.DataFrame({"beat": list(x[:3].astype(float)), "r_index": [R] * 3})
    out = predict_frame(loaded, frame)
    np.testing.assert_allclose(out["hyperkalemia_raw"], expected[:3], rtol=1e-5)
    z = np.log(expected[:3] / (1 - expected[:3]))
    np.testing.assert_allclose(out["hyperkalemia"], 1 / (1 + np.exp(-z / 2.0)), rtol=1e-4)


class Payload(nn.Module):
    """A module whose unpickling runs code: what a hostile store writer would log."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickled_model_is_refused_and_its_payload_never_runs(store, tmp_path) -> None:
    import mlflow.pytorch

    uri, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    marker = tmp_path / "payload-ran"
    meta = {"seq_len": SEQ, "fs": FS, "r_index": R, "threshold": 0.5, "disorder": "hyperkalemia"}
    with warnings.catch_warnings(), tracking_uri_set(uri):
        warnings.simplefilter("ignore")
        info = mlflow.pytorch.log_model(
            Payload(marker),
            name="model",
            run_id=run_id,
            metadata=meta,
            serialization_format="pickle",
            pip_requirements=["torch"],
        )
    model_uri = f"models:/{info.model_id}"
    assert not marker.exists()  # logging did not load it (no requirement inference)
    with pytest.raises(EcgmlError, match="saved with pickle .* allow_pickle=true"):
        load_model_uri(model_uri, uri)
    assert not marker.exists()  # refused before anything was unpickled
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("ignore")
        load_model_uri(model_uri, uri, allow_pickle=True)  # the explicit opt-in unpickles
    assert marker.exists()


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ({"_target_": "os.system", "command": "touch /tmp/x"}, "is not a class of ecgml.models"),
        (
            {"_target_": "ecgml.models.backbones.cnn1d.CNN1D", "act": {"_target_": "os.system"}},
            "carries the Hydra directive",
        ),
    ],
)
def test_a_config_naming_foreign_code_is_refused(backbone, message) -> None:
    with pytest.raises(EcgmlError, match=message):
        scorer_from_config(backbone, SEQ)


def test_weights_that_do_not_match_their_config_are_one_line(tmp_path, compose_cfg) -> None:
    cfg = compose_cfg("disorder=hyperkalemia")
    spec = model_spec(cfg, SEQ, FS, R, 0.5)
    files = write_model_files(
        BeatProbabilityModel(build_backbone(cfg.model, 1, 1, SEQ)), spec, tmp_path
    )
    data = spec.to_dict()
    data["backbone"]["channels"] = [8, 8, 8, 8]
    Path(files["spec"]).write_text(json.dumps(data))
    with pytest.raises(EcgmlError, match="does not match its config") as err:
        read_model_files(Path(files["weights"]), Path(files["spec"]), "models:/x")
    assert "\n" not in str(err.value)
    with pytest.raises(EcgmlError, match="not an ecgml-beat-model"):
        ModelSpec.from_dict({"format": "other"}, "models:/x")


def test_bad_requests_are_refused_with_the_row(tmp_path, compose_cfg) -> None:
    cfg = compose_cfg("disorder=hyperkalemia")
    spec = model_spec(cfg, SEQ, FS, R, 0.5)
    files = write_model_files(
        BeatProbabilityModel(build_backbone(cfg.model, 1, 1, SEQ)), spec, tmp_path
    )
    model = single_disorder(read_model_files(Path(files["weights"]), Path(files["spec"]), "m"), "m")
    ok = [0.0] * SEQ
    cases = {
        "no 'beat' column": pd.DataFrame({"x": [1]}),
        "empty batch": pd.DataFrame({"beat": []}),
        "row 1: beat has NaN": pd.DataFrame({"beat": [ok, [0.0, float("nan")]], "r_index": [R, 0]}),
        "must be exactly 450": pd.DataFrame({"beat": [[0.0] * 10]}),
        "r_index=12 is not a sample": pd.DataFrame({"beat": [[0.0] * 10], "r_index": [12]}),
        "longer than 4 s": pd.DataFrame({"beat": [[0.0] * 2001], "r_index": [5]}),
        "fs=1e-09": pd.DataFrame({"beat": [ok], "r_index": [R], "fs": [1e-9]}),
    }
    for message, frame in cases.items():
        with pytest.raises(BadRequest, match=re.escape(message)):
            predict_frame(model, frame)


#: Calls that unpickle (or save in a format that must be unpickled to load).
UNPICKLING = re.compile(
    r"weights_only\s*=\s*False|pickle\.loads?\(|cloudpickle|serialization_format\s*=\s*.pickle"
    r"|mlflow\.pytorch\.load_model|\.pytorch\.load_model\(|torch\.load\((?![^)]*weights_only=True)"
)


def test_no_load_path_unpickles() -> None:
    """Grep the package: the one unpickling call is the explicit allow_pickle opt-in."""
    found = []
    for path in sorted((PROJECT_ROOT / "ecgml").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if UNPICKLING.search(line) and "# opt-in pickle" not in line:
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
    opt_in = (PROJECT_ROOT / "ecgml" / "inference" / "loading.py").read_text()
    assert opt_in.count("# opt-in pickle") == 1


def test_a_logged_record_model_reads_every_beat_of_a_recording(store, compose_cfg) -> None:
    """A set model logged with ``unit: record`` decides once per input from all its beats (not
    the mean of per-beat scores), reports each beat's attention weight, and keeps its encoder's
    architecture in its own spec."""
    from ecgml.inference.inputs import BeatInput
    from ecgml.inference.score import predict_entries
    from ecgml.models.factory import pinned_backbone
    from ecgml.models.record_models import SetModel

    uri, client, experiment = store
    run_id = client.create_run(experiment).info.run_id
    cfg = compose_cfg("disorder=hyperkalemia", "model=set_cnn1d")
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model, 1, 1, SEQ).eval()
    assert isinstance(backbone, SetModel)
    with torch.no_grad():  # an untrained head is near linear: the two readings would coincide
        backbone.head[1].weight.mul_(5000.0)
    spec = model_spec(cfg, SEQ, FS, R, 0.4)
    pinned = pinned_backbone(cfg.model.backbone)
    assert pinned["encoder_overrides"]["head_bins"] == 8  # cnn1d's default, spelled out
    assert pinned["encoder_overrides"]["channels"] == [8, 16, 32, 32]  # the override wins
    spec = dataclasses.replace(spec, unit="record", backbone=pinned)
    loaded = load_model_uri(f"models:/{log_beat_model(uri, run_id, backbone, spec)}", uri)
    assert loaded.unit == "record"
    x = beats(5, seed=3)
    batch = {"beats": torch.from_numpy(x)[None, :, None, :], "mask": torch.ones(1, 5, dtype=bool)}
    with torch.no_grad():
        expected = float(torch.sigmoid(backbone(batch))[0, 0])
        weights = backbone.attention(batch)[0].numpy()
    probability, got_weights = loaded.score_record(x)
    assert probability == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(got_weights, weights, rtol=1e-5)
    assert probability != pytest.approx(float(np.mean(loaded.score(x))), rel=1e-3)
    entry = BeatInput(
        "rec.csv", "P1", list(x), [R] * 5, FS, [f"b{k}" for k in range(5)], [None] * 5
    )
    [result] = predict_entries([entry], {"hyperkalemia": loaded})
    assert result["units"] == {"hyperkalemia": "record"}
    assert result["probabilities"]["hyperkalemia"] == pytest.approx(expected, rel=1e-5)
    assert result["decisions"]["hyperkalemia"] == (expected >= 0.4)
    contributions = [b["contributions"]["hyperkalemia"] for b in result["per_beat"]]
    assert sum(contributions) == pytest.approx(1.0) and len(contributions) == 5
