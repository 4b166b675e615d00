"""Writing one output file, or failing in one line: a full disk, a read-only folder or an
existing folder where the file should go is the user's to fix, and never leaves a temporary."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from ecgml.errors import EcgmlError

#: What a full disk, a quota, a read-only file system or an oversized file look like.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def storage_error(err: OSError, where: Path | str | None = None) -> EcgmlError | None:
    """A one-line :class:`EcgmlError` for a storage ``err`` (None for any other OSError)."""
    if err.errno not in STORAGE_ERRNOS:
        return None
    place = where or err.filename or "the output"
    reason = (err.strerror or os.strerror(err.errno or 0)).lower()
    return EcgmlError(
        f"cannot write {place}: {reason}: free some space (or choose another output folder) "
        "and rerun; nothing was left behind"
    )


def check_output_file(path: Path, key: str = "output") -> None:
    """Refuse, before any work, an output file path that is a folder."""
    if path.is_dir():
        raise EcgmlError(
            f"{key}={path} is a folder: pass a file path (e.g. {key}={path / 'predictions.json'})"
        )


def write_text_atomic(path: Path, text: str, key: str = "output") -> None:
    """``text`` into ``path`` through a hidden temporary renamed into place: readers never see
    a half-written file, and a failed write leaves neither the file nor the temporary."""
    check_output_file(path, key)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        known = storage_error(err, path)
        if known is not None:
            raise known from None
        raise EcgmlError(f"cannot write {key}={path}: {err.strerror or err}") from None
