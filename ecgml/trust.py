"""The one gate between a stored file and the code it may name.

A run's ``config.yaml`` and a logged model's ``ecgml_model.json`` name classes in ``_target_``
keys, and Hydra would import and call whatever they name. Anyone who can write to a shared
tracking store could then run code on every user who resumes, explains or serves. So every
``_target_`` read back from a stored file passes :func:`trusted_class` before anything is
instantiated:

- the string is split at its last dot, the module imported with
  :func:`importlib.import_module` and the name taken with one :func:`getattr` — no prefix test,
  no attribute walk; the value must be a class;
- an ecgml class passes when its module is one of :func:`trusted_ecgml_modules` (every module
  directly in the backbone and task packages, the record models, the splits: a new backbone or
  task file needs no registration) — checked *before* the import — and the class was defined
  in that module;
- a torch or Lightning class passes only when the whole string is in
  :data:`TRUSTED_EXTERNAL_CLASSES`.

:func:`check_stored_config` walks a whole stored config: besides each ``_target_``, it refuses a
target inside another target's arguments (except ``trainer.strategy``), ``_partial_`` anywhere
but the optimizer and the scheduler, every other Hydra directive (``_args_``, ``_recursive_``,
…) and every interpolation (``${…}``: a resolver such as ``oc.create`` could build a target at
resolution time; ecgml writes its configs resolved).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ecgml.errors import EcgmlError

#: Packages whose every direct (public) module may hold classes a stored file names.
TRUSTED_ECGML_PACKAGES = ("ecgml.models.backbones", "ecgml.tasks")
#: Single ecgml modules whose classes a stored file may name.
TRUSTED_ECGML_MODULES = ("ecgml.models.record_models", "ecgml.data.splits")
#: The modules whose classes a logged model may name as its network.
BACKBONE_MODULES_OF = ("ecgml.models.backbones", "ecgml.models.record_models")
#: Classes outside ecgml a stored run config may name: the whole string, exactly. Every one
#: that ``conf/`` names is here (a test checks it), plus well-known siblings a user may pick on
#: the command line.
TRUSTED_EXTERNAL_CLASSES = frozenset(
    {
        "torch.optim.AdamW",
        "torch.optim.Adam",
        "torch.optim.SGD",
        "torch.optim.RMSprop",
        "torch.optim.NAdam",
        "torch.optim.RAdam",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "torch.optim.lr_scheduler.CosineAnnealingWarmRestarts",
        "torch.optim.lr_scheduler.OneCycleLR",
        "torch.optim.lr_scheduler.StepLR",
        "torch.optim.lr_scheduler.ExponentialLR",
        "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "lightning.pytorch.Trainer",
        "lightning.pytorch.strategies.DDPStrategy",
        "lightning.pytorch.callbacks.ModelCheckpoint",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.StochasticWeightAveraging",
        "lightning.pytorch.callbacks.LearningRateMonitor",
    }
)
#: Where a stored config may carry ``_partial_`` (factories the pipeline completes).
PARTIAL_ALLOWED = frozenset({"model.optimizer", "model.scheduler"})
#: Where a target may sit inside another target's arguments.
NESTED_TARGET_ALLOWED = frozenset({"trainer.strategy"})

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FIX = "it was not written by ecgml or was edited since: re-log it with ecgml.train"


@cache
def _package_modules(package: str) -> frozenset[str]:
    """The public modules directly in ``package``, found on disk without importing them."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    found = pkgutil.iter_modules(list(spec.submodule_search_locations))
    return frozenset(
        f"{package}.{m.name}" for m in found if not m.ispkg and not m.name.startswith("_")
    )


def trusted_ecgml_modules(packages: tuple[str, ...] | None = None) -> frozenset[str]:
    """The ecgml modules whose classes a stored file may name (restricted to ``packages``, each
    a package or a single module, when given)."""
    allowed: set[str] = set()
    for package in TRUSTED_ECGML_PACKAGES:
        allowed |= _package_modules(package)
    allowed |= set(TRUSTED_ECGML_MODULES)
    if packages is None:
        return frozenset(allowed)
    return frozenset(m for m in allowed if m in packages or m.rsplit(".", 1)[0] in packages)


