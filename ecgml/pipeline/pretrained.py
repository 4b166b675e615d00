"""The pretrained-encoder artifact: written by ``task=pretrain``, read by ``model.init_from``.

A pretrain run logs two files under ``pretrain/``:

- ``encoder.pt``: the backbone's ``state_dict`` as a plain ``{name: tensor}`` mapping
  (``torch.save``; read back with ``torch.load(..., weights_only=True)``, never unpickling
  objects);
- ``encoder.json``: ``format``, ``version``, ``model`` (``conf/model`` name), ``backbone`` (its
  config), ``seq_len``, ``fs``, ``r_index``, ``embedding_dim`` and the dataset digest.

:func:`load_pretrained_encoder` copies every tensor whose name and shape match into a freshly
built backbone: the classification head (``n_outputs=1`` instead of ``embedding_dim``) keeps its
fresh initialisation. ``init_from`` is an MLflow run id of the configured store, or a local
``encoder.pt`` / ``encoder.json`` file or the folder holding them.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient
from torch import nn

from ecgml.errors import EcgmlError
from ecgml.tracking import resolve_store
from ecgml.tracking.artifacts import fetch_run, has_artifact, run_artifact

log = logging.getLogger(__name__)

ARTIFACT_DIR = "pretrain"
WEIGHTS_FILE = "encoder.pt"
META_FILE = "encoder.json"
FORMAT = "ecgml-pretrain-encoder"
VERSION = 1
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_HINT = "pass the run_id printed by `python -m ecgml.train task=pretrain` or a path to encoder.pt"


@dataclass(frozen=True)
class PretrainedEncoder:
    """A read artifact: its metadata, its tensors and where it came from (for messages)."""

    meta: dict[str, Any]
    state: dict[str, torch.Tensor]
    source: str

    @property
    def model_name(self) -> str:
        return str(self.meta.get("model"))

    @property
    def target(self) -> str:
        return str((self.meta.get("backbone") or {}).get("_target_", ""))


def save_encoder(folder: Path, backbone: nn.Module, meta: dict[str, Any]) -> list[Path]:
    """Write ``encoder.pt`` + ``encoder.json`` into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in backbone.state_dict().items()}
    weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
    torch.save(state, weights)
    full = {"format": FORMAT, "version": VERSION, "weights": WEIGHTS_FILE, **meta}
    meta_path.write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
    return [weights, meta_path]


def read_pretrained(init_from: str, tracking_uri: str | None = None) -> PretrainedEncoder:
    """Read (and validate) the artifact ``init_from`` names: a run id or a local path."""
    text = str(init_from).strip()
    if not text:
        raise EcgmlError(f"model.init_from is empty: {_HINT}")
    path = Path(text).expanduser()
    if path.exists():
        return _read_folder(_artifact_folder(path), source=text)
    if not _RUN_ID.match(text):
        raise EcgmlError(
            f"model.init_from={text}: no such file or folder, and not a run id: {_HINT}"
        )
    with tempfile.TemporaryDirectory(prefix="ecgml-init-") as tmp:
        return _read_folder(_download(text, tracking_uri, Path(tmp)), source=f"run {text}")


def _artifact_folder(path: Path) -> Path:
    """The folder of ``encoder.json``: the file's own, ``path`` itself, or ``path/pretrain``."""
    if path.is_file():
        return path.parent
    return path / ARTIFACT_DIR if (path / ARTIFACT_DIR / META_FILE).is_file() else path


def _download(run_id: str, tracking_uri: str | None, into: Path) -> Path:
    uri = resolve_store(tracking_uri).tracking_uri
    client = MlflowClient(uri)
    fetch_run(client, run_id, uri, what="model.init_from")
    if has_artifact(client, run_id, f"{ARTIFACT_DIR}/{META_FILE}"):
        folder = run_artifact(client, run_id, ARTIFACT_DIR, into)
        if folder is not None:
            return folder
    raise EcgmlError(
        f"run {run_id} has no {ARTIFACT_DIR}/{META_FILE}: it is not an ecgml pretrain run "
        "(make one with `python -m ecgml.train task=pretrain`)"
    )


def _read_folder(folder: Path, source: str) -> PretrainedEncoder:
    meta = _read_meta(folder / META_FILE, source)
    weights = folder / str(meta.get("weights", WEIGHTS_FILE))
    return PretrainedEncoder(meta, _read_state(weights, source), source)


def _not_an_artifact(source: str, why: str) -> EcgmlError:
    return EcgmlError(
        f"model.init_from ({source}) is not an ecgml pretrain artifact: {why}; "
        "make one with `python -m ecgml.train task=pretrain`"
    )


