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


def prefixes_run(address: str) -> set[str]:
    """The names of the functions the cluster's scheduler has run jobs of."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        return set(
            client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # a free port: two test processes may each start one
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
    from ecgml.digitize.folder import digitize_folder

    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(EcgmlError, match="no Dask scheduler answers there"):
        digitize_folder(images, tmp_path / "d", engine_address="tcp://127.0.0.1:9")
    assert not (tmp_path / "d").exists()
    from ecgml.cli.ingest import settings_from_config
    from tests.conftest import compose_once

    ingest_cfg = compose_once(
        f"ecgs={images}", f"labs={images}", f"out={tmp_path / 'i'}", name="ingest"
    )
    ingest_cfg.engine.address = "tcp://127.0.0.1:9"
    with pytest.raises(EcgmlError, match="no Dask scheduler answers there"):
        settings_from_config(ingest_cfg)
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


def test_ingest_on_the_cluster_equals_the_local_run(cluster: str, tmp_path: Path) -> None:
    from ecgml.ingest.run import IngestSettings, ingest
    from ecgml.synth.exports import export_cohort

    groups = {"normal": 2, "hypokalemia": 2}
    cohort = build_cohort(
        default_cfg(images=False, twelve_lead=True, groups=groups), tmp_path / "cohort", n_jobs=1
    )
    exported = export_cohort(cohort, tmp_path / "export", "wfdb")
    stores = {}
    for name, address in (("local", None), ("dask", cluster)):
        out = tmp_path / name
        settings = IngestSettings(
            exported.ecgs, exported.labs, out, progress=False, n_jobs=2, engine_address=address
        )
        assert ingest(settings).n_records == 4
        stores[name] = out
    assert {"read_source", "write_signal"} <= prefixes_run(cluster)
    pd.testing.assert_frame_equal(
        pd.read_csv(stores["local"] / "records.csv"), pd.read_csv(stores["dask"] / "records.csv")
    )
    local, remote = (load_record_store(stores[k]).records for k in ("local", "dask"))
    for a, b in zip(local, remote, strict=True):
        assert a.record_id == b.record_id
        np.testing.assert_array_equal(a.signal, b.signal)


def test_digitizing_on_the_cluster_equals_the_local_run(
    cluster: str, tmp_path: Path, real_ecg: np.ndarray
) -> None:
    """Each image's result (a blank one fails with its reason) is the same on the cluster."""
    import cv2

    from ecgml.digitize.folder import digitize_folder
    from ecgml.synth.render import render_ecg

    images = tmp_path / "images"
    images.mkdir()
    for k, dpi in enumerate((110, 130)):
        cv2.imwrite(str(images / f"strip{k}.png"), render_ecg(real_ecg, 500, dpi=dpi)[0])
    cv2.imwrite(str(images / "blank.png"), np.full((40, 60, 3), 245, np.uint8))
    reports = {
        name: digitize_folder(
            images, tmp_path / name, n_jobs=1, progress=False, engine_address=address
        ).drop(columns="seconds")
        for name, address in (("local", None), ("dask", cluster))
    }
    assert "process_job" in prefixes_run(cluster)  # dask drops the leading _
    pd.testing.assert_frame_equal(reports["local"], reports["dask"])
    assert reports["dask"]["status"].tolist() == ["failed", "ok", "ok"]
    for k in range(2):
        local = pd.read_csv(tmp_path / "local" / "signals" / f"strip{k}.csv")
        pd.testing.assert_frame_equal(
            local, pd.read_csv(tmp_path / "dask" / "signals" / f"strip{k}.csv")
        )


def test_a_job_that_raises_on_the_cluster_costs_only_itself(cluster: str) -> None:
    import math

    from ecgml.outputs.engine import map_jobs

    results = dict(
        map_jobs(math.sqrt, [4.0, -1.0, 9.0], 1, lambda job, why: f"{job}: {why}", cluster)
    )
    assert results == {0: 2.0, 1: "-1.0: internal error: ValueError: math domain error", 2: 3.0}
