"""MLflow tracking: the :class:`TrackingStore` and one tracked run (imports no ecgml stage)."""

from ecgml.tracking.runs import (
    EXPERIMENT_ENV,
    NOTE_TAG,
    PARENT_RUN_ENV,
    config_digest,
    experiment_name,
    finite_metrics,
    flatten_config,
    git_state,
    log_dataset_inputs,
    log_metrics_batch,
    log_params_batch,
    make_logger,
    parent_run,
    run_name,
    run_tags,
    tracked_run,
)
from ecgml.tracking.store import (
    TrackingStore,
    ensure_experiment,
    preserved_tracking_uri,
    resolve_store,
)

__all__ = [
    "EXPERIMENT_ENV",
    "NOTE_TAG",
    "PARENT_RUN_ENV",
    "TrackingStore",
    "config_digest",
    "ensure_experiment",
    "experiment_name",
    "finite_metrics",
    "flatten_config",
    "git_state",
    "log_dataset_inputs",
    "log_metrics_batch",
    "log_params_batch",
    "make_logger",
    "parent_run",
    "preserved_tracking_uri",
    "resolve_store",
    "run_name",
    "run_tags",
    "tracked_run",
]
