"""One Optuna study fed by several sweep processes (``hydra.sweeper.storage`` = a database).

- :func:`open_storage`: the study's ``RDBStorage`` (sqlite file, PostgreSQL, MySQL) with
  heartbeats (``hydra.sweeper.heartbeat_interval`` / ``grace_period``) and
  ``RetryHeartbeatStaleTrialCallback(max_retry)`` (formerly ``RetryFailedTrialCallback``): a
  trial whose process was killed (SIGKILL, power loss) stops beating, the next worker marks it
  FAIL and enqueues a retry with its parameters. A database that cannot be reached is one line
  naming the URL (password masked), exit 2.
- :func:`study_parent`: the MLflow parent run of the study. Whoever *creates* the study (the
  database's unique study name elects exactly one process) opens the parent and stores its id
  as the study user attribute ``mlflow_parent_run_id``; every other process waits for that
  attribute and re-opens the same run. A study made before the attribute existed falls back to
  the parent tagged with the study's key.
- The creator keeps a seeded sampler's seed; every other worker (and a resumed sweep) reseeds
  it, or two workers with one seed would sample the same parameters.
- :func:`heartbeats`: the ask/tell sweep records the heartbeats of its running trials itself
  (``Study.optimize`` would; the sweeper does not call it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ecgml.errors import EcgmlError

log = logging.getLogger("ecgml.sweep")
PARENT_ATTR = "mlflow_parent_run_id"
CREATOR_ATTR = "creator"  # host:pid of the process that created the study
CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_S = 60
PARENT_WAIT_S = 60.0
POLL_S = 0.5
SCHEMA_ATTEMPTS = 5


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """A bounded connect (an unreachable server fails in seconds); sqlite waits on a lock."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def unreachable_message(url: str, error: BaseException) -> str:
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    detail = reason[0][:200] if reason else type(error).__name__
    return (
        f"the Optuna storage {masked(url)} cannot be used ({detail}): check that the database "
        "server runs and accepts connections there, the user, password and database name "
        "(hydra.sweeper.storage)"
    )


def exit_unreachable(url: str, error: BaseException) -> None:
    print(f"error: {unreachable_message(url, error)}", file=sys.stderr, flush=True)
    sys.exit(EcgmlError.exit_code)


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> RDBStorage:
    """The study's storage; exits 2 with one line when the database cannot be reached."""
    retry = None
    with warnings.catch_warnings():  # heartbeats and the retry callback are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat_interval and max_retry is not None:
            retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs(url),
                    heartbeat_interval=heartbeat_interval or None,
                    grace_period=grace_period or None,
                    heartbeat_stale_trial_callback=retry,
                )
            except (sqlalchemy.exc.OperationalError, OSError) as error:  # no connection
                exit_unreachable(url, error)
            except sqlalchemy.exc.SQLAlchemyError as error:
                # two workers creating Optuna's tables at once in a new database: one of them
                # hits a duplicate key (PostgreSQL); the tables exist on the next attempt
                if attempt == SCHEMA_ATTEMPTS - 1:
                    exit_unreachable(url, error)
                time.sleep(0.5 + random.random())
    raise AssertionError("not reached")


def fail_stale_trials(study: optuna.Study) -> None:
    """FAIL the running trials of dead workers (their retries get enqueued)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def redone_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Numbers of failed trials that a retry replaces (they do not count towards n_trials)."""
    # RetryHeartbeatStaleTrialCallback.retry_history(t), read directly (it warns "experimental")
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


@contextlib.contextmanager
def heartbeats(storage: RDBStorage | None, trials: list[Any]) -> Iterator[None]:
    """Record the heartbeat of ``trials`` (a list the caller fills while the block runs) every
    ``heartbeat_interval`` seconds inside the block."""
    interval = storage.get_heartbeat_interval() if storage is not None else None
    if storage is None or not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in [t._trial_id for t in list(trials)]:
                try:
                    storage.record_heartbeat(trial_id)
                except sqlalchemy.exc.SQLAlchemyError:  # a blip: the next beat may pass
                    log.warning("could not record the heartbeat of trial id %d", trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def study_direction(direction: str) -> optuna.study.StudyDirection:
    """``minimize`` / ``maximize`` as Optuna's direction (anything else: one-line error)."""
    try:
        return optuna.study.StudyDirection[str(direction).upper()]
    except KeyError:
        raise EcgmlError(f"direction={direction!r}: use minimize or maximize") from None


def create_or_load(
    storage: RDBStorage, name: str, direction: str, **kwargs: Any
) -> tuple[optuna.Study, bool]:
    """The study and whether this call created it (the unique study name elects one process,
    recorded as the study user attribute ``creator``). ``kwargs``: sampler, pruner."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction=study_direction(direction),
            load_if_exists=False,
            **kwargs,
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, **kwargs), False
    study.set_user_attr(CREATOR_ATTR, worker_id())
    return study, True


def study_parent(
    storage: RDBStorage,
    name: str,
    direction: str,
    create: Callable[[], str],
    reopen: Callable[[str | None], str | None],
    wait_s: float = PARENT_WAIT_S,
) -> str:
    """The id of the study's one MLflow parent run (see the module docstring).

    ``create()`` opens a new parent and returns its id; ``reopen(run_id)`` re-opens the given
    parent (or, with None, the one tagged with the study's key) and returns its id, or None.
    """
    study, created = create_or_load(storage, name, direction)
    if created:
        run_id = create()
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id
    deadline = time.monotonic() + wait_s
    while True:
        known = study.user_attrs.get(PARENT_ATTR)
        if known:  # a parent in another tracking store: this store gets its own
            return reopen(str(known)) or create()
        if study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            break  # a study from before the attribute existed, or its creator died
        time.sleep(POLL_S)
    run_id = reopen(None) or create()
    study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def busy_elsewhere(storage: RDBStorage, name: str) -> int:
    """How many trials of the study are still RUNNING (other workers' business)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
