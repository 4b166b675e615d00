"""End to end: ``python -m ecgml.train data=records …`` trains a record model and writes one
prediction row per record; a store where every record fails exits 2 with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT, TWELVE_LEADS
from tests.unit.records.toy import effect_store, write_record, write_store

pytestmark = pytest.mark.slow


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "ecgml.train",
        "disorder=hyperkalemia",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=20",
        *overrides,
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def add_flat_record(root: Path) -> None:
    """A record with no beat to detect (``flat``, patient PX): skipped with its reason."""
    write_record(root / "flat.csv", np.zeros(5000))
    rows = pd.read_csv(root / "records.csv")
    rows.loc[len(rows)] = {
        "record_file": "flat.csv",
        "patient_id": "PX",
        "group": "normal",
        "record_id": "flat",
        "center": "C0",
    }
    rows.to_csv(root / "records.csv", index=False)


@pytest.mark.parametrize(
    ("model", "leads"), [("set_cnn1d", "II"), ("strip_cnn1d", "II"), ("set_cnn1d", "all")]
)
def test_train_on_a_record_store(tmp_path: Path, model: str, leads: str) -> None:
    root = effect_store(tmp_path / "records", 12, 12, twelve_lead=leads == "all")
    add_flat_record(root)
    run = _train(
        tmp_path,
        "data=records",
        f"data.path={root}",
        f"model={model}",
        f"data.leads={leads}",
        "++model.backbone.encoder_overrides.channels=[4,8]",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test AUROC" in run.stdout
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert {"patient_id", "record_id", "split", "y_true", "y_prob", "y_pred", "n_beats"} <= set(
        predictions.columns
    )
    assert predictions["record_id"].is_unique and set(predictions["split"]) == {"val", "test"}
    assert "flat" not in set(predictions["record_id"])
    skipped = pd.read_csv(tmp_path / "out" / "skipped_records.csv")
    assert list(skipped["record_id"]) == ["flat"]
    if model == "set_cnn1d":  # saliency back to the beats: one attention weight per beat
        assert predictions["beat_weights"].str.count(";").add(1).eq(predictions["n_beats"]).all()
        _predict_with_the_logged_record_model(tmp_path, root, predictions)
    else:  # and to the strip: one saliency share per second of the 10 s strip
        assert predictions["segment_weights"].str.count(";").eq(9).all()
        assert predictions["top_segment_s"].between(0, 9).all()
        _predict_with_the_logged_strip_model(tmp_path, root, predictions)


def _logged_model_uri(tmp_path: Path) -> tuple[str, str]:
    """(models:/<id> of the run's logged model, the tracking URI)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [logged] = client.search_logged_models(experiment_ids=experiments)
    return f"models:/{logged.model_id}", uri


def _logged_model(tmp_path: Path):
    from ecgml.inference.loading import load_model_uri

    return load_model_uri(*_logged_model_uri(tmp_path))


def _predict_with_the_logged_strip_model(tmp_path: Path, root: Path, predictions) -> None:
    """The run logged its whole-strip model (``unit: strip``): ecgml.predict on one of the
    store's recordings and the served pyfunc on the same samples both give that recording's
    probability; an input of beats only gets no strip answer and says why."""
    from ecgml.inference.inputs import InputOptions, read_signal_csv
    from ecgml.inference.score import predict_path
    from ecgml.pipeline.beat_model import predict_frame

    model = _logged_model(tmp_path)
    assert model.unit == "strip" and model.r_index is None and model.seq_len == 1000
    row = predictions[predictions["split"] == "test"].iloc[0]
    record_file = (
        root
        / pd.read_csv(root / "records.csv")
        .set_index("record_id")
        .loc[row["record_id"], "record_file"]
    )
    [entry] = predict_path(record_file, {"hyperkalemia": model}, InputOptions())
    assert entry["units"] == {"hyperkalemia": "strip"}
    assert entry["probabilities"]["hyperkalemia"] == pytest.approx(row["y_prob"], abs=1e-4)
    assert all("contributions" not in beat for beat in entry["per_beat"])
    shares = entry["strip_contributions"]["hyperkalemia"]  # per second, as training's
    assert shares == pytest.approx([float(v) for v in row["segment_weights"].split(";")], abs=1e-3)
    signal, fs = read_signal_csv(record_file)
    served = predict_frame(model, pd.DataFrame({"beat": [signal.tolist()], "fs": [fs]}))
    assert served["hyperkalemia"].iloc[0] == pytest.approx(row["y_prob"], abs=1e-4)
    beat_file = tmp_path / "one_beat.csv"
    pd.DataFrame({"mv": signal[:400]}).to_csv(beat_file, index=False)
    [beats_only] = predict_path(beat_file, {"hyperkalemia": model}, InputOptions(beat_fs=fs))
    assert beats_only["probabilities"]["hyperkalemia"] is None
    assert any("reads the recording" in w for w in beats_only["warnings"])
    from ecgml.cli.export import export
    from ecgml.errors import EcgmlError
    from tests.conftest import compose_once

    model_uri, tracking_uri = _logged_model_uri(tmp_path)
    cfg = compose_once(
        f"model_uri={model_uri}",
        f"out={tmp_path / 'strip.onnx'}",
        f"tracking_uri={tracking_uri}",
        name="export",
    )
    with pytest.raises(EcgmlError, match="is a record model .unit strip."):
        export(cfg)
    assert not (tmp_path / "strip.onnx").exists()


def _predict_with_the_logged_record_model(tmp_path: Path, root: Path, predictions) -> None:
    """The run logged its set model (``unit: record``); ecgml.predict on one of the store's
    recordings gives that recording's record-level probability, beat weights summing to 1."""
    from mlflow import MlflowClient

    from ecgml.inference.inputs import InputOptions
    from ecgml.inference.loading import load_model_uri
    from ecgml.inference.score import predict_path

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [logged] = client.search_logged_models(experiment_ids=experiments)
    model = load_model_uri(f"models:/{logged.model_id}", uri)
    assert model.unit == "record"
    held = pd.read_csv(root / pd.read_csv(root / "records.csv")["record_file"].iloc[0]).columns
    assert model.leads == (("II",) if "mv" in held else TWELVE_LEADS)  # data.leads, in order
    row = predictions[predictions["split"] == "test"].iloc[0]
    record_file = (
        pd.read_csv(root / "records.csv")
        .set_index("record_id")
        .loc[row["record_id"], "record_file"]
    )
    [entry] = predict_path(root / record_file, {"hyperkalemia": model}, InputOptions())
    assert entry["units"] == {"hyperkalemia": "record"} and entry["n_beats"] == row["n_beats"]
    assert entry["probabilities"]["hyperkalemia"] == pytest.approx(row["y_prob"], abs=1e-4)
    weights = [b["contributions"]["hyperkalemia"] for b in entry["per_beat"]]
    assert sum(weights) == pytest.approx(1.0)


def test_a_serum_record_run_logs_the_model_predict_reads(tmp_path: Path) -> None:
    """task=potassium on a record store logs its set model (``task: potassium``, ``unit:
    record``); ecgml.predict on one of the store's recordings gives that record's estimate."""
    from ecgml.inference.inputs import InputOptions
    from ecgml.inference.score import predict_path
    from ecgml.pipeline.beat_model import read_model_dir
    from ecgml.tracking.registry import downloaded_model

    root = effect_store(tmp_path / "records", 10, 10)
    rows = pd.read_csv(root / "records.csv")
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(rows)).round(2)
    rows["potassium"] = np.where(rows["group"] == "hyperkalemia", 6.0, 4.2) + jitter
    rows.to_csv(root / "records.csv", index=False)
    run = _train(
        tmp_path,
        "data=records",
        f"data.path={root}",
        "model=set_cnn1d",
        "task=potassium",
        "evaluation.interval_level=0.5",  # 3 validation patients (at least 3 at 50 %)
        "++model.backbone.encoder_overrides.channels=[4,8]",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    predictions = pd.read_csv(tmp_path / "out" / "predictions.csv")
    model_uri, tracking_uri = _logged_model_uri(tmp_path)
    with downloaded_model(model_uri, tracking_uri) as (local, meta, _):
        models = read_model_dir(local, model_uri)
    assert meta["task"] == "potassium" and meta["unit"] == "record"
    row = predictions[predictions["split"] == "test"].iloc[0]
    record_file = rows.set_index("record_id").loc[row["record_id"], "record_file"]
    [entry] = predict_path(root / record_file, {}, InputOptions(), serum_models=models)
    assert entry["potassium_mmol_l"] == pytest.approx(row["y_pred"], abs=1e-3)


def test_cross_validation_is_a_parent_with_a_child_per_fold(tmp_path: Path) -> None:
    """split=group_kfold split.fold=null on records: the beat shape — a parent with the pooled
    out-of-fold results (each patient tested once) and one child run per fold."""
    root = effect_store(tmp_path / "records", 10, 15)
    add_flat_record(root)
    run = _train(
        tmp_path,
        "data=records",
        f"data.path={root}",
        "model=strip_cnn1d",
        "split=group_kfold",
        "split.n_splits=3",
        "trainer.max_epochs=1",
        "++model.backbone.encoder_overrides.channels=[4,8]",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.info.run_name[-5:] for c in children) == ["fold0", "fold1", "fold2"]
    assert all(c.info.status == "FINISHED" and "test/auroc" in c.data.metrics for c in children)
    assert parent.info.status == "FINISHED"
    tags, metrics = parent.data.tags, parent.data.metrics
    assert (tags["ecgml.unit"], tags["ecgml.leads"]) == ("record", "II")
    assert (tags["records.skipped"], tags["records.skipped.no_beats"]) == ("1", "1")
    assert metrics["test/n_records"] == 25 and metrics["records/skipped"] == 1
    assert {"test/auroc", "test_patient/auroc", "cv/auroc_mean"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {
        "config.yaml",
        "predictions.csv",
        "splits.csv",
        "results_folds.csv",
        "skipped_records.csv",
        "figures",
    } <= artifacts
    folder = client.download_artifacts(parent.info.run_id, "predictions.csv", str(tmp_path))
    predictions = pd.read_csv(folder)
    test = predictions[predictions["split"] == "test"]
    assert test["patient_id"].is_unique and len(test) == 25
    assert sorted(test["fold"].unique()) == [0, 1, 2]
    assert "flat" not in set(predictions["record_id"])


def test_a_store_where_every_record_fails_exits_2(tmp_path: Path) -> None:
    write_record(tmp_path / "records" / "short.csv", np.zeros(200))
    root = write_store(
        tmp_path / "records", [{"record_file": "short.csv", "patient_id": "P1", "group": "normal"}]
    )
    run = _train(tmp_path, "data=records", f"data.path={root}", "model=set_cnn1d")
    assert run.returncode == 2, run.stderr[-2000:]
    # MLflow's own lines as it creates the fresh tracking database aside, one line
    lines = [line for line in run.stderr.splitlines() if line.strip() and "mlflow" not in line]
    assert len(lines) == 1 and "records.csv" in lines[0] and "shorter than 2 s" in lines[0]
