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
from concurrent.futures import ProcessPoolExecutor

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
