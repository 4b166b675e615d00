"""Ctrl-C a command the way a terminal does, once it has started its work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ecgml import PROJECT_ROOT


def _default_sigint() -> None:
    """A shell started in the background (CI, ``&``) runs its children with SIGINT ignored,
    and a child inherits that; restore the default before exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_once_started(script: str, flag: Path, args: list[str], what: str) -> tuple[int, str]:
    """Run ``python -c script flag *args`` in its own process group, wait until it writes
    ``flag`` (its work has begun), send SIGINT to the whole group; ``(exit code, stderr)``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(flag), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flag.exists(), f"{what} never started"
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, stderr
