"""Build one fuzz case on disk: a store folder beside an outside secret, links, a FIFO."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ecgml.beatstore import MANIFEST, META_FILE

OUTSIDE = "outside.csv"


@contextlib.contextmanager
def case_dir() -> Iterator[Path]:
    """A fresh folder per hypothesis example (function-scoped fixtures are shared)."""
    with tempfile.TemporaryDirectory(prefix="ecgml-fuzz-") as tmp:
        yield Path(tmp)


def write_store(
    case: Path, manifest: bytes, meta: bytes | None, beats: list[bytes], name: str = "store"
) -> Path:
    """``case/<name>`` with the given files, plus every path :data:`SPECIAL_PATHS` names."""
    (case / OUTSIDE).write_text("mv\n0.1\n1.2\n0.3\n")  # readable, but outside the store
    root = case / name
    (root / "beats").mkdir(parents=True)
    (root / MANIFEST).write_bytes(manifest)
    if meta is not None:
        (root / META_FILE).write_bytes(meta)
    for k, content in enumerate(beats):
        (root / "beats" / f"b{k}.csv").write_bytes(content)
    (root / "link_out.csv").symlink_to(case / OUTSIDE)
    (root / "link_dir").symlink_to(case, target_is_directory=True)
    (root / "zero.csv").symlink_to("/dev/zero")
    (root / "loop.csv").symlink_to(root / "loop.csv")
    os.mkfifo(root / "fifo.csv")
    return root
