"""The only code that knows every stage: one run (:func:`run_one`) and cross-validation.

The pipeline sits below the sweep and the CLI and never imports them: extra Lightning callbacks
(Optuna pruning inside a trial) are handed in by the caller through ``callbacks=``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ecgml.pipeline.context import RunResult
    from ecgml.pipeline.fitters import Fitter, LightningFitter, SklearnFitter, make_fitter
    from ecgml.pipeline.run import run_one

#: Where each public name lives: imported on first use, so importing one light submodule
#: (the served model does) does not import every sibling.
_LAZY = {
    "Fitter": "ecgml.pipeline.fitters",
    "LightningFitter": "ecgml.pipeline.fitters",
    "RunResult": "ecgml.pipeline.context",
    "SklearnFitter": "ecgml.pipeline.fitters",
    "make_fitter": "ecgml.pipeline.fitters",
    "run_one": "ecgml.pipeline.run",
}

__all__ = ["Fitter", "LightningFitter", "RunResult", "SklearnFitter", "make_fitter", "run_one"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
