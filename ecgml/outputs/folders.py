"""Output folders ecgml owns: a marker file, hidden temporary siblings, stale-temp cleanup.

Every folder ecgml writes gets :data:`MARKER`; ``overwrite=true`` only ever replaces a folder
holding it. Outputs are built in ``.<name>.tmp-<hex8>`` beside the target (marker written
first, with the writer's pid and host) and renamed into place; an interrupted run leaves that
folder behind, and the next run on the same output removes it once its writer is gone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from ecgml.errors import EcgmlError

log = logging.getLogger("ecgml")

MARKER = ".ecgml-output.json"
#: A temporary folder on another host is stale after this long (its pid cannot be checked).
FOREIGN_STALE_S = 24 * 3600.0
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")


def write_marker(folder: Path, created_by: str) -> None:
    """Mark ``folder`` as written by ecgml (``created_by``: e.g. ``ecgml.digitize``)."""
    payload = {
        "created_by": created_by,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "created": time.time(),
    }
    (folder / MARKER).write_text(json.dumps(payload) + "\n")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none (or a file that is not ecgml's)."""
    path = folder / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not str(data.get("created_by", "")).startswith("ecgml"):
        return None
    return data


def check_replaceable(out: Path, overwrite: bool, key: str, owned: bool = False) -> None:
    """Refuse an output folder ecgml may not write into (``owned``: a legacy marker found)."""
    if out.exists() and not out.is_dir():
        raise EcgmlError(f"{key} {out} is a file: pass a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise EcgmlError(f"{key} {out} is not empty: pass a new folder or overwrite=true")
    if not owned and read_marker(out) is None:
        raise EcgmlError(
            f"{key} {out} holds files ecgml did not write (no {MARKER}): overwrite=true only "
            "replaces ecgml's own output; pass a new folder or empty this one yourself"
        )


def refuse_overlap(out: Path, out_key: str, source: Path, source_key: str) -> None:
    """Refuse an output that is, holds or lies inside an input (symlinks followed)."""
    target, origin = out.resolve(), source.resolve()
    if target == origin or target.is_relative_to(origin) or origin.is_relative_to(target):
        raise EcgmlError(
            f"{out_key} {out} overlaps {source_key} {source} (both resolve into "
            f"{min(origin, target, key=lambda p: len(p.parts))}): pass an output folder "
            f"outside the {source_key}"
        )


def new_temp(out: Path, created_by: str) -> Path:
    """A fresh marked ``.<name>.tmp-<hex8>`` sibling of ``out`` (stale ones removed first)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    write_marker(tmp, created_by)
    return tmp


def move_into_place(tmp: Path, out: Path) -> None:
    """Swap the finished ``tmp`` in for ``out`` (old contents go only once the new are there)."""
    trash = None
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, trash)
    os.replace(tmp, out)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the marked temporary siblings of ``out`` that no live run is writing."""
    if not out.parent.is_dir():
        return []
    removed = []
    for path in out.parent.iterdir():
        match = _SIBLING.match(path.name)
        if match is None or match["name"] != out.name or path.is_symlink() or not path.is_dir():
            continue
        marker = read_marker(path)
        if marker is None or (match["kind"] == "tmp" and _writer_alive(marker)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d leftover(s) of interrupted runs beside %s", len(removed), out)
    return removed


def _writer_alive(marker: dict[str, Any]) -> bool:
    """Whether the run that wrote ``marker`` may still be writing (unsure counts as alive)."""
    if marker.get("host") != socket.gethostname():
        created = marker.get("created")
        return not isinstance(created, int | float) or time.time() - created < FOREIGN_STALE_S
    pid = marker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
