"""The entry points: one module per ``python -m ecgml.<name>`` command, and their plumbing.

Every CLI body lives in ``ecgml/cli/<name>.py`` as ``main = hydra_entry("<name>")(func)``;
``python -m ecgml.<name>`` is a two-line shim importing that ``main``. :func:`hydra_entry` turns
user errors (:class:`~ecgml.errors.EcgmlError`) into one line on stderr and exit code 2 (see
docs/contracts.md), with the traceback only when ``debug=true``.

``debug`` is also the name of the config group of debug overlays (``debug=fdr``,
``debug=overfit``). Hydra's override parser reads ``debug=true`` as a boolean and refuses a
boolean for a group ("Config group override must be a string or a list"), so a
``conf/debug/true.yaml`` could only be selected as ``debug='true'``. The command-line flag
``debug=true|false`` is therefore translated to the config key ``traceback`` before Hydra
parses the arguments (tests/test_config.py checks that Hydra still refuses it).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig

from ecgml import CONF_DIR
from ecgml.errors import EcgmlError
from ecgml.outputs.files import storage_error

HYDRA_VERSION_BASE = "1.3"
_DEBUG_FLAGS = {"true": "true", "false": "false", "1": "true", "0": "false"}
log = logging.getLogger("ecgml")
#: Exit status after Ctrl-C (128 + SIGINT), as shells report an interrupted command.
INTERRUPTED_EXIT = 130


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Translate ``debug=true|false`` into ``traceback=…`` (see the module docstring)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "debug" and value.lower() in _DEBUG_FLAGS:
            out.append(f"++traceback={_DEBUG_FLAGS[value.lower()]}")
        else:
            out.append(arg)
    return out


def debug_enabled(cfg: DictConfig) -> bool:
    """True when the config asks for full tracebacks (``debug=true`` or a debug overlay)."""
    return bool(cfg.traceback)


#: What an interrupted command says it left behind, from its config (default: nothing specific).
InterruptNote = Callable[[DictConfig], str]


def _stopped(_cfg: DictConfig) -> str:
    return "stopped"


def entry_point(
    func: Callable[[DictConfig], Any], interrupted: InterruptNote = _stopped
) -> Callable[[DictConfig], Any]:
    """Turn user errors into one line on stderr and exit code 2, and Ctrl-C into one line
    (``interrupted: <note>; rerun to start over``) and exit code 130."""

    @functools.wraps(func)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return func(cfg)
        except KeyboardInterrupt:
            # tracked runs are already marked KILLED; folder writers removed their temporaries
            print(
                f"interrupted: {interrupted(cfg)}; rerun to start over", file=sys.stderr, flush=True
            )
            sys.exit(INTERRUPTED_EXIT)
        except EcgmlError as err:
            if debug_enabled(cfg):
                raise
            log.debug("user error", exc_info=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)
        except OSError as err:  # a full disk or a read-only folder is the user's to fix
            known = storage_error(err)
            if known is None or debug_enabled(cfg):
                raise
            log.debug("storage error", exc_info=True)
            print(f"error: {known}", file=sys.stderr, flush=True)
            sys.exit(known.exit_code)

    return wrapper


#: Library deprecation warnings about the libraries' own internals, which a user cannot act on.
LIBRARY_INTERNALS = (
    ("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning),  # Lightning on torch 2.13
)


def quiet_library_warnings() -> None:
    """Hide :data:`LIBRARY_INTERNALS` from a command's console (tests keep seeing them)."""
    for message, category in LIBRARY_INTERNALS:
        warnings.filterwarnings("ignore", message=f".*{re.escape(message)}", category=category)


def quiet_mlflow_console() -> None:
    """MLflow's INFO lines (``Creating initial MLflow database tables…``) and its per-file
    download bars are not for ecgml's users: off, unless the user set MLflow's own variables
    (``MLFLOW_LOGGING_LEVEL``, ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # configured when it was imported


def config_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (its groups' nodes and their leaves)."""
    keys = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys += config_keys(value, f"{dotted}.")
    return keys


def misspelt_keys(config_name: str, args: Sequence[str]) -> list[str]:
    """``did you mean …`` for each ``key=value`` of ``args`` whose key the config lacks but
    nearly has (Hydra says only that the key is not in the config)."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = [a for a in args if "=" in a and not a.startswith(("+", "~", "hydra", "-"))]
    if not overrides:
        return []
    GlobalHydra.instance().clear()  # the refused command's own Hydra is done
    try:
        with initialize_config_dir(str(CONF_DIR), version_base=HYDRA_VERSION_BASE):
            cfg = compose(config_name)
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()
    tree = OmegaConf.to_container(cfg, resolve=False)
    known = config_keys(tree) if isinstance(tree, dict) else []
    lines = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            lines.append(f"did you mean {close[0]}={value} (instead of {key})?")
    return lines


def hydra_entry(
    config_name: str, interrupted: InterruptNote = _stopped
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorator: make ``func(cfg)`` a ``python -m`` entry point over ``conf/<config_name>``;
    ``interrupted`` says, from the config, what a Ctrl-C left behind."""

    def decorate(func: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_main = hydra.main(
            config_path=str(CONF_DIR), config_name=config_name, version_base=HYDRA_VERSION_BASE
        )(entry_point(func, interrupted))

        @functools.wraps(func)
        def main() -> Any:
            sys.argv = normalize_argv(sys.argv)
            quiet_library_warnings()
            quiet_mlflow_console()
            try:
                return hydra_main()
            except SystemExit as stop:
                if stop.code == 1:  # Hydra refused the command line: suggest the keys meant
                    for line in misspelt_keys(config_name, sys.argv[1:]):
                        print(line, file=sys.stderr, flush=True)
                raise

        return main

    return decorate
