"""The only code that knows every stage: one run (:func:`run_one`) and cross-validation.

The pipeline sits below the sweep and the CLI and never imports them: extra Lightning callbacks
(Optuna pruning inside a trial) are handed in by the caller through ``callbacks=``.
"""

from ecgml.pipeline.fitters import Fitter, LightningFitter, SklearnFitter, make_fitter
from ecgml.pipeline.run import RunResult, run_one

__all__ = ["Fitter", "LightningFitter", "RunResult", "SklearnFitter", "make_fitter", "run_one"]
