"""Fault suite: SIGKILL / SIGTERM / SIGINT at a seeded random moment of ``ecgml.synth`` and
``ecgml.digitize`` (and, under ``make fuzz``, SIGKILL of ``ecgml.train``).

Afterwards the output folder is absent or complete (never partial), and a rerun succeeds and
leaves no hidden ``.<out>.tmp-*``/``.<out>.old-*`` folder. SIGINT goes to the whole process group
(a terminal's Ctrl-C); SIGKILL/SIGTERM to the parent only, as an OOM killer or a scheduler does.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes import write_toy_store
from tests.fuzz.harness import LONG, cli_env, limit_memory, scale

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
SEEDS = range(scale(1, 8))
SYNTH = ["images=true", "groups.normal=4", "groups.hyperkalemia=2", "groups.hypokalemia=0"]
SYNTH += ["groups.hyponatremia=0", "n_jobs=2"]


def command(module: str, args: list[str], case: Path) -> list[str]:
    hydra = f"hydra.run.dir={case / 'hydra'}"
    return [sys.executable, "-m", f"ecgml.{module}", *args, hydra]


def run(module: str, args: list[str], case: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(module, args, case),
        cwd=case,
        env=cli_env(case),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_memory,
    )


def interrupt(module: str, args: list[str], case: Path, sig: signal.Signals, delay: float) -> None:
    """Start the command, send ``sig`` after ``delay`` s, then make sure its group is gone."""
    proc = subprocess.Popen(
        command(module, args, case),
        cwd=case,
        env=cli_env(case),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit_memory,
    )
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(delay)
        if proc.poll() is None:
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        proc.communicate(timeout=60)  # Ctrl-C during the imports still prints a traceback
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned workers too
        proc.wait()
    time.sleep(0.2)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def assert_absent_or_complete(out: Path, complete: list[str]) -> None:
    if out.exists():
        missing = [name for name in complete if not (out / name).exists()]
        assert not missing, f"partial output {out}: lacks {missing}"


def kill_and_rerun(
    module: str, args: list[str], case: Path, out: Path, complete: list[str], seed: int, sig: str
) -> None:
    delay = random.Random(f"{module}-{sig}-{seed}").uniform(0.5, 4.0)
    interrupt(module, args, case, SIGNALS[sig], delay)
    assert_absent_or_complete(out, complete)
    rerun = run(module, [*args, "overwrite=true"], case)
    assert rerun.returncode == 0, f"rerun after SIG{sig.upper()} at {delay:.2f} s\n{rerun.stderr}"
    assert_absent_or_complete(out, complete)
    assert out.is_dir()
    time.sleep(0.5)  # an orphaned worker of the killed run would write by now
    assert leftovers(out) == [], f"hidden folders left beside {out}"


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three rendered ECG images, made once."""
    case = tmp_path_factory.mktemp("scans")
    args = ["out=cohort", "images=true", "groups.normal=2", "groups.hyperkalemia=1"]
    args += ["groups.hypokalemia=0", "groups.hyponatremia=0", "n_jobs=1"]
    result = run("synth", args, case)
    assert result.returncode == 0, result.stderr
    return case / "cohort" / "images"


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sig", sorted(SIGNALS))
def test_synth_interrupted_anywhere_leaves_nothing_partial(
    tmp_path: Path, sig: str, seed: int
) -> None:
    out = tmp_path / "cohort"
    complete = ["cohort.json", "beats/manifest.csv", "patients.csv"]
    kill_and_rerun("synth", ["out=cohort", *SYNTH], tmp_path, out, complete, seed, sig)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sig", sorted(SIGNALS))
def test_digitize_interrupted_anywhere_leaves_nothing_partial(
    tmp_path: Path, scans: Path, sig: str, seed: int
) -> None:
    out = tmp_path / "digitized"
    args = [f"input_dir={scans}", "output_dir=digitized", "n_jobs=2", "progress=false"]
    complete = ["report.csv", ".ecgml-output.json"]
    kill_and_rerun("digitize", args, tmp_path, out, complete, seed, sig)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="a full training run: make fuzz only")
def test_train_killed_then_rerun_succeeds(tmp_path: Path) -> None:
    # enough patients for a holdout split (the three scans' cohort has one hyperkalemia patient)
    store = write_toy_store(tmp_path / "store", n_positive=12, n_negative=18)
    args = ["data=beats", f"data.path={store}", "disorder=hyperkalemia", "trainer.max_epochs=1"]
    args += ["paths.cache_dir=cache", "trainer.enable_progress_bar=false"]
    args += ["evaluation.n_bootstrap=20", "split=holdout"]
    interrupt("train", args, tmp_path, signal.SIGKILL, random.Random(7).uniform(2.0, 8.0))
    rerun = run("train", args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Traceback" not in rerun.stderr
