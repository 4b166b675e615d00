"""Shared pieces of the fuzz and fault suites: profiles, tree hashes, sandboxed CLI runs."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings

import tests.fuzz.conftest  # noqa: F401  (registers the profiles when imported on its own)

PROFILE = os.environ.get("ECGML_FUZZ_PROFILE", "ci")
#: The profile's settings, applied as a decorator: ``@FUZZ`` then ``@given(...)``.
FUZZ = settings.get_profile(PROFILE)
LONG = PROFILE == "long"
REPO = Path(__file__).resolve().parents[2]
#: Address-space cap of every CLI subprocess (torch alone maps about 1 GiB).
MEMORY_CAP = 3 << 30
CLI_TIMEOUT_S = 120.0


def scale(ci: int, long: int) -> int:
    """A count for this profile (``ci`` in CI, ``long`` under ``make fuzz``)."""
    return long if LONG else ci


def tree_digest(root: Path, exclude: Path | None = None) -> dict[str, str]:
    """``relative path → content hash`` (links: their target) of ``root``, minus ``exclude``."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if exclude is None or here / d != exclude]
        for name in [*files, *(d for d in dirs if (here / d).is_symlink())]:
            path = here / name
            found[str(path.relative_to(root))] = _entry_hash(path)
        for name in dirs:
            found.setdefault(str((here / name).relative_to(root)) + "/", "dir")
    return found


def _entry_hash(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if not path.is_file():
        return "special"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def limit_memory() -> None:
    """``preexec_fn`` of every CLI run: cap the child's address space."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def cli_env(case: Path) -> dict[str, str]:
    """The environment of a CLI run: any MLflow store inside the case's output folder."""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{case / 'out' / 'mlruns' / 'mlflow.db'}"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = str(REPO)
    return env


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(module: str, args: list[str], case: Path) -> CliResult:
    """``python -m ecgml.<module> args`` from ``case``; its output folder is ``case/out``."""
    hydra_dir = case / "out" / "hydra"
    proc = subprocess.run(
        [sys.executable, "-m", f"ecgml.{module}", *args, f"hydra.run.dir={hydra_dir}"],
        cwd=case,
        env=cli_env(case),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=CLI_TIMEOUT_S,
        preexec_fn=limit_memory,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def check_contract(result: CliResult, where: str) -> None:
    """Exit 0 or 2, at most one ``error:`` line (the only one, on 2), and no traceback."""
    stderr = result.stderr
    assert result.returncode in (0, 2), f"{where}: exit {result.returncode}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, f"{where}: traceback\n{stderr[-3000:]}"
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) <= 1, f"{where}: {len(errors)} error lines\n{stderr[-3000:]}"
    if result.returncode == 2:
        assert len(errors) == 1, f"{where}: exit 2 without one error line\n{stderr[-3000:]}"


def run_checked(module: str, args: list[str], case: Path) -> CliResult:
    """:func:`run_cli` plus the contract and "nothing outside ``case/out`` changed"."""
    before = tree_digest(case, exclude=case / "out")
    result = run_cli(module, args, case)
    where = f"python -m ecgml.{module} {' '.join(args)}"
    check_contract(result, where)
    assert tree_digest(case, exclude=case / "out") == before, f"{where}: changed its input"
    return result
