"""ecgml.synth on absurd sizes, foreign folders and interrupted runs (issue 17: #1, #12, #14).

Every test here failed on the code before the fix. Size checks run on the config alone, so a
regression fails the test instead of allocating terabytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ecgml.errors import EcgmlError
from ecgml.synth import build_cohort, config_hash, ensure_cohort
from ecgml.synth.cohort import cohort_config
from tests.interrupt import ctrl_c_once_started
from tests.unit.sources.test_synth import default_cfg

MARKER = ".ecgml-output.json"
REPO = Path(__file__).resolve().parents[3]


def tiny_cfg(**overrides: Any) -> dict[str, Any]:
    return default_cfg(images=False, groups={"normal": 2}, **overrides)


# --------------------------------------------------------------------------- #12 sizes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_s": 1e9}, "duration_s"),
        ({"fs": 1e9}, "fs"),
        ({"fs": 10_000, "duration_s": 600}, "samples"),
        ({"scale": 1e9}, "patients"),
        ({"groups": {"normal": 10**12}}, "patients"),
        ({"centers": 10**9}, "centers"),
        ({"images": True, "duration_s": 300, "render": {"dpi": [100, 1200]}}, "Mpx"),
    ],
)
def test_absurd_sizes_are_refused_before_allocating(change: dict[str, Any], message: str) -> None:
    cfg = default_cfg(images=False)
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if key == "render" else value
    with pytest.raises(EcgmlError, match=message) as err:
        cohort_config(cfg)
    assert "\n" not in str(err.value) and str(err.value).startswith("cohort.")


def test_the_default_and_a_large_cohort_stay_valid() -> None:
    cohort_config(default_cfg())
    cohort_config(default_cfg(scale=20, duration_s=60, twelve_lead=True))


@pytest.mark.slow
def test_cli_duration_1e9_is_one_line_exit_2(tmp_path: Path) -> None:
    args = ["out=c", "duration_s=1e9", "images=false", "groups={normal: 2}", "hydra.run.dir=h"]
    result = subprocess.run(
        [sys.executable, "-m", "ecgml.synth", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cohort.duration_s"), result.stderr
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- #1 overwrite


def test_overwrite_replaces_only_a_folder_ecgml_wrote(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    with pytest.raises(EcgmlError, match="did not write") as err:
        build_cohort(tiny_cfg(), mine, overwrite=True, progress=False)
    assert "\n" not in str(err.value)
    assert [p.name for p in mine.iterdir()] == ["thesis.docx"]

    out = build_cohort(tiny_cfg(), tmp_path / "c", progress=False)
    assert json.loads((out / MARKER).read_text())["created_by"] == "ecgml.synth"
    build_cohort(tiny_cfg(seed=7), out, overwrite=True, progress=False)  # its own: replaced
    assert json.loads((out / "cohort.json").read_text())["seed"] == 7


# --------------------------------------------------------------------------- #14 leftovers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_temp(parent: Path, name: str, pid: int | None) -> Path:
    folder = parent / name
    (folder / "signals").mkdir(parents=True)
    if pid is not None:
        marker = {"created_by": "ecgml.synth", "pid": pid, "host": os.uname().nodename}
        (folder / MARKER).write_text(json.dumps(marker))
    return folder


def test_stale_temp_folders_are_removed_by_the_next_build(tmp_path: Path) -> None:
    stale = _fake_temp(tmp_path, ".c.tmp-0badc0de", _dead_pid())
    live = _fake_temp(tmp_path, ".c.tmp-1234abcd", os.getpid())
    foreign = _fake_temp(tmp_path, ".c.tmp-deadbeef", None)
    build_cohort(tiny_cfg(), tmp_path / "c", progress=False)
    assert not stale.exists() and live.exists() and foreign.exists()

    cache = tmp_path / "cache"
    name = f"cohort-{config_hash(cohort_config(tiny_cfg()))}"
    cached_stale = _fake_temp(cache, f".{name}.tmp-0badc0de", _dead_pid())
    ensure_cohort(tiny_cfg(), cache, progress=False)
    assert not cached_stale.exists()
    assert sorted(p.name for p in cache.iterdir()) == [name]


PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import ecgml.synth.cohort as cohort

    def slow_patient(task):
        Path(sys.argv[1], f"{os.getpid()}.pid").write_text("")
        time.sleep(60)

    cohort.build_patient = slow_patient
    cohort._run_tasks(list(range(cohort.MIN_PATIENTS_FOR_POOL)), 2, False, print)
    """
)


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return ") Z " not in stat.read_text()
    except FileNotFoundError:
        return False


def _wait_for(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method and /proc")
def test_pool_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(tmp_path)], cwd=REPO, start_new_session=True
    )
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, 60), "workers never ran"
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        parent.kill()
        parent.wait(10)
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 5), "orphans still run"
    finally:
        parent.kill()
        for pid_file in tmp_path.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.stem), signal.SIGKILL)


CLI_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import ecgml.synth.cohort as cohort
    from ecgml.cli.synth import main

    flag = Path(sys.argv[1])

    def slow_patient(task):
        flag.write_text("started")
        time.sleep(60)

    cohort.build_patient = slow_patient
    sys.argv = ["synth", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="process groups and fork")
def test_ctrl_c_is_one_line_exit_130_and_leaves_no_output(tmp_path: Path) -> None:
    flag = tmp_path / "started"
    args = [f"out={tmp_path / 'c'}", "images=false", "groups={normal: 40}", "n_jobs=2"]
    returncode, stderr = ctrl_c_once_started(
        CLI_SCRIPT, flag, [*args, f"hydra.run.dir={tmp_path / 'h'}"], "synth"
    )
    assert returncode == 130, stderr
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("synth cohort:")]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr  # beside the bar
    assert not (tmp_path / "c").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c")]
