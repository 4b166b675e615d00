"""Where a stage's parallel work runs: local worker processes, or a Dask cluster's workers.

``engine.address`` null (the default) runs jobs in a local ``ProcessPoolExecutor`` of
``n_jobs`` processes; ``tcp://host:port`` hands them to the Dask scheduler at that address
(``dask scheduler`` + ``dask worker tcp://host:port`` on any machines, or a
``distributed.LocalCluster``). Both are a :class:`concurrent.futures.Executor`, so a stage's
code path is the same: ``executor.map(func, jobs)`` yields the results in job order. On a cluster
the workers need ecgml installed and must see the output folder (a shared file system); a job
whose worker dies is retried by Dask on another worker (``distributed.scheduler.allowed-
failures``, 3 by default), and a scheduler that stops answering ends the stage with one line,
its temporary output removed.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any, TypeVar

from ecgml.errors import EcgmlError
from ecgml.outputs.workers import WORKER_DIED, map_isolated, stop_pool

Job = TypeVar("Job")
Result = TypeVar("Result")

#: Seconds to wait for a scheduler to answer before the stage gives up (one line, exit 2).
CONNECT_TIMEOUT_S = 10
#: Local worker processes when ``n_jobs`` is null: every core, up to this many.
MAX_LOCAL_WORKERS = 8


def local_workers(n_jobs: Any) -> int:
    """``n_jobs`` as a worker count; null (or 0) = every core, up to :data:`MAX_LOCAL_WORKERS`."""
    return int(n_jobs) if n_jobs else min(os.cpu_count() or 1, MAX_LOCAL_WORKERS)


def check_address(address: Any) -> str | None:
    """``engine.address`` as a string (None: local processes); anything but ``tcp://``,
    ``tls://``, ``inproc://`` or ``ucx://`` is one line."""
    if address in (None, "", "null"):
        return None
    text = str(address)
    if not text.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise EcgmlError(
            f"engine.address={text!r} is not a Dask scheduler address: give tcp://host:port "
            "(dask scheduler prints it), or null for local processes"
        )
    return text


def check_reachable(address: str | None) -> None:
    """Refuse, before any work, a ``tcp://host:port`` nothing listens on (one line)."""
    if address is None or not address.startswith("tcp://"):
        return
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
    except (OSError, ValueError) as err:
        raise EcgmlError(
            f"engine.address={address}: no Dask scheduler answers there "
            f"({type(err).__name__}): start one (`dask scheduler`) with workers, or leave "
            "engine.address null"
        ) from None


@contextmanager
def executor(
    workers: int, address: str | None, initializer: Callable[[], None] | None = None
) -> Iterator[Executor]:
    """An executor for a stage's jobs: ``workers`` local processes, or the cluster at
    ``address``. On an error or Ctrl-C the local workers are killed and the cluster's pending
    jobs cancelled before the exception goes on."""
    if address is None:
        method = "spawn" if "torch" in sys.modules else "fork"  # fork is unsafe once torch runs
        pool = ProcessPoolExecutor(workers, mp_context=get_context(method), initializer=initializer)
        try:
            yield pool
        except BaseException:
            stop_pool(pool)
            raise
        pool.shutdown()
        return
    client = _connect(address)
    cluster = client.get_executor()
    try:
        yield cluster
    except BaseException as err:
        cluster.shutdown(wait=False)
        if _lost_cluster(err):
            raise EcgmlError(
                f"engine.address={address}: the Dask cluster stopped answering mid-run "
                f"({type(err).__name__}): nothing was kept; rerun when it is back"
            ) from None
        raise
    finally:
        client.close()


def map_jobs(
    func: Callable[[Job], Result],
    jobs: Sequence[Job],
    n_jobs: int,
    failed: Callable[[Job, str], Result],
    address: str | None = None,
) -> Iterator[tuple[int, Result]]:
    """``(index, func(job))`` as jobs finish, each job isolated: on ``n_jobs`` local processes
    (:func:`~ecgml.outputs.workers.map_isolated`), or on the Dask cluster at ``address``. A job
    that raises, or whose worker dies (on a cluster: after Dask's retries), gives
    ``failed(job, why)`` and every other result stands; a cluster that stops answering ends
    the stage with one line."""
    if address is None:
        yield from map_isolated(func, jobs, n_jobs, failed)
        return
    from distributed import KilledWorker

    with executor(0, address) as cluster:
        futures = {cluster.submit(func, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures.pop(future)
            try:
                result = future.result()
            except KilledWorker:
                result = failed(jobs[index], WORKER_DIED)
            except Exception as err:
                if _lost_cluster(err):
                    raise
                result = failed(jobs[index], f"internal error: {type(err).__name__}: {err}")
            yield index, result


def _connect(address: str) -> Any:
    from distributed import Client  # imported only when a cluster is asked for

    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise EcgmlError(
            f"engine.address={address}: no Dask scheduler answers there ({type(err).__name__}):"
            " start one (`dask scheduler`) with workers, or leave engine.address null"
        ) from None


def _lost_cluster(err: BaseException) -> bool:
    from distributed.comm.core import CommClosedError

    return isinstance(err, CommClosedError | TimeoutError | ConnectionError)
