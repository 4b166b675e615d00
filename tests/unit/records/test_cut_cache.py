"""A packed record store's cut beats are cached: the second table is read back, equal to the
first, and a changed store or option cuts again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.cli.pack import pack_record_store
from ecgml.data import records as record_data
from ecgml.data.records import build_record_table, cut_store
from ecgml.data.tasks import task_spec
from ecgml.recordstore import load_record_store
from tests.unit.records.toy import effect_store, write_record


@pytest.fixture()
def packed(tmp_path: Path) -> Path:
    root = effect_store(tmp_path / "store", 6, 6)
    write_record(root / "signals" / "P011_0.csv", np.zeros(500))  # 1 s: skipped by the store
    pack_record_store(root, "float32")
    return root


def table_of(root: Path, compose_cfg, cache: Path, *overrides: str):
    cfg = compose_cfg(
        "data=records",
        f"data.path={root}",
        f"data.cache_dir={cache}",
        "disorder=hyperkalemia",
        "split=group_kfold",
        "split.fold=0",
        *overrides,
    )
    store = load_record_store(root)
    return build_record_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))


def test_the_second_table_reads_the_cached_cuts(
    packed: Path, compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = table_of(packed, compose_cfg, tmp_path / "cache")
    meta, in_memory, _ = cut_store(load_record_store(packed), ("II",), {})  # no cache at all
    by_id = dict(zip(meta["record_id"], in_memory, strict=True))
    rows = zip(first.meta["record_id"], first.beats, first.strips, strict=True)
    for record_id, beats, strip in rows:
        np.testing.assert_array_equal(beats, by_id[record_id].beats)
        np.testing.assert_array_equal(strip, by_id[record_id].strip)
    (cached,) = (tmp_path / "cache").glob("cuts-*")
    assert sorted(p.name for p in cached.iterdir()) == ["beats.f32", "index.npz", "strips.f32"]
    calls = []
    monkeypatch.setattr(record_data, "cut_record", lambda *a, **k: calls.append(a))
    again = table_of(packed, compose_cfg, tmp_path / "cache")
    assert calls == []  # nothing cut again
    pd.testing.assert_frame_equal(again.meta, first.meta)
    assert [s.reason for s in again.skipped] == [s.reason for s in first.skipped] != []
    np.testing.assert_array_equal(again.strips, first.strips)
    assert again.r_index == first.r_index
    for a, b in zip(again.beats, first.beats, strict=True):
        np.testing.assert_array_equal(a, b)
    assert isinstance(again.beats[0].base, np.memmap) or isinstance(again.beats[0], np.memmap)
    monkeypatch.undo()
    table_of(packed, compose_cfg, tmp_path / "cache", "data.max_beats=3")  # another option
    assert len(list((tmp_path / "cache").glob("cuts-*"))) == 2


def test_a_damaged_cache_is_cut_again_and_a_csv_store_is_never_cached(
    packed: Path, compose_cfg, tmp_path: Path
) -> None:
    first = table_of(packed, compose_cfg, tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("cuts-*")
    (cached / "index.npz").write_bytes(b"not a zip")
    again = table_of(packed, compose_cfg, tmp_path / "cache")
    np.testing.assert_array_equal(again.strips, first.strips)
    csv_store = effect_store(tmp_path / "csv", 6, 6)
    table_of(csv_store, compose_cfg, tmp_path / "csv_cache")
    assert not (tmp_path / "csv_cache").exists()
