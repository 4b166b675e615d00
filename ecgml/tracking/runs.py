"""One tracked MLflow run: names, tags, params, the Lightning logger and :func:`tracked_run`.

Every entry point that opens (or re-opens) a run ends it through :func:`tracked_run`: FINISHED on
success, FAILED on an error, KILLED on Ctrl-C or SIGTERM (exit 143). Runs are logged through a
client (never the fluent API, which would open a second run). A multirun/sweep parent publishes
itself through the environment variables below (so it reaches in-process jobs and launcher
subprocesses alike).

A run records the pid and host of its process (:func:`process_tags`); a run left RUNNING by a
process that died without ending it (SIGKILL, power loss) is marked KILLED by the next run
started on that host (:func:`end_dead_runs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from omegaconf import DictConfig, OmegaConf

from ecgml import PROJECT_ROOT
from ecgml import run_subject as subject_of
from ecgml.tracking.store import ensure_experiment, resolve_store

if TYPE_CHECKING:  # lightning is heavy to import; only training needs the logger
    from lightning.pytorch.loggers import MLFlowLogger

PARENT_RUN_ENV = "ECGML_PARENT_RUN_ID"
EXPERIMENT_ENV = "ECGML_SWEEP_EXPERIMENT"
PID_TAG = "ecgml.pid"
HOST_TAG = "ecgml.host"
PID_START_TAG = "ecgml.pid_start"  # the process's start time: tells a reused pid apart
KILLED_REASON_TAG = "ecgml.killed_reason"
RESUMED_TAG = "ecgml.resumed"  # how many times ``resume=`` re-opened the run
#: Where the MLflow UI runs, for the links ecgml prints (``make ui`` serves it there).
UI_URL_ENV = "ECGML_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:5000"
log = logging.getLogger("ecgml")


def parent_run() -> tuple[str | None, str | None]:
    """``(parent_run_id, experiment_name)`` of the enclosing multirun, or ``(None, None)``."""
    return os.environ.get(PARENT_RUN_ENV) or None, os.environ.get(EXPERIMENT_ENV) or None


class RunTerminated(SystemExit):
    """SIGTERM reached a tracked run: the run ends KILLED and the process exits 128 + 15."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)


# Modules a SIGTERM must not interrupt: an exception raised inside a database transaction can
# leave its connection holding SQLite's write lock, and then marking the run KILLED fails with
# "database is locked".
_UNINTERRUPTIBLE = ("sqlalchemy", "sqlite3", "alembic", "psycopg", "mlflow.store")
_RESEND_DELAY_S = 0.05


def inside_uninterruptible_call(frame: FrameType | None) -> bool:
    """True when any frame on the stack runs code of a module in :data:`_UNINTERRUPTIBLE`."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_UNINTERRUPTIBLE):
            return True
        frame = frame.f_back
    return False


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    """Raise :class:`RunTerminated`, unless a database call is under way: then deliver the signal
    again a moment later, once the transaction is through."""
    if inside_uninterruptible_call(frame):
        timer = threading.Timer(_RESEND_DELAY_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise RunTerminated(signum)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`RunTerminated` inside the block (main thread, default handler
    only; Lightning chains it to its own handler during ``fit``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # an outer block, or the user's own handler
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_by_user(error: BaseException) -> bool:
    """Ctrl-C or SIGTERM, also as the ``sys.exit(1)`` Lightning turns a Ctrl-C into."""
    if isinstance(error, (KeyboardInterrupt, RunTerminated)):
        return True
    return isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt)


@contextlib.contextmanager
def tracked_run(client: MlflowClient, run_id: str) -> Iterator[str]:
    """End ``run_id`` FINISHED when the block succeeds, KILLED on Ctrl-C or SIGTERM (exit 143),
    FAILED otherwise."""
    with sigterm_raises():
        try:
            yield run_id
        except BaseException as error:
            client.set_terminated(run_id, "KILLED" if stopped_by_user(error) else "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name may hold spaces


def process_tags() -> dict[str, str]:
    """Pid and host of this process (and its start time where known), for :func:`end_dead_runs`."""
    tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    started = process_start(os.getpid())
    if started:
        tags[PID_START_TAG] = started
    return tags


def process_gone(pid: int, started: str | None) -> bool:
    """True when ``pid`` is not running, or is another process that reused the number."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by another user
    return bool(started) and process_start(pid) not in (None, started)


