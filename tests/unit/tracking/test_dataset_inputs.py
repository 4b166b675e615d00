"""Each split's table is logged as an MLflow dataset input, without console noise."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from ecgml.tracking import log_dataset_inputs


def test_split_tables_are_logged_as_datasets_without_schema_hints(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "a")))
    frame = pd.DataFrame({"beat_id": ["b1", "b2"], "label": [0, 1], "beat_index": [0, 3]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_dataset_inputs(
            client,
            run.info.run_id,
            {"train": frame, "test": frame},
            "store",
            "toy",
            "0123456789abcdef",
        )
    assert not [w for w in caught if "Inferred schema contains integer" in str(w.message)]
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    contexts = sorted(tag.value for i in inputs for tag in i.tags if tag.key.endswith("context"))
    assert contexts == ["test", "train"]
    assert {i.dataset.name for i in inputs} == {"toy-train", "toy-test"}
