"""End to end: train tiny models, promote them, predict on a beat store, an image and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ecgml import DISORDERS, PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import Calibrator
from ecgml.inference.inputs import InputOptions, Window
from ecgml.inference.loading import load_disorder_model, load_models
from ecgml.inference.score import predict_path
from ecgml.tracking.registry import promote_run
from tests.conftest import compose_once
from tests.console import third_party_lines
from tests.fakes import FS, write_toy_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """One tiny model per disorder (each on its own toy store), all promoted to champion."""
    from ecgml.train import train

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    stores, results = {}, {}
    for k, disorder in enumerate(DISORDERS):
        stores[disorder] = write_toy_store(
            root / disorder,
            n_positive=10,
            n_negative=14,
            beats_per_patient=2,
            positive=disorder,
            seed=k,
        )
        cfg = compose_once(
            "data=beats",
            f"data.path={stores[disorder]}",
            f"paths.cache_dir={root / 'cache'}",
            f"disorder={disorder}",
            "trainer.max_epochs=2",
            "trainer.enable_progress_bar=false",
            "data.batch_size=16",
            "evaluation.n_bootstrap=20",
            "explain.enabled=false",
            f"logger.tracking_uri={uri}",
        )
        results[disorder] = train(cfg)
        promote_run(results[disorder].run_id, tracking_uri=uri)
    return uri, stores, results


def test_logged_model_carries_preparation_and_threshold(registry) -> None:
    uri, _, results = registry
    result = results["hyperkalemia"]
    model = load_disorder_model("hyperkalemia", tracking_uri=uri)
    assert (model.seq_len, model.fs, model.r_index, model.align) == (150, FS, 50, "r_peak")
    assert model.threshold == pytest.approx(result.metrics["test/threshold"])
    assert model.run_id == result.run_id and model.version == "1"
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"  # logging the model left the run's status alone
    runs = client.search_runs([result.experiment_id])
    assert len(runs) == 1  # the model went into the training run, no second run


def test_promote_is_idempotent_and_rejects_unknown_runs(registry) -> None:
    uri, _, results = registry
    version = promote_run(results["hypokalemia"].run_id, tracking_uri=uri)
    assert str(version.version) == "1"  # the same logged model is not registered twice
    described = MlflowClient(uri).get_model_version("ecgml-hypokalemia", "1").description
    assert described.startswith("# Model card: hypokalemia vs normal")  # the run's model card
    assert len(described) <= 5000  # MLflow's description column on PostgreSQL / MySQL
    assert "## TRIPOD+AI checklist" in described or described.rstrip().endswith(
        f"artifact `model_card.md` of run `{results['hypokalemia'].run_id}`."
    )
    with pytest.raises(EcgmlError, match="is not in the MLflow store"):
        promote_run("0123456789abcdef", tracking_uri=uri)
    client = MlflowClient(uri)
    empty = client.create_run(results["hypokalemia"].experiment_id)
    with pytest.raises(EcgmlError, match="has no logged model"):
        promote_run(empty.info.run_id, tracking_uri=uri)


def test_beat_store_probabilities_equal_the_training_predictions(registry) -> None:
    uri, stores, results = registry
    models = load_models(DISORDERS, tracking_uri=uri)
    entries = predict_path(stores["hyponatremia"], models)
    per_beat = pd.DataFrame(
        [
            {"beat_id": b["beat_id"], "patient_id": e["patient_id"], **b["probabilities"]}
            for e in entries
            for b in e["per_beat"]
        ]
    ).set_index("beat_id")
    trained = results["hyponatremia"].predictions.set_index("beat_id")
    assert len(trained) > 5
    np.testing.assert_allclose(
        per_beat.loc[trained.index, "hyponatremia"], trained["y_prob"], rtol=1e-4, atol=1e-6
    )
    patient_mean = per_beat.groupby("patient_id")["hyperkalemia"].mean()
    for entry in entries:
        p = entry["probabilities"]["hyperkalemia"]
        assert p == pytest.approx(patient_mean[entry["patient_id"]], abs=1e-6)
        assert entry["decisions"]["hyperkalemia"] == (p >= models["hyperkalemia"].threshold)


def test_image_probabilities_equal_the_model_on_the_digitized_beats(registry, tmp_path) -> None:
    import neurokit2 as nk

    from ecgml.digitize.pipeline import process_image
    from ecgml.synth.render import render_ecg

    uri, _, _ = registry
    signal = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=75, random_state=4)
    image, _ = render_ecg(signal, 500, dpi=150, seed=1)
    path = tmp_path / "patient-7.png"
    cv2.imwrite(str(path), image)
    models = load_models(DISORDERS, tracking_uri=uri)
    options = InputOptions(image_fs=FS)
    [entry] = predict_path(path, models, options, saliency_dir=tmp_path / "sal")
    assert entry["patient_id"] == "patient-7" and not entry["warnings"]
    assert entry["n_beats"] >= 8
    model = models["hypokalemia"]
    window = Window(model.pre_r_ms, model.post_r_ms)
    beats = process_image(
        path, fs=FS, beat_options={"pre_r_ms": window.pre_r_ms, "post_r_ms": window.post_r_ms}
    ).beats
    assert beats.beats.shape[1] == model.seq_len and beats.r_offset == model.r_index
    direct = Calibrator.from_dict(model.calibration).apply(model.score(beats.beats))
    assert model.calibration["method"] == "temperature"
    got = [b["probabilities"]["hypokalemia"] for b in entry["per_beat"]]
    np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
    assert Path(entry["saliency_png"]).is_file()


def run_cli(module: str, *args: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={cwd / 'hydra'}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_cli_writes_json_and_table(registry, tmp_path: Path) -> None:
    uri, stores, _ = registry
    proc = run_cli(
        "ecgml.predict",
        f"input={stores['hyperkalemia']}",
        "output=out/pred.json",
        uri=uri,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "pred.json").read_text())
    assert len(results) == 24  # one entry per patient of the toy store
    assert set(results[0]["probabilities"]) == set(DISORDERS)
    assert "hyperkalemia" in proc.stderr and "P000" in proc.stderr
    assert proc.stdout.strip() == ""  # the JSON went to the file, logs to stderr
    assert third_party_lines(proc.stderr) == []


def test_promote_and_export_print_only_their_own_lines(registry, tmp_path: Path) -> None:
    uri, _, results = registry
    run_id = results["hyperkalemia"].run_id
    promoted = run_cli("ecgml.promote", f"run_id={run_id}", uri=uri, cwd=tmp_path)
    exported = run_cli("ecgml.export", f"run_id={run_id}", "out=m.onnx", uri=uri, cwd=tmp_path)
    for proc in (promoted, exported):
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert third_party_lines(proc.stdout + proc.stderr) == []
    assert promoted.stdout.strip().endswith("is now 'champion'")
    assert (tmp_path / "m.onnx").is_file()


def test_a_disorder_without_a_model_is_null_and_says_how_to_make_one(
    registry, tmp_path: Path
) -> None:
    """Only hyperkalemia has a model under the alias ``staging``: with no disorder named, it
    answers, the other two are null with the commands that create them; named, one line, 2."""
    uri, stores, results = registry
    promote_run(results["hyperkalemia"].run_id, alias="staging", tracking_uri=uri)
    args = (f"input={stores['hyperkalemia']}", "models=staging", "output=out/pred.json")
    proc = run_cli("ecgml.predict", *args, uri=uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entry = json.loads((tmp_path / "out" / "pred.json").read_text())[0]
    assert isinstance(entry["probabilities"]["hyperkalemia"], float)
    for disorder in ("hypokalemia", "hyponatremia"):
        assert entry["probabilities"][disorder] is None and entry["decisions"][disorder] is None
        assert "python -m ecgml.promote run_id=" in entry["missing_models"][disorder]
    assert "no 'staging' model for hypokalemia, hyponatremia" in proc.stderr
    named = run_cli("ecgml.predict", *args[:2], "disorders=[hypokalemia]", uri=uri, cwd=tmp_path)
    assert named.returncode == 2
    errors = [line for line in named.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hypokalemia" in errors[0]


def run_in_process(main, *args: str, cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """A Hydra entry point in this process: ``(exit code, stderr)``."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["ecgml", *args, f"hydra.run.dir={cwd / 'hydra'}"])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        GlobalHydra.instance().clear()
    return code, capsys.readouterr().err


def test_missing_champion_and_unknown_run_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    from ecgml.predict import main as predict_main
    from ecgml.promote import main as promote_main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}")
    beat = tmp_path / "beat.csv"
    beat.write_text("mv\n" + "\n".join(["0.0"] * 20 + ["1.0"] + ["0.0"] * 20) + "\n")
    code, err = run_in_process(
        predict_main, f"input={beat}", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 2
    assert "python -m ecgml.promote run_id=" in err and "hyperkalemia" in err
    code, err = run_in_process(
        promote_main, "run_id=deadbeef", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch
    )
    assert code == 2 and "run_id=deadbeef is not in the MLflow store" in err


def test_project_root_has_the_entry_point_configs() -> None:
    assert (PROJECT_ROOT / "conf" / "predict.yaml").is_file()
    assert (PROJECT_ROOT / "conf" / "promote.yaml").is_file()
    assert (PROJECT_ROOT / "conf" / "compare.yaml").is_file()
