"""Synthesis on a real Dask cluster (2 worker processes on 127.0.0.1) gives the cohort a local
build gives; a scheduler that is not there, or a bad address, is one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store
from ecgml.errors import EcgmlError
from ecgml.outputs.engine import check_address
from ecgml.recordstore import load_record_store
from ecgml.synth import build_cohort
from tests.unit.sources.test_synth_reliability import default_cfg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=50,
    ) as local:
        yield local.scheduler_address


def test_a_cohort_built_on_the_cluster_equals_the_local_one(cluster: str, tmp_path: Path) -> None:
    cfg = default_cfg(images=False, groups={"normal": 6, "hypokalemia": 6})
    local = build_cohort(cfg, tmp_path / "local", progress=False, n_jobs=1)
    remote = build_cohort(cfg, tmp_path / "remote", progress=False, engine_address=cluster)
    pd.testing.assert_frame_equal(
        pd.read_csv(local / "patients.csv"), pd.read_csv(remote / "patients.csv")
    )
    for a, b in zip(
        load_record_store(local).records, load_record_store(remote).records, strict=True
    ):
        assert a.record_id == b.record_id
        np.testing.assert_array_equal(a.signal, b.signal)
    beats_a, beats_b = load_beat_store(local / "beats"), load_beat_store(remote / "beats")
    assert beats_a.meta["beat_id"].tolist() == beats_b.meta["beat_id"].tolist()
    for a, b in zip(beats_a.beats, beats_b.beats, strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_scheduler_and_a_bad_address_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(EcgmlError, match="is not a Dask scheduler address"):
        check_address("127.0.0.1:8786")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgml.synth",
            f"out={tmp_path / 'c'}",
            "images=false",
            "groups={normal: 2}",
            "engine.address=tcp://127.0.0.1:9",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Dask scheduler answers there" in lines[0], done.stderr
    assert not (tmp_path / "c").exists()


def test_packing_on_the_cluster_and_on_local_processes_equals_serial(
    cluster: str, tmp_path: Path
) -> None:
    from ecgml.cli.pack import pack_record_store
    from tests.unit.records.toy import effect_store

    packed = {}
    for name, n_jobs, address in (("serial", 1, None), ("local", 2, None), ("dask", 1, cluster)):
        root = effect_store(tmp_path / name, 3, 3)
        done = pack_record_store(root, "int16", n_jobs, address)
        assert done is not None and done.rows == 6
        packed[name] = load_record_store(root).records
    for name in ("local", "dask"):
        for a, b in zip(packed[name], packed["serial"], strict=True):
            assert a.record_id == b.record_id
            np.testing.assert_array_equal(a.signal, b.signal)
