"""Make a trained module fast to score: eval mode, Conv+BatchNorm folded where the graph allows."""

from __future__ import annotations

import copy
import logging

from torch import nn

log = logging.getLogger(__name__)


def fused_for_inference(module: nn.Module) -> nn.Module:
    """An eval-mode copy with every Conv→BatchNorm pair folded into one Conv (same outputs).

    Uses ``torch.fx``'s fusion pass; a module ``torch.fx`` cannot trace (data-dependent control
    flow) is returned as an eval-mode copy, unfused. The caller's module is left untouched.
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(module).eval()
    if not all(getattr(m, "fx_traceable", True) for m in module.modules()):
        # a module (or one inside it) branches on its input type: fx would freeze one branch
        return model
    try:
        return fuse(model)
    except Exception as error:
        log.debug("%s is not fx-traceable (%s): scoring it unfused", type(module).__name__, error)
        return model
