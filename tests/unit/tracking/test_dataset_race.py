"""Two sweep trials logging the same dataset at once: MLflow's store looks the dataset up, then
inserts it, so the slower trial fails on the unique key; ecgml links the existing one instead of
failing the trial, and any other error still stops the run."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from ecgml.tracking.runs import LOG_INPUTS_ATTEMPTS, log_inputs_racing

DUPLICATE = (
    "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
    "datasets.digest"
)


class Client:
    """A tracking client whose ``log_inputs`` fails with ``errors`` first, then succeeds."""

    def __init__(self, *errors: str) -> None:
        self.errors, self.calls = list(errors), 0

    def log_inputs(self, run_id: str, datasets: list) -> None:
        self.calls += 1
        if self.errors:
            raise MlflowException(self.errors.pop(0))


@pytest.mark.parametrize("message", [DUPLICATE, 'duplicate key value violates "datasets_pk"'])
def test_a_dataset_inserted_by_a_concurrent_run_is_linked(message: str) -> None:
    client = Client(message)
    log_inputs_racing(client, "run", [])  # type: ignore[arg-type]
    assert client.calls == 2


def test_other_errors_and_a_lasting_race_still_raise() -> None:
    with pytest.raises(MlflowException, match="no such run"):
        log_inputs_racing(Client("no such run"), "run", [])  # type: ignore[arg-type]
    lasting = Client(*[DUPLICATE] * LOG_INPUTS_ATTEMPTS)
    with pytest.raises(MlflowException, match="UNIQUE"):
        log_inputs_racing(lasting, "run", [])  # type: ignore[arg-type]
    assert lasting.calls == LOG_INPUTS_ATTEMPTS
