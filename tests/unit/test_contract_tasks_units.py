"""One contract over every task × unit × backbone that ``conf/`` offers, one fast epoch each.

A new ``conf/task/<name>.yaml`` or ``conf/model/<name>.yaml`` is picked up here without editing
this file. Each combination meant to work trains for one epoch through the one lifecycle
(:func:`~ecgml.pipeline.run.run_one`) and must: finish its MLflow run, log the task's headline
test metric, write ``predictions.csv`` with one row per example of the unit, and log a model
whose spec names the task and the unit. A combination that is not meant to work (a beat model
on records, a record model on beats, ``features_lr`` beyond the binary task) is refused before
any run opens, in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig

from ecgml import CONF_DIR
from ecgml.errors import EcgmlError
from ecgml.models.factory import check_model_reads_unit
from ecgml.pipeline.run import run_one
from ecgml.tracking.registry import downloaded_model
from tests.task_fakes import write_task_store
from tests.unit.records.toy import ecg, write_record, write_store

pytestmark = pytest.mark.slow

TASKS = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml") if p.stem != "pretrain")
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
RECORD_MODELS = ("set_cnn1d", "strip_cnn1d")
#: The test metric each task's run is judged by (its README headline).
HEADLINE = {
    "binary": "test/auroc",
    "multilabel": "test/macro_auroc",
    "potassium": "test/mae",
    "sodium": "test/mae",
}
#: Patients per group of the beat store (small: one epoch each, many combinations).
SIZES = {"normal": 12, "hyperkalemia": 8, "hypokalemia": 8, "hyponatremia": 8}
#: The (ordered) serum values and groups the record store draws from, one patient each.
GROUPS = {
    "normal": (4.2, 140.0),
    "hyperkalemia": (6.2, 139.0),
    "hypokalemia": (3.0, 141.0),
    "hyponatremia": (4.3, 128.0),
}

Compose = Callable[..., DictConfig]


def meant_to_work(task: str, unit: str, model: str) -> bool:
    if model == "features_lr":
        return unit == "beat" and task == "binary"
    return (model in RECORD_MODELS) == (unit == "record")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A beat store and a record store of every group, with serum K and Na."""
    root = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(32):
        group = list(GROUPS)[i % 4]
        potassium, sodium = GROUPS[group]
        name = f"signals/P{i:03d}.csv"
        write_record(root / "records" / name, ecg(rng, seconds=6.0, effect_beats=range(8)))
        rows.append(
            {
                "record_file": name,
                "patient_id": f"P{i:03d}",
                "group": group,
                "record_id": f"R{i:03d}",
                "potassium": round(potassium + rng.uniform(-0.2, 0.2), 2),
                "sodium": round(sodium + rng.uniform(-1, 1), 1),
            }
        )
    return {
        "beat": write_task_store(root / "beats", SIZES, beats_per_patient=2),
        "record": write_store(root / "records", rows),
    }


def combinations() -> list[tuple[str, str, str]]:
    return [
        (task, unit, model)
        for task in TASKS
        for unit in ("beat", "record")
        for model in MODELS
        if meant_to_work(task, unit, model)
    ]


def overrides(task: str, unit: str, model: str, store: Path, tmp_path: Path) -> list[str]:
    data = ["data=records", f"data.path={store}"] if unit == "record" else ["data=beats"]
    if unit == "beat":
        data.append(f"data.path={store}")
    small = ["++model.backbone.encoder_overrides.channels=[4,8]"] if unit == "record" else []
    return [
        *data,
        f"task={task}",
        f"model={model}",
        "disorder=hyperkalemia",
        *small,
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "explain.enabled=false",
        "evaluation.n_bootstrap=20",
        "evaluation.interval_level=0.5",  # serum tasks: a few validation patients calibrate it
        "training.log_checkpoint=false",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]


def test_the_matrix_covers_every_task_unit_and_model() -> None:
    seen = combinations()
    assert {t for t, _, _ in seen} == set(TASKS) >= {"binary", "multilabel", "potassium"}
    assert {m for _, _, m in seen} == set(MODELS)
    assert {u for _, u, _ in seen} == {"beat", "record"}


@pytest.mark.parametrize(("task", "unit", "model"), combinations())
def test_each_combination_trains_evaluates_and_logs_its_model(
    task: str,
    unit: str,
    model: str,
    stores: dict[str, Path],
    compose_cfg: Compose,
    tmp_path: Path,
) -> None:
    cfg = compose_cfg(*overrides(task, unit, model, stores[unit], tmp_path))
    result = run_one(cfg)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    headline = run.data.metrics[HEADLINE[task]]
    assert np.isfinite(headline)
    folder = client.download_artifacts(result.run_id, "predictions.csv", str(tmp_path))
    predictions = pd.read_csv(folder)
    key = "record_id" if unit == "record" else "beat_id"
    assert predictions[key].is_unique and set(predictions["split"]) == {"val", "test"}
    if model == "features_lr":  # a scikit-learn model: no MLflow model to serve
        return
    (logged,) = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with downloaded_model(f"models:/{logged.model_id}", uri) as (_, spec, _):
        pass
    assert spec["task"] == ("binary" if task == "binary" else task)
    want_unit = {"set_cnn1d": "record", "strip_cnn1d": "strip"}.get(model, "beat")
    assert spec["unit"] == want_unit


@pytest.mark.parametrize(
    ("unit", "model"), [("beat", "set_cnn1d"), ("record", "cnn1d"), ("record", "features_lr")]
)
def test_a_model_that_cannot_read_the_unit_is_refused_in_one_line(
    unit: str, model: str, compose_cfg: Compose, stores: dict[str, Path], tmp_path: Path
) -> None:
    from ecgml.data.records import data_unit

    cfg = compose_cfg(*overrides("binary", unit, model, stores[unit], tmp_path))
    with pytest.raises(EcgmlError) as error:
        check_model_reads_unit(cfg.model, data_unit(cfg))
    assert "\n" not in str(error.value) and model in str(error.value)


def test_features_lr_beyond_the_binary_task_is_refused_in_one_line(
    compose_cfg: Compose, stores: dict[str, Path], tmp_path: Path
) -> None:
    cfg = compose_cfg(*overrides("potassium", "beat", "features_lr", stores["beat"], tmp_path))
    with pytest.raises(EcgmlError, match="supports task=binary only") as error:
        run_one(cfg)
    assert "\n" not in str(error.value)
    assert runs_in(tmp_path / "mlflow.db") == 0


def runs_in(database: Path) -> int:
    if not database.exists():
        return 0
    client = MlflowClient(f"sqlite:///{database}")
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
