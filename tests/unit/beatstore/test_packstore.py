"""The packed store (``samples.arrow``): exact enough, atomic, and one line when it is wrong."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from ecgml.beatstore import load_beat_store, write_beat_store
from ecgml.cli.pack import pack_beat_store, pack_record_store
from ecgml.errors import EcgmlError
from ecgml.packstore import INT16_STEP_MV, PACKED, ROW_COLUMN, PackedSamples, PackedWriter
from ecgml.recordstore import load_record_store
from tests.fakes import write_toy_store
from tests.unit.records.toy import effect_store

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def csv_store(tmp_path: Path) -> Path:
    return write_toy_store(tmp_path / "store", n_positive=3, n_negative=3, beats_per_patient=2)


def packed_copy(csv_store: Path, tmp_path: Path) -> Path:
    packed = tmp_path / "packed"
    loaded = load_beat_store(csv_store)
    write_beat_store(
        packed, loaded.beats, loaded.meta.drop(columns="beat_file"), 250.0, packed=True
    )
    return packed


def test_int16_quantization_is_within_half_a_microvolt(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    beats = [rng.normal(0, 2.0, 400) for _ in range(50)]
    with PackedWriter(tmp_path / PACKED, "beat") as writer:
        for k, beat in enumerate(beats):
            writer.add(f"b{k}", beat, 500.0, ())
        writer.commit()
    samples = PackedSamples.open(tmp_path / PACKED, "beat")
    assert samples.scale == INT16_STEP_MV
    error = max(np.abs(samples.signal(k) - beats[k]).max() for k in range(len(beats)))
    assert 0.0001 < error <= 0.0005 + 1e-6  # quantized, and by at most 0.5 µV


def test_a_sample_beyond_int16_switches_the_file_to_exact_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    signals = [rng.normal(0, 1.0, (2, 3000)) for _ in range(4)]
    signals[3][1, 7] = 40.0  # mV: beyond ±32.767 mV
    with PackedWriter(tmp_path / PACKED, "record") as writer:
        for k, signal in enumerate(signals):
            writer.add(f"r{k}", signal, 500.0, ("I", "II"))
            if k == 1:
                writer._flush()  # the first rows already on disk as int16 are rewritten
        writer.commit()
    samples = PackedSamples.open(tmp_path / PACKED, "record")
    assert samples.scale == 1.0
    for k, signal in enumerate(signals):
        assert samples.signal(k).shape == (2, 3000)
        tolerance = INT16_STEP_MV / 2 + 1e-6 if k < 2 else 0.0
        np.testing.assert_allclose(samples.signal(k), signal.astype(np.float32), atol=tolerance)
    assert [p.name for p in tmp_path.iterdir()] == [PACKED]  # no temporary left


def test_packed_beat_store_reads_like_its_csv_store(csv_store: Path, tmp_path: Path) -> None:
    packed = packed_copy(csv_store, tmp_path)
    assert not (packed / "beats").exists()
    manifest = pd.read_csv(packed / "manifest.csv")
    assert "beat_file" not in manifest.columns
    assert manifest[ROW_COLUMN].tolist() == list(range(12))
    csv, read = load_beat_store(csv_store), load_beat_store(packed)
    assert read.meta["beat_id"].tolist() == csv.meta["beat_id"].tolist()
    for a, b in zip(read.beats, csv.beats, strict=True):
        np.testing.assert_allclose(a, b, atol=INT16_STEP_MV / 2 + 1e-6)
    assert read.digest != csv.digest and len(read.digest) == 16


def test_pack_converts_in_place_and_a_second_pack_says_so(csv_store: Path) -> None:
    before = load_beat_store(csv_store)
    done = pack_beat_store(csv_store, "float32", 500.0, 4.0)
    assert done is not None and done.rows == 12 and done.packed_bytes > 0
    after = load_beat_store(csv_store)
    assert after.meta["beat_id"].tolist() == before.meta["beat_id"].tolist()
    for a, b in zip(after.beats, before.beats, strict=True):
        np.testing.assert_array_equal(a, b)  # float32: bit for bit
    assert pack_beat_store(csv_store, "float32", 500.0, 4.0) is None


def test_a_subset_of_the_index_reads_and_a_mismatch_names_the_line(
    csv_store: Path, tmp_path: Path
) -> None:
    packed = packed_copy(csv_store, tmp_path)
    manifest = pd.read_csv(packed / "manifest.csv")
    manifest.iloc[[5, 2, 9]].to_csv(packed / "manifest.csv", index=False)
    subset = load_beat_store(packed)
    assert subset.meta["beat_id"].tolist() == manifest["beat_id"].iloc[[5, 2, 9]].tolist()
    manifest.loc[3, ROW_COLUMN] = 4
    manifest.to_csv(packed / "manifest.csv", index=False)
    with pytest.raises(
        EcgmlError, match=r"manifest.csv line 5: beat_id .* but .*samples.arrow row 4"
    ):
        load_beat_store(packed)
    manifest.loc[3, ROW_COLUMN] = 99
    manifest.to_csv(packed / "manifest.csv", index=False)
    with pytest.raises(EcgmlError, match=r"line 5: packed_row .* is not a row .*12 rows"):
        load_beat_store(packed)


def test_truncated_foreign_and_newer_files_are_one_line(csv_store: Path, tmp_path: Path) -> None:
    packed = packed_copy(csv_store, tmp_path)
    data = (packed / PACKED).read_bytes()
    (packed / PACKED).write_bytes(data[: len(data) // 2])
    with pytest.raises(
        EcgmlError, match=r"samples.arrow is not a readable packed store .*truncated"
    ):
        load_beat_store(packed)
    mv = pa.array([[1, 2]], pa.list_(pa.int16()))
    table = pa.table({"id": ["x"], "fs": [500.0], "leads": [""], "mv": mv})
    for metadata, message in (
        ({"ecgml.format": "2", "ecgml.unit": "beat"}, "written by a newer ecgml"),
        ({"ecgml.format": "1", "ecgml.unit": "record"}, "packs records, not beats"),
        ({}, "not an ecgml packed store"),
        ({"ecgml.format": "1", "ecgml.unit": "beat", "ecgml.scale_mv": "7"}, "unknown sample"),
    ):
        with ipc.new_file(str(packed / PACKED), table.schema.with_metadata(metadata)) as out:
            out.write_table(table)
        with pytest.raises(EcgmlError, match=message):
            load_beat_store(packed)


def test_a_full_disk_leaves_the_previous_store_intact(
    csv_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = (csv_store / "manifest.csv").read_bytes()

    real_new_file = ipc.new_file

    class FullDisk:
        """A file writer on a disk that fills up at the first batch."""

        def __init__(self, path: str, schema: pa.Schema) -> None:
            self.inner = real_new_file(path, schema)

        def write_batch(self, _batch: pa.RecordBatch) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr("ecgml.packstore.ipc.new_file", FullDisk)
    with pytest.raises(EcgmlError, match=r"cannot write .*samples.arrow: no space left"):
        pack_beat_store(csv_store, "int16", 500.0, 4.0)
    assert (csv_store / "manifest.csv").read_bytes() == manifest
    assert not [p for p in csv_store.iterdir() if "samples" in p.name]


def test_packed_record_store_keeps_unreadable_records_to_their_csv(tmp_path: Path) -> None:
    root = effect_store(tmp_path / "records", n_positive=2, n_negative=2)
    (root / "signals" / "P003_0.csv").write_text("time_s,mv\n0,0.1\n")  # too short
    csv = load_record_store(root)
    done = pack_record_store(root, "int16")
    assert done is not None and (done.rows, done.left) == (3, 1)
    assert 0 < done.packed_bytes < 0.25 * done.csv_bytes
    table = pd.read_csv(root / "records.csv")
    assert table[ROW_COLUMN].isna().tolist() == [False, False, False, True]
    read = load_record_store(root)
    assert [s.reason for s in read.skipped] == [s.reason for s in csv.skipped]
    for a, b in zip(read.records, csv.records, strict=True):
        assert (a.record_id, a.fs, a.leads) == (b.record_id, b.fs, b.leads)
        np.testing.assert_allclose(a.signal, b.signal, atol=INT16_STEP_MV / 2 + 1e-6)


def test_pack_cli_exits_2_on_a_folder_without_a_store(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ecgml.pack", f"store={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds neither manifest.csv nor records.csv: pass a beat or record "
        "store folder"
    ]


def test_a_beat_store_beside_a_record_store_keeps_its_csvs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder holding both indexes (a digitization output of an earlier version) packs its
    record store only: one samples.arrow per folder."""
    from ecgml.cli.pack import stores_in

    root = effect_store(tmp_path / "both", n_positive=2, n_negative=2)
    write_toy_store(root, n_positive=2, n_negative=2, beats_per_patient=2)
    beats_before = load_beat_store(root)
    stores = stores_in(root)
    assert [folder for folder, _ in stores] == [root]
    assert "keeps its CSV files" in caplog.text
    assert pack_record_store(root, "float32") is not None
    beats_after = load_beat_store(root)
    for a, b in zip(beats_after.beats, beats_before.beats, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(load_record_store(root).records) == 4
