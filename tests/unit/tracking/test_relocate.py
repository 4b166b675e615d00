"""A copied local store: refused in one line until ``python -m ecgml.relocate_store`` points it
at its own folder; then its old runs read the copy's files and new runs write there, and the
original store is untouched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.tracking import check_store, ensure_experiment, resolve_store
from ecgml.tracking.relocate import relocate_store
from ecgml.tracking.store import foreign_locations, local_path


def uri_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"


def store_with_a_run(folder: Path) -> tuple[str, str]:
    """A store holding one ecgml experiment with one run and its ``note.txt`` artifact."""
    store = check_store(uri_of(folder))
    experiment_id = ensure_experiment(store, "ecgml-hyperkalemia")
    client = MlflowClient(store.tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id
    note = folder / "note.txt"
    note.write_text("original")
    client.log_artifact(run_id, str(note))
    client.set_terminated(run_id)
    client.create_experiment("by-hand", artifact_location=(folder / "elsewhere").as_uri())
    return experiment_id, run_id


@pytest.fixture()
def copied(tmp_path: Path) -> tuple[Path, Path, str, str]:
    """(original folder, its copy, experiment id, run id): the copy's file says ``copy``."""
    original, copy = tmp_path / "a", tmp_path / "b"
    original.mkdir()
    experiment_id, run_id = store_with_a_run(original)
    shutil.copytree(original, copy)
    (copied_note,) = (copy / "mlruns" / "artifacts").rglob("note.txt")
    copied_note.write_text("copy")
    return original, copy, experiment_id, run_id


def test_a_copied_store_is_refused_in_one_line_naming_the_fix(copied) -> None:
    original, copy, _, _ = copied
    check_store(uri_of(original))  # the original is fine
    with pytest.raises(EcgmlError) as error:
        check_store(uri_of(copy))
    message = str(error.value)
    assert "\n" not in message and "ecgml-hyperkalemia" in message
    assert str(original / "mlruns" / "artifacts") in message
    assert "python -m ecgml.relocate_store" in message


def test_relocating_points_old_runs_at_the_copy_and_new_runs_write_there(copied) -> None:
    original, copy, experiment_id, run_id = copied
    counts = relocate_store(resolve_store(uri_of(copy)))
    assert counts["experiments"] == 1 and counts["runs"] == 1
    store = check_store(uri_of(copy))  # no longer refused
    assert foreign_locations(store) == []
    client = MlflowClient(store.tracking_uri)
    old = Path(client.download_artifacts(run_id, "note.txt", str(copy / "down")))
    assert old.read_text() == "copy"
    new_run = client.create_run(experiment_id).info.run_id
    client.log_artifact(new_run, str(copy / "note.txt"))
    location = local_path(client.get_run(new_run).info.artifact_uri)
    assert location is not None and location.is_relative_to(copy / "mlruns" / "artifacts")
    assert (location / "note.txt").is_file()
    # the user's own experiment and the original store are left as they were
    assert client.get_experiment_by_name("by-hand").artifact_location.endswith("/a/elsewhere")
    untouched = MlflowClient(uri_of(original)).get_run(run_id).info.artifact_uri
    assert local_path(untouched).is_relative_to(original)  # type: ignore[union-attr]
    assert relocate_store(resolve_store(uri_of(copy)))["experiments"] == 0  # idempotent


def test_a_server_store_has_nothing_to_relocate() -> None:
    with pytest.raises(EcgmlError, match="tracking server"):
        relocate_store(resolve_store("http://127.0.0.1:1"))


@pytest.mark.slow
def test_the_command_relocates_and_a_command_on_the_copy_starts(copied) -> None:
    _, copy, _, run_id = copied
    evaluate = [sys.executable, "-m", "ecgml.evaluate", f"run_id={run_id}"]
    refused = subprocess.run(
        [*evaluate, f"tracking_uri={uri_of(copy)}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert [line for line in refused.stderr.splitlines() if "relocate_store" in line]
    relocated = subprocess.run(
        [sys.executable, "-m", "ecgml.relocate_store", f"tracking_uri={uri_of(copy)}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relocated.returncode == 0, relocated.stderr[-2000:]
    assert "1 experiments, 1 runs" in relocated.stdout
    assert check_store(uri_of(copy)).artifact_root == copy / "mlruns" / "artifacts"
