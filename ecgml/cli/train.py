"""``python -m ecgml.train``: train and evaluate one binary disorder model, tracked in MLflow.

A holdout run is one :func:`~ecgml.pipeline.run_one`; ``split.fold=null`` on a k-fold split runs
every fold (:func:`~ecgml.pipeline.crossval.cross_validate`). Inside an Optuna trial the sweep's
pruning callback is handed to the pipeline here (the pipeline never imports the sweep).
"""

from __future__ import annotations

import time

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.pipeline.crossval import cross_validate, runs_all_folds
from ecgml.pipeline.run import run_one
from ecgml.pipeline.summary import format_summary
from ecgml.sweep.callbacks import trial_callbacks
from ecgml.sweep.context import objective_value


def train(cfg: DictConfig) -> float:
    start = time.perf_counter()
    callbacks = trial_callbacks()
    if runs_all_folds(cfg):
        result = cross_validate(cfg, callbacks=callbacks)
    else:
        result = run_one(cfg, callbacks=callbacks)
    print(format_summary(cfg, result, time.perf_counter() - start), flush=True)
    return objective_value(cfg, result)


main = hydra_entry("train")(train)