def _read_meta(path: Path, source: str) -> dict[str, Any]:
    if not path.is_file():
        raise _not_an_artifact(source, f"{META_FILE} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _not_an_artifact(source, f"{META_FILE} is not readable JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _not_an_artifact(source, f"{META_FILE} has no format={FORMAT!r}")
    if meta.get("version") != VERSION:
        raise _not_an_artifact(source, f"version {meta.get('version')!r}, expected {VERSION}")
    return meta


def _read_state(path: Path, source: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise _not_an_artifact(source, f"{path.name} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch.load raises many types (pickle, zip, EOF, runtime) on a bad file
        raise _not_an_artifact(source, f"{path.name} is not a torch tensor file") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _not_an_artifact(source, f"{path.name} is not a mapping of names to tensors")
    return state


def _class_path(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def check_compatible(
    encoder: PretrainedEncoder, backbone: nn.Module, model_name: str | None = None
) -> None:
    """Refuse an encoder pretrained with another model than the one being built."""
    built = model_name or type(backbone).__name__
    same_name = model_name is None or encoder.model_name == model_name
    same_class = not encoder.target or encoder.target == _class_path(backbone)
    if not (same_name and same_class):
        raise EcgmlError(
            f"model.init_from ({encoder.source}) was pretrained with model={encoder.model_name} "
            f"but model={built} is being built: pass model={encoder.model_name} or a {built} "
            "pretrain run"
        )


#: Backbone settings that shape only the head (or nothing with weights): free to differ.
HEAD_ONLY_SETTINGS = frozenset({"dropout", "head_bins"})


def check_same_backbone(encoder: PretrainedEncoder, backbone_cfg: Mapping[str, Any]) -> None:
    """Refuse an encoder whose backbone settings differ where weights mean something else even at
    equal shapes (e.g. ``input_pool``: the same kernels at another sampling rate)."""
    saved = encoder.meta.get("backbone") or {}
    keys = (set(saved) | set(backbone_cfg)) - HEAD_ONLY_SETTINGS
    differ = sorted(k for k in keys if _plain(saved.get(k)) != _plain(backbone_cfg.get(k)))
    if differ:
        pairs = ", ".join(
            f"{k}={saved.get(k)!r} there, {backbone_cfg.get(k)!r} here" for k in differ
        )
        raise EcgmlError(
            f"model.init_from ({encoder.source}) was pretrained with other backbone settings "
            f"({pairs}): pass the same model.backbone values or pretrain with these"
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def load_pretrained_encoder(
    backbone: nn.Module,
    init_from: str,
    tracking_uri: str | None = None,
    *,
    model_name: str | None = None,
    backbone_cfg: Mapping[str, Any] | None = None,
) -> list[str]:
    """Copy every tensor of ``init_from`` whose name and shape match into ``backbone``.

    Returns the loaded names; the others (the head) keep their initialisation. ``model_name``
    (``cfg.model.name``) is compared with the pretrained one; the backbone class always is.
    """
    encoder = read_pretrained(init_from, tracking_uri)
    check_compatible(encoder, backbone, model_name)
    if backbone_cfg is not None:
        check_same_backbone(encoder, backbone_cfg)
    own = backbone.state_dict()
    matched = {k: v for k, v in encoder.state.items() if k in own and own[k].shape == v.shape}
    parameters = {name for name, _ in backbone.named_parameters()}
    if not parameters & set(matched):  # BatchNorm step counters alone match any backbone
        raise EcgmlError(
            f"model.init_from ({encoder.source}): none of its {len(encoder.state)} weights fits "
            f"this {type(backbone).__name__} (other channels/sizes?): pretrain with the same "
            "model hyper-parameters"
        )
    backbone.load_state_dict({**own, **matched})
    skipped = sorted(set(own) - set(matched))
    log.info(
        "init_from %s: %d/%d tensors loaded, fresh: %s",
        encoder.source,
        len(matched),
        len(own),
        ", ".join(skipped) or "none",
    )
    _warn_on_layout(encoder.meta, backbone)
    return sorted(matched)


def _warn_on_layout(meta: dict[str, Any], backbone: nn.Module) -> None:
    seq_len = getattr(backbone, "seq_len", None)
    if seq_len is not None and meta.get("seq_len") not in (None, seq_len):
        log.warning(
            "init_from: pretrained on beats of %s samples, fine-tuning on %s (set data.beat_length "
            "to match if the backbone depends on it)",
            meta.get("seq_len"),
            seq_len,
        )