def trusted_class(
    target: object, source: str, field: str, within: tuple[str, ...] | None = None
) -> type:
    """The class ``target`` names, once it passed the gate (module docstring); else a one-line
    :class:`EcgmlError` naming ``source`` and ``field``. ``within`` narrows the ecgml modules
    (and rules out the external classes): e.g. a logged model may only name a network."""
    text = _printable(target)
    if not isinstance(target, str) or not _DOTTED.match(target):
        raise _refused(source, field, text, "is not a dotted class path")
    module_name, name = target.rsplit(".", 1)
    external = within is None and target in TRUSTED_EXTERNAL_CLASSES
    if not external and module_name not in trusted_ecgml_modules(within):
        raise _refused(source, field, text, _allowed_hint(within))
    if name.startswith("_"):
        raise _refused(source, field, text, "names a private name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise _refused(source, field, text, f"cannot be imported ({err})") from None
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        raise _refused(source, field, text, "is not a class")
    if not external and cls.__module__ != module_name:
        raise _refused(source, field, text, f"is not defined in {module_name}")
    return cls


def _allowed_hint(within: tuple[str, ...] | None) -> str:
    if within is not None:
        return f"is not a class of {', '.join(within)}"
    return (
        "is not a class ecgml builds from a stored file (its backbones, record models, tasks, "
        f"splits or {len(TRUSTED_EXTERNAL_CLASSES)} named torch/Lightning classes)"
    )


def _refused(source: str, field: str, target: str, why: str) -> EcgmlError:
    return EcgmlError(f"{source}: {field}={target[:120]} {why}: refusing to build it; {_FIX}")


def _printable(value: object) -> str:
    """``value`` as message text on one line: a plain string as it is, anything else (or a
    string with line breaks or control characters) as its repr."""
    return value if isinstance(value, str) and value.isprintable() else repr(value)


def _directive(key: object) -> bool:
    text = str(key)
    return len(text) > 2 and text.startswith("_") and text.endswith("_")


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair below ``node``, mappings and lists included."""
    yield path, node
    children: Any = (
        node.items()
        if isinstance(node, Mapping)
        else enumerate(node)
        if isinstance(node, list | tuple)
        else ()
    )
    for key, value in children:
        name = _printable(key)
        yield from _walk(value, f"{path}.{name}" if path else name)


def check_stored_config(config: Mapping[str, Any], source: str) -> None:
    """Refuse a stored run config that could make Hydra build anything but a trusted class
    (rules in the module docstring); checks every class it names with :func:`trusted_class`."""
    targets = []
    for path, value in _walk(config, ""):
        if isinstance(value, str) and "${" in value:
            raise EcgmlError(
                f"{source}: {path} holds an interpolation ({value[:60]!r}); ecgml stores its "
                f"configs resolved: refusing it; {_FIX}"
            )
        if not isinstance(value, Mapping):
            continue
        for key in value:
            if _directive(key):
                _check_directive(path, str(key), value[key], source)
        if "_target_" in value:
            targets.append((path, value["_target_"]))
    paths = [path for path, _ in targets]
    for path, target in targets:
        outer = [t for t in paths if t != path and path.startswith(f"{t}.")]
        if outer and path not in NESTED_TARGET_ALLOWED:
            raise EcgmlError(
                f"{source}: {path} names a class inside {outer[0]}'s arguments: refusing it; {_FIX}"
            )
        trusted_class(target, source, f"{path}._target_")


def _check_directive(path: str, key: str, value: Any, source: str) -> None:
    where = f"{path}.{_printable(key)}" if path else _printable(key)
    if key == "_target_":
        return
    if key == "_partial_" and path in PARTIAL_ALLOWED and isinstance(value, bool):
        return
    raise EcgmlError(
        f"{source}: {where} is a Hydra directive ecgml never stores: refusing it; {_FIX}"
    )


def check_backbone_config(backbone: Mapping[str, Any], source: str) -> type:
    """The network class a logged model's ``backbone`` config names, once it passed the gate:
    a class of the backbone or record-model modules, no other directive anywhere below."""
    if not isinstance(backbone, Mapping):
        raise EcgmlError(f"{source}: its backbone config is not a mapping; {_FIX}")
    for path, value in _walk(backbone, "backbone"):
        if not isinstance(value, Mapping):
            if isinstance(value, str) and "${" in value:
                raise EcgmlError(f"{source}: {path} holds an interpolation: refusing it; {_FIX}")
            continue
        nested = [
            k for k in value if _directive(k) and not (path == "backbone" and k == "_target_")
        ]
        if nested:
            directive = f"{path}.{_printable(nested[0])}"
            raise EcgmlError(
                f"{source}: backbone config carries the Hydra directive {directive} "
                f"(a logged model may only name its backbone class): refusing to build it; {_FIX}"
            )
    return trusted_class(
        backbone.get("_target_"), source, "backbone._target_", within=BACKBONE_MODULES_OF
    )


def read_stored_config(path: Path, source: str) -> DictConfig:
    """A stored run ``config.yaml``, parsed safely (no YAML tags) and checked by
    :func:`check_stored_config`; one-line :class:`EcgmlError` otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        loaded = OmegaConf.create(text)
        plain = OmegaConf.to_container(loaded, resolve=False)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EcgmlError(
            f"{source}: {path.name} is not a plain YAML config ({first}); {_FIX}"
        ) from None
    if not isinstance(loaded, DictConfig) or not isinstance(plain, dict):
        raise EcgmlError(f"{source}: {path.name} is not a YAML mapping; {_FIX}")
    check_stored_config({str(k): v for k, v in plain.items()}, source)
    return loaded


def read_stored_overrides(path: Path, source: str) -> list[str]:
    """A run's ``overrides.yaml``: a list of ``key=value`` strings (kept for the record)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise EcgmlError(f"{source}: {path.name} is not plain YAML; {_FIX}") from None
    if loaded is None:
        return []
    if not isinstance(loaded, list) or not all(isinstance(o, str) for o in loaded):
        raise EcgmlError(f"{source}: {path.name} is not a list of overrides; {_FIX}")
    return loaded
