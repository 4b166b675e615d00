"""Lightning callbacks of a sweep trial: the per-epoch metrics recorder and Optuna pruning.

Kept apart from :mod:`ecgml.sweep.context` so that importing the context (every entry point
does, through ecgml.tracking) does not import lightning.
"""

from __future__ import annotations

import lightning.pytorch as L

from ecgml.sweep import context


class MetricsRecorder(L.Callback):
    """Keeps the last per-epoch metrics (``val/auroc_best`` …) for :func:`objective_value`."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        context._last_fit_metrics.clear()
        context._last_fit_metrics.update(context._as_floats(trainer.callback_metrics))
        if context._active is not None:
            context._active.fit_metrics = dict(context._last_fit_metrics)


class OptunaPruning(L.Callback):
    """Reports ``monitor`` to the trial after every validation epoch; when the pruner says so,
    stops training gracefully (the run is still evaluated and logged, tagged as pruned)."""

    def __init__(self, active: context.ActiveTrial) -> None:
        self.active = active

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        self.active.run_id = getattr(logger, "run_id", None)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.active.pruned_at_epoch is not None:
            return
        value = trainer.callback_metrics.get(self.active.monitor)
        if value is None:
            raise context.ObjectiveMetricMissing(
                f"pruning monitor {self.active.monitor!r} was not logged; logged: "
                f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}"
            )
        epoch = trainer.current_epoch
        self.active.trial.report(float(value), step=epoch)
        if self.active.prune and self.active.trial.should_prune():
            self.active.pruned_at_epoch = epoch
            trainer.should_stop = True
            logger = trainer.logger
            if logger is not None and hasattr(logger, "experiment"):
                logger.experiment.set_tag(logger.run_id, "optuna.pruned_at_epoch", str(epoch))
