"""Fuzz: a damaged ``samples.arrow`` (bytes changed, cut short, or an index that disagrees with
it) loads or raises a one-line EcgmlError — never another exception, never a NaN beat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from ecgml.beatstore import load_beat_store, write_beat_store
from ecgml.errors import EcgmlError
from ecgml.packstore import PACKED
from ecgml.recordstore import load_record_store, pack_records
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ

RNG = np.random.default_rng(0)
BEATS = [RNG.normal(0, 0.5, 120) for _ in range(3)]
RECORD = np.vstack([RNG.normal(0, 0.5, 1500), RNG.normal(0, 0.5, 1500)])


@st.composite
def damage(draw: st.DrawFn) -> tuple[str, list[tuple[float, int]], float | None]:
    """Where the file is hit: bytes set at relative positions, or the file cut at one."""
    kind = draw(st.sampled_from(["bytes", "truncate", "index"]))
    hits = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=12))
    cut = draw(st.floats(0, 1)) if kind == "truncate" else None
    return kind, hits, cut


def apply(root: Path, index: str, hit: tuple[str, list[tuple[float, int]], float | None]) -> None:
    kind, hits, cut = hit
    path = root / PACKED
    data = bytearray(path.read_bytes())
    if kind == "index":  # the index names rows and ids the file does not hold
        table = pd.read_csv(root / index, dtype=str)
        column = "beat_id" if "beat_id" in table.columns else "record_id"
        table.loc[0, "packed_row"] = str(hits[0][1] - 128)
        table.loc[len(table) - 1, column] = "x" * (hits[0][1] % 5)
        table.to_csv(root / index, index=False)
        return
    if cut is not None:
        path.write_bytes(bytes(data[: int(cut * len(data))]))
        return
    for where, value in hits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    path.write_bytes(bytes(data))


def assert_one_line(err: EcgmlError) -> None:
    assert str(err).strip() and "\n" not in str(err), repr(str(err))


@FUZZ
@given(hit=damage(), skip=st.booleans())
def test_a_damaged_packed_beat_store_loads_or_is_one_user_error(
    hit: tuple[str, list[tuple[float, int]], float | None], skip: bool
) -> None:
    with case_dir() as case:
        rows = pd.DataFrame({"patient_id": ["p1", "p1", "p2"], "group": ["normal"] * 3})
        root = write_beat_store(case / "store", BEATS, rows, 500.0, packed=True, dtype="float32")
        apply(root, "manifest.csv", hit)
        try:
            store = load_beat_store(root, skip_bad_beats=skip)
        except EcgmlError as err:
            assert_one_line(err)
            return
        for beat in store.beats:
            assert beat.dtype == np.float32 and beat.ndim == 1 and np.isfinite(beat).all()


@FUZZ
@given(hit=damage())
def test_a_damaged_packed_record_store_loads_or_is_one_user_error(
    hit: tuple[str, list[tuple[float, int]], float | None],
) -> None:
    with case_dir() as case:
        root = case / "records"
        root.mkdir()
        rows = pack_records(root, [(f"r{k}", 500.0, ("I", "II"), RECORD) for k in range(3)])
        table = pd.DataFrame(
            {"patient_id": ["a", "b", "c"], "group": "normal", "record_id": ["r0", "r1", "r2"]}
        )
        table.assign(packed_row=rows).to_csv(root / "records.csv", index=False)
        apply(root, "records.csv", hit)
        try:
            store = load_record_store(root)
        except EcgmlError as err:
            assert_one_line(err)
            return
        for record in store.records:
            assert record.signal.dtype == np.float32 and np.isfinite(record.signal).all()
            assert record.signal.shape[0] == len(record.leads)
