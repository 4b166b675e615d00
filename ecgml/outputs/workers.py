"""Pool workers that leave the interrupt to their parent and die with it.

A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent stops
the pool and reports one line) and exits within :data:`PARENT_POLL_S` once its parent is gone,
so a killed run leaves no process writing on. :func:`stop_pool` kills a pool's workers at once
instead of waiting for their jobs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

PARENT_POLL_S = 0.2


def init_worker() -> None:
    """``ProcessPoolExecutor(initializer=…)``: ignore Ctrl-C, exit when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    watcher = threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="ecgml-parent-watch", daemon=True
    )
    watcher.start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def stop_pool(pool: ProcessPoolExecutor, timeout_s: float = 5.0) -> None:
    """Cancel queued jobs and kill the running workers now (Ctrl-C, an error elsewhere)."""
    # The executor has no public way to reach its workers before Python 3.14.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout_s)


#: What a job whose worker process died (the OOM killer, a decoder crash) is told.
WORKER_DIED = "the worker process died on it (out of memory or a crash in a decoder)"

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_isolated(
    func: Callable[[Job], Result],
    jobs: Sequence[Job],
    n_jobs: int,
    failed: Callable[[Job, str], Result],
) -> Iterator[tuple[int, Result]]:
    """``(index, func(job))`` as jobs finish, in ``n_jobs`` processes (in this process when
    ``n_jobs`` is 1 or there is one job).

    One job is in flight per single-worker pool ("lane"), so a worker that dies names its job:
    that job's result is ``failed(job, WORKER_DIED)``, its lane is rebuilt and every other
    result stands; an exception a job raises becomes ``failed(job, "internal error: …")``.
    Ctrl-C or an error in the caller kills the workers at once.
    """
    if n_jobs <= 1 or len(jobs) <= 1:
        for index, job in enumerate(jobs):
            yield index, func(job)
        return
    yield from _map_lanes(func, jobs, min(n_jobs, len(jobs)), failed)


def _map_lanes(
    func: Callable[[Job], Result],
    jobs: Sequence[Job],
    n_lanes: int,
    failed: Callable[[Job, str], Result],
) -> Iterator[tuple[int, Result]]:
    todo = deque(enumerate(jobs))
    lanes = [_new_lane() for _ in range(n_lanes)]
    running: dict[Future, tuple[int, int]] = {}  # future -> (lane, job index)

    def feed(lane: int) -> None:
        if todo:
            index, job = todo.popleft()
            running[lanes[lane].submit(func, job)] = (lane, index)

    finished = False
    try:
        for lane in range(n_lanes):
            feed(lane)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                lane, index = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    result = failed(jobs[index], WORKER_DIED)
                    lanes[lane].shutdown(wait=False)
                    lanes[lane] = _new_lane()
                except Exception as err:  # e.g. a result that cannot be pickled: one job
                    result = failed(jobs[index], f"internal error: {type(err).__name__}: {err}")
                yield index, result
                feed(lane)
        finished = True
    finally:
        for pool in lanes:
            if finished:
                pool.shutdown()
            else:  # Ctrl-C or an error: kill the workers rather than wait for their jobs
                stop_pool(pool)


def _new_lane() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, initializer=init_worker)