def end_dead_runs(client: MlflowClient) -> list[str]:
    """Mark KILLED every RUNNING run of this host whose recorded process is gone; their ids."""
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    running = client.search_runs(
        experiments,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    ended = []
    for run in running:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if not pid.isdigit() or not process_gone(int(pid), tags.get(PID_START_TAG)):
            continue
        reason = f"process {pid} on {host} ended without closing the run (SIGKILL or crash)"
        client.set_tag(run.info.run_id, KILLED_REASON_TAG, reason)
        client.set_terminated(run.info.run_id, "KILLED")
        log.warning("marked run %s KILLED: %s", run.info.run_id, reason)
        ended.append(run.info.run_id)
    return ended


def run_page_url(experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI (``ECGML_UI_URL``, default ``make ui``'s address), in the
    model-training view: MLflow 3 opens experiments in its GenAI view unless the link asks."""
    base = (os.environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def run_subject(cfg: DictConfig) -> str:
    """What a run is about: its disorder (binary task), else the task (``multilabel``,
    ``potassium``, ``sodium``)."""
    task = cfg.get("task")
    return subject_of(str(task.get("name", "binary")) if task else "binary", str(cfg.disorder.name))


def experiment_name(cfg: DictConfig) -> str:
    """``logger.experiment_name``, else the enclosing sweep's experiment, else
    ``ecgml-<disorder>`` (binary task) or ``ecgml-<task>``."""
    _, sweep_experiment = parent_run()
    return cfg.logger.experiment_name or sweep_experiment or f"ecgml-{run_subject(cfg)}"


def run_name(cfg: DictConfig) -> str:
    if cfg.logger.run_name:
        return str(cfg.logger.run_name)
    name = f"{run_subject(cfg)}-{cfg.model.name}-s{cfg.seed}"
    if cfg.split.name == "group_kfold":
        name += f"-fold{cfg.split.fold}"
    elif cfg.split.name == "leave_center_out":
        name += f"-{cfg.split.by}-{cfg.split.fold}"
    return name


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the checkout (``unknown`` outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    return {
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
    }


def config_digest(cfg: DictConfig) -> str:
    return hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:12]


def run_tags(
    cfg: DictConfig, tags: dict[str, str] | None = None, parent_run_id: str | None = None
) -> dict[str, str]:
    """Git state, this process (pid, host), the caller's tags, ``logger.tags`` and the parent
    run (if any)."""
    all_tags: dict[str, str] = {**git_state(), **process_tags(), **(tags or {})}
    all_tags.update({str(k): str(v) for k, v in (cfg.logger.tags or {}).items()})
    parent_run_id = parent_run_id or parent_run()[0]
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    return all_tags


def open_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    """Create an MLflow run and return its id: the one place ecgml starts a run (the training
    lifecycle, pretraining, a cross-validation or sweep parent, a comparison). MLflow's context
    tags come first (``mlflow.source.name``/``type``, ``mlflow.user``: the runs table's Source
    and User columns), the caller's win. Whoever opens one ends it through :func:`tracked_run`
    (or, for a sweep parent, when the sweep ends)."""
    tagged = resolve_tags(tags)
    return str(client.create_run(experiment_id, run_name=name, tags=tagged).info.run_id)


def make_logger(
    cfg: DictConfig, tags: dict[str, str] | None = None, parent_run_id: str | None = None
) -> MLFlowLogger:
    """An MLFlowLogger on a new run (:func:`open_run`) in the configured store and experiment."""
    from lightning.pytorch.loggers import MLFlowLogger  # heavy: only training needs it

    store = resolve_store(cfg.logger.tracking_uri)
    name = experiment_name(cfg)
    experiment_id = ensure_experiment(store, name)
    client = MlflowClient(store.tracking_uri)
    try:
        end_dead_runs(client)
    except MlflowException as err:  # housekeeping: never the reason a run does not start
        log.warning("could not check for runs left RUNNING by dead processes: %s", err)
    run_id = open_run(client, experiment_id, run_name(cfg), run_tags(cfg, tags, parent_run_id))
    return MLFlowLogger(
        experiment_name=name, tracking_uri=store.tracking_uri, run_id=run_id, log_model=False
    )


@contextlib.contextmanager
def lightning_run(
    cfg: DictConfig,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    resume_run_id: str | None = None,
) -> Iterator[MLFlowLogger]:
    """A new run (or ``resume_run_id`` re-opened) as a Lightning logger, ended by
    :func:`tracked_run` when the block leaves."""
    if resume_run_id is None:
        logger = make_logger(cfg, tags, parent_run_id)
    else:
        logger = reopen_logger(cfg, resume_run_id)
    with tracked_run(logger.experiment, run_id_of(logger)):
        yield logger


@contextlib.contextmanager
def client_run(
    client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str]
) -> Iterator[str]:
    """A new run logged through ``client`` (no Lightning), ended by :func:`tracked_run`."""
    run_id = open_run(client, experiment_id, name, {**git_state(), **process_tags(), **tags})
    with tracked_run(client, run_id):
        yield run_id


def reopen_logger(cfg: DictConfig, run_id: str) -> MLFlowLogger:
    """An MLFlowLogger on the existing run ``run_id`` (``resume=``), RUNNING again and owned by
    this process (its pid/host tags, so :func:`end_dead_runs` judges this process now)."""
    from lightning.pytorch.loggers import MLFlowLogger  # heavy: only training needs it

    store = resolve_store(cfg.logger.tracking_uri)
    client = MlflowClient(store.tracking_uri)
    resumes = int(client.get_run(run_id).data.tags.get(RESUMED_TAG, "0")) + 1
    client.update_run(run_id, status="RUNNING")
    for key, value in {**process_tags(), RESUMED_TAG: str(resumes)}.items():
        client.set_tag(run_id, key, value)
    with contextlib.suppress(MlflowException):  # absent unless end_dead_runs marked it
        client.delete_tag(run_id, KILLED_REASON_TAG)
    return MLFlowLogger(
        experiment_name=experiment_name(cfg),
        tracking_uri=store.tracking_uri,
        run_id=run_id,
        log_model=False,
    )


#: Config keys whose values are this machine's folders and store (``paths.*``, ``data.cache_dir``,
#: ``logger.tracking_uri``): not params, since they differ per machine and compare nothing in a
#: runs table; the run's resolved ``config.yaml`` keeps them.
MACHINE_KEYS = ("paths", "data.cache_dir", "logger.tracking_uri")


def is_machine_key(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in MACHINE_KEYS)


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as flat ``a.b.c`` params (MLflow params hold ≤ 6000 chars), but the
    machine's own folders (:data:`MACHINE_KEYS`)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif not is_machine_key(prefix):
            flat[prefix] = str(node)[:6000]

    walk("", container)
    return flat


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics MLflow can store (None and NaN/inf dropped)."""
    out = {}
    for key, value in metrics.items():
        if value is not None and abs(float(value)) != float("inf") and float(value) == value:
            out[key] = float(value)
    return out


def log_metrics_batch(client: MlflowClient, run_id: str, metrics: dict[str, Any]) -> None:
    finite = [Metric(k, v, 0, 0) for k, v in finite_metrics(metrics).items()]
    for start in range(0, len(finite), 200):
        client.log_batch(run_id, metrics=finite[start : start + 200])


def log_params_batch(client: MlflowClient, run_id: str, cfg: DictConfig) -> None:
    params = [Param(k, v) for k, v in flatten_config(cfg).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])


#: The run description MLflow's UI shows on the run page and in the runs table.
NOTE_TAG = "mlflow.note.content"


def _rows_digest(frame: Any) -> str:
    """8 hex digits of the split's rows: MLflow keeps one dataset per (name, digest), so two
    runs with other patients in a split must not share one."""
    text = frame.to_csv(index=False).encode()
    return hashlib.sha256(text).hexdigest()[:8]


def log_dataset_inputs(
    client: MlflowClient,
    run_id: str,
    splits: dict[str, Any],
    source: str,
    name: str,
    digest: str,
) -> None:
    """Each split's beat table (one row per beat: ids, group, label) as an MLflow dataset input
    with context ``train`` / ``val`` / ``test``, so the runs table's Dataset column and the run
    page show what the model saw. Digest: ``<store digest[:8]>-<the split's rows digest>``."""
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for context, frame in splits.items():
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a path
            warnings.filterwarnings("ignore", message=".*dataset source can be interpreted")
            # the hint about integer columns concerns a served model's schema, not a table
            # describing the split (its labels and beat indices are integers by nature)
            warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
            dataset = from_pandas(
                frame,
                source=source,
                name=f"{name}-{context}",
                digest=f"{digest[:8]}-{_rows_digest(frame)}",
            )
            entity = dataset._to_mlflow_entity()  # where the schema is inferred
        tags = [InputTag(key="mlflow.data.context", value=context)]
        inputs.append(DatasetInput(dataset=entity, tags=tags))
    log_inputs_racing(client, run_id, inputs)


#: How many times :func:`log_inputs_racing` tries (MLflow's check-then-insert of a dataset).
LOG_INPUTS_ATTEMPTS = 3


def log_inputs_racing(client: MlflowClient, run_id: str, inputs: list[Any]) -> None:
    """``client.log_inputs``, tried again when another run created the same dataset at the same
    moment: MLflow's store looks a dataset up and then inserts it, so two trials of one sweep
    logging the same split at once can both insert, and the loser fails on the unique key
    (sqlite "UNIQUE constraint failed", PostgreSQL "duplicate key"). The retry finds the
    dataset and only links it to the run."""
    for attempt in range(1, LOG_INPUTS_ATTEMPTS + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            duplicate = any(k in str(err) for k in ("UNIQUE constraint", "duplicate key"))
            if not duplicate or attempt == LOG_INPUTS_ATTEMPTS:
                raise
            log.info("dataset logged by another run at the same moment: linking it (%s)", run_id)


def run_id_of(logger: Any) -> str:
    """The MLflow run id of a started ``MLFlowLogger`` (its ``run_id`` is typed optional: it is
    None only before the logger created its run, which ours do on construction)."""
    run_id = logger.run_id
    if not run_id:
        raise RuntimeError("the MLflow logger has no run yet")
    return str(run_id)
