"""One study, several workers (ecgml.sweep.shared): the parent election, what counts towards
``n_trials``, heartbeats failing a silent trial, the masked URL of an unreachable database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ecgml.sweep.optuna_sweeper import INTERRUPTED_ATTR, SURPLUS_ATTR, counted
from ecgml.sweep.shared import (
    CREATOR_ATTR,
    PARENT_ATTR,
    fail_stale_trials,
    heartbeats,
    masked,
    open_storage,
    study_parent,
    unreachable_message,
)


def test_two_workers_at_once_get_one_parent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    open_storage(url)  # the tables exist before the race (as after the first worker's probe)
    created: list[str] = []
    found: dict[int, str] = {}

    def worker(k: int) -> None:
        def create() -> str:
            created.append(f"run-{k}")
            time.sleep(0.3)  # the other worker looks while this one is still creating
            return f"run-{k}"

        found[k] = study_parent(open_storage(url), "s", "maximize", create, lambda rid: rid)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(created) == 1
    assert found[0] == found[1] == created[0]
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs[PARENT_ATTR] == created[0] and CREATOR_ATTR in study.user_attrs


def test_resumed_study_reopens_its_parent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = study_parent(open_storage(url), "s", "maximize", lambda: "p1", lambda rid: rid)
    again = study_parent(open_storage(url), "s", "maximize", lambda: "p2", lambda rid: rid)
    assert first == again == "p1"
    # a parent recorded in another tracking store: this store opens its own
    other = study_parent(open_storage(url), "s", "maximize", lambda: "p3", lambda rid: None)
    assert other == "p3"


def test_counted_trials_skip_interrupted_surplus_and_retried(tmp_path: Path) -> None:
    study = optuna.create_study()
    for attrs, state in [
        ({}, TrialState.COMPLETE),
        ({INTERRUPTED_ATTR: True}, TrialState.FAIL),
        ({SURPLUS_ATTR: True}, TrialState.FAIL),
        ({}, TrialState.FAIL),
    ]:
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    retry(study, study.trials[3])  # what a stale trial gets: a waiting copy
    numbers = [t.number for t in counted(study.get_trials())]
    assert numbers == [0, 4]  # trial 3 failed but its retry (4, waiting) replaces it


def test_silent_trial_is_failed_and_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, heartbeat_interval=1, grace_period=1, max_retry=1)
    study = optuna.create_study(storage=storage, study_name="s")
    with pytest.warns(UserWarning, match="Heartbeat"):
        beating, silent = study.ask(), study.ask()
    with heartbeats(storage, [beating]):
        storage.record_heartbeat(silent._trial_id)  # one beat, then its worker "dies"
        time.sleep(2.5)
        fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[beating.number] == TrialState.RUNNING
    assert states[silent.number] == TrialState.FAIL
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and retry[0].system_attrs["failed_trial"] == silent.number


def test_unreachable_database_message_masks_the_password() -> None:
    url = "postgresql+psycopg://me:s3cret@db.example:5432/studies"
    assert masked(url) == "postgresql+psycopg://me:***@db.example:5432/studies"
    line = unreachable_message(url, OSError("connection refused\nmore"))
    assert "s3cret" not in line and "connection refused" in line and "\n" not in line
    assert "hydra.sweeper.storage" in line
