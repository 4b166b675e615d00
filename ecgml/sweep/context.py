"""What a training job needs to know about the sweep it runs in (if any).

A multirun/sweep parent publishes itself through environment variables (so it reaches jobs in
this process and in launcher subprocesses alike); an Optuna trial run in-process is handed to the
job through :func:`trial_callbacks`.
"""

from __future__ import annotations

import os
from typing import Any

PARENT_RUN_ENV = "ECGML_PARENT_RUN_ID"
EXPERIMENT_ENV = "ECGML_SWEEP_EXPERIMENT"


def parent_run() -> tuple[str | None, str | None]:
    """``(parent_run_id, experiment_name)`` of the enclosing multirun, or ``(None, None)``."""
    return os.environ.get(PARENT_RUN_ENV) or None, os.environ.get(EXPERIMENT_ENV) or None


def trial_callbacks(cfg: Any) -> list[Any]:
    """Lightning callbacks the active sweep trial needs (e.g. pruning); none outside a sweep."""
    return []
