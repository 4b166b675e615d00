"""Training end to end: the LightningModule learns, MLflow gets the Contracts' keys/artifacts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.evaluation import METRICS, metric_keys
from ecgml.train import train
from tests.console import third_party_lines
from tests.fakes import write_toy_store

pytestmark = pytest.mark.slow
#: The per-epoch keys (docs/contracts.md): the learning curves, the sweep objective and
#: Lightning's ``epoch`` (their x-axis).
PER_EPOCH_KEYS = {"train/loss", "train/auroc", "val/loss", "val/auroc", "val/auroc_best", "epoch"}
CONTRACT_ARTIFACTS = {
    "config.yaml",
    "overrides.yaml",
    "predictions.csv",
    "splits.csv",
    "results.md",
    "results.csv",
    "figures",
    "checkpoints",
}


def run_cli(*args: str, env_uri: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": env_uri}
    return subprocess.run(
        [sys.executable, "-m", "ecgml.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def fast(*extra: str) -> list[str]:
    return [
        "trainer.max_epochs=8",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=200",
        "data.batch_size=16",
        f"hydra.run.dir={Path(os.environ.get('TMPDIR', '/tmp'))}/ecgml-test-${{now:%H%M%S%f}}",
        *extra,
    ]


def test_fast_dev_run_trains_predicts_and_evaluates(compose_cfg, toy_store, mlflow_store) -> None:
    cfg = compose_cfg("data=beats", f"data.path={toy_store}", "disorder=hyperkalemia", "debug=fdr")
    result = train(cfg)
    assert set(result.predictions["split"]) == {"val", "test"}
    assert result.predictions["y_prob"].between(0, 1).all()
    assert result.metrics["test/n_beats"] == (result.predictions["split"] == "test").sum()


def test_cli_run_logs_contract_metrics_and_artifacts(tmp_path: Path, toy_store: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run = run_cli(
        "data=beats", f"data.path={toy_store}", "disorder=hyperkalemia", *fast(), env_uri=uri
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last_lines = run.stdout.strip().splitlines()
    assert last_lines[-1].startswith("run_id: ")
    assert any("mlflow ui" in line or "make ui" in line for line in last_lines[-4:])
    run_id = last_lines[-1].removeprefix("run_id: ").strip()
    page = last_lines[-2].strip()  # the run's page, in MLflow's model-training view
    assert page.startswith("run page: http://127.0.0.1:5000/#/experiments/")
    assert page.endswith(f"/runs/{run_id}?workflowType=machine_learning")
    console = run.stdout + run.stderr  # quiet: no library chatter a user cannot act on
    assert third_party_lines(console) == []
    for chatter in ("Seed set to", "GPU available", "litlogger", "Validating input example"):
        assert chatter not in console, chatter

    client = MlflowClient(uri)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "hyperkalemia-cnn1d-s42"
    assert client.get_experiment(logged.info.experiment_id).name == "ecgml-hyperkalemia"
    metrics = logged.data.metrics
    for prefix in ("test", "test_patient", "val_final"):
        for metric in METRICS:
            for suffix in ("", "_ci_low", "_ci_high"):
                assert f"{prefix}/{metric}{suffix}" in metrics
    for key in ("test/threshold", "test/n_beats", "test/n_patients", "val/auroc_best"):
        assert key in metrics
    # a curated run: the contracted keys only (NaN ones are not logged)
    assert set(metrics) <= set(metric_keys((0.01, 0.05, 0.2))) | PER_EPOCH_KEYS
    params = logged.data.params
    assert not [k for k in params if k.startswith("paths.")], "machine paths are not params"
    assert "logger.tracking_uri" not in params and "data.cache_dir" not in params
    assert metrics["test/auroc"] > 0.8  # the toy effect is large: a working pipeline finds it
    assert metrics["test/auroc_ci_low"] <= metrics["test/auroc"] <= metrics["test/auroc_ci_high"]
    assert logged.data.params["disorder.name"] == "hyperkalemia"
    assert {"git.commit", "git.dirty", "dataset.digest"} <= set(logged.data.tags)
    # MLflow's own context tags: the runs table's Source and User columns
    assert {"mlflow.source.name", "mlflow.source.type", "mlflow.user"} <= set(logged.data.tags)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts >= CONTRACT_ARTIFACTS
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ]
    local = Path(client.download_artifacts(run_id, "predictions.csv", str(tmp_path)))
    header = local.read_text().splitlines()[0].split(",")
    assert header[:6] == ["patient_id", "beat_id", "split", "y_true", "y_prob", "y_pred"] or {
        "patient_id",
        "beat_id",
        "split",
        "y_true",
        "y_prob",
        "y_pred",
    } <= set(header)


def test_same_seed_same_metrics(compose_cfg, toy_store, mlflow_store) -> None:
    overrides = (
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=100",
    )
    first = train(compose_cfg(*overrides)).metrics
    second = train(compose_cfg(*overrides)).metrics
    assert first["test/auroc"] == second["test/auroc"]
    assert first["val_final/accuracy"] == second["val_final/accuracy"]


def test_leakage_patient_split_gives_chance_auroc(
    tmp_path: Path, compose_cfg, mlflow_store
) -> None:
    """Distinct morphology per patient, labels random per patient: nothing real to learn.

    A beat-level split would let the model recognize patients and score far above 0.5; the
    patient-level split must leave 0.5 inside the test AUROC's 95% CI.
    """
    store = write_toy_store(
        tmp_path / "leaky",
        n_positive=40,
        n_negative=40,
        beats_per_patient=6,
        random_labels=True,
        seed=11,
    )
    cfg = compose_cfg(
        "data=beats",
        f"data.path={store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=15",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=500",
        "split.train=0.5",
        "split.val=0.2",
        "split.test=0.3",
    )
    metrics = train(cfg).metrics
    assert metrics["test/auroc_ci_low"] <= 0.5 <= metrics["test/auroc_ci_high"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.path=/definitely/not/here"], "does not exist"),
        (["disorder=hyponatremia"], "no 'hyponatremia' patients"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, toy_store: Path, args: list[str], message: str
) -> None:
    if not any(a.startswith("data.path=") for a in args):
        args.append(f"data.path={toy_store}")
    run = run_cli("data=beats", *args, *fast(), env_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run.returncode == 2, run.stderr[-2000:]
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["split=group_kfold", "split.n_splits=50", "split.fold=0"], "too few"),
        (["training.pos_weight=lots"], "training.pos_weight='lots'"),
        (["split.train=0.9"], "must be positive and sum to 1"),
        (["evaluation.prevalence=[0.01,1.5]"], r"evaluation.prevalence=1.5 is not in \(0, 1\)"),
        (["evaluation.subgroups=[hospital]"], "column 'hospital' is not in the predictions"),
        (["evaluation.operating_sensitivities=[90]"], "is not in \\(0, 1\\]"),
        (["training.label_smoothing=1.5"], "training.label_smoothing=1.5 is not valid"),
        (
            [
                "callbacks=early_stopping",
                "+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
                "+callbacks.swa.swa_lrs=0.001",
            ],
            "use callbacks=swa",
        ),
    ],
)
def test_bad_values_raise_user_errors_before_any_run(
    compose_cfg, toy_store, mlflow_store, overrides: list[str], message: str
) -> None:
    cfg = compose_cfg("data=beats", f"data.path={toy_store}", "disorder=hyperkalemia", *overrides)
    with pytest.raises(EcgmlError, match=message):
        train(cfg)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("ecgml-hyperkalemia")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_debug_true_shows_the_traceback(tmp_path: Path) -> None:
    run = run_cli(
        "data=beats",
        "data.path=/definitely/not/here",
        "debug=true",
        *fast(),
        env_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "EcgmlError" in run.stderr


def test_failure_after_start_marks_the_run_failed(
    compose_cfg, toy_store, mlflow_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecgml.tasks.binary import BinaryTask

    def explode(*_args, **_kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(BinaryTask, "evaluate", explode)
    cfg = compose_cfg("data=beats", f"data.path={toy_store}", "disorder=hyperkalemia", "debug=fdr")
    with pytest.raises(RuntimeError, match="exploded"):
        train(cfg)
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("ecgml-hyperkalemia")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


import signal  # noqa: E402  (appended with the signal tests below)
import time  # noqa: E402


def _default_sigint() -> None:
    """Ctrl-C as in a terminal: a background shell (CI, ``&``) starts children ignoring SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running_run_with_metrics(client: MlflowClient, deadline: float) -> str:
    """The id of the training run once it has logged a metric (its fit is under way)."""
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("ecgml-hyperkalemia")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and runs[0].data.metrics:
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("training never logged a metric")


@pytest.mark.parametrize(
    ("signum", "expected_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["term", "int"]
)
def test_signal_during_training_marks_the_run_killed(
    tmp_path: Path, toy_store: Path, signum: int, expected_code: int | None
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = [
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "callbacks=final",
        "trainer.max_epochs=100000",
        *fast()[1:],
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecgml.train", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        run_id = _running_run_with_metrics(MlflowClient(uri), time.monotonic() + 240)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == expected_code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED", stderr[-3000:]
