"""Lightning callbacks of a sweep trial: Optuna pruning.

Kept apart from :mod:`ecgml.sweep.context` so that importing the context does not import
lightning; this module imports the context, never the reverse. The CLI hands
:func:`trial_callbacks` to the pipeline (``run_one(..., callbacks=...)``): the pipeline sits
below the sweep and never imports it.
"""

from __future__ import annotations

import lightning.pytorch as L

from ecgml.sweep import context
from ecgml.tracking.runs import run_id_of


class OptunaPruning(L.Callback):
    """Reports ``monitor`` to the trial after every validation epoch; when the pruner says so,
    stops training gracefully (the run is still evaluated and logged, tagged as pruned).

    Under DDP (``trainer=ddp_cpu``: ranks spawned from the fit, each with a copy of this
    callback) rank zero reports and decides, the others follow; the sweeper learns of the
    pruning from the run's ``optuna.pruned_at_epoch`` tag, as the copy's state stays in the rank.
    """

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
        stop = False
        if trainer.is_global_zero:  # DDP: one report per epoch; every rank follows rank zero
            self.active.trial.report(float(value), step=epoch)
            stop = self.active.prune and self.active.trial.should_prune()
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            self.active.pruned_at_epoch = epoch
            trainer.should_stop = True
            logger = trainer.logger
            if trainer.is_global_zero and logger is not None and hasattr(logger, "experiment"):
                logger.experiment.set_tag(run_id_of(logger), "optuna.pruned_at_epoch", str(epoch))


def trial_callbacks() -> list[L.Callback]:
    """The extra Lightning callbacks of the current job: Optuna pruning inside a trial."""
    active = context.active_trial()
    return [OptunaPruning(active)] if active is not None else []
