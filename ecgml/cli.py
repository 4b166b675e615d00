"""Shared plumbing for the ``python -m ecgml.<name>`` entry points.

Each entry point is a thin ``@hydra.main`` around a plain function. :func:`entry_point`
wraps that function so that an :class:`~ecgml.errors.EcgmlError` becomes a one-line message on
stderr and exit code 2 (the Contracts), with the traceback only when ``debug=true``.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from ecgml.errors import EcgmlError

F = TypeVar("F", bound=Callable[..., Any])

HYDRA_VERSION_BASE = "1.3"


def debug_enabled(cfg: DictConfig) -> bool:
    """True when the config asks for full tracebacks (``debug=true`` or a debug overlay)."""
    value = cfg.get("debug", False)
    return bool(value) if isinstance(value, bool | int | str) or value is None else True


def entry_point(func: F) -> F:
    """Turn user errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return func(cfg)
        except EcgmlError as err:
            if debug_enabled(cfg):
                raise
            logging.getLogger("ecgml").debug("user error", exc_info=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)

    return wrapper  # type: ignore[return-value]
