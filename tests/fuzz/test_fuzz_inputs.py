"""Fuzz: what ``ecgml.predict`` reads (signal CSVs, beat CSVs, beat stores, images, folders).

``read_signal_csv``/``read_beat_file``/``read_store``/``list_inputs`` either succeed or raise
:class:`~ecgml.errors.EcgmlError`; ``read_inputs`` on a folder of hostile files never raises at
all (an unusable file is a warning entry), and no warning says a non-user error was swallowed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecgml.errors import EcgmlError
from ecgml.inference.inputs import (
    InputOptions,
    list_inputs,
    read_beat_file,
    read_inputs,
    read_signal_csv,
    read_store,
)
from tests.fuzz.cases import case_dir, write_store
from tests.fuzz.harness import FUZZ, tree_digest
from tests.fuzz.strategies import NUMBER_TEXT, beat_text, image_bytes, manifest_text, meta_text

SWALLOWED = "could not be read ("  # read_input's wording for a non-user exception


@st.composite
def signal_csv(draw: st.DrawFn) -> bytes:
    """``time_s,mv`` CSVs: uniform, ms instead of s, odd numbers, ragged rows, garbage."""
    if draw(st.integers(0, 5)) == 0:
        return b"time_s,mv\n" + draw(st.binary(max_size=300))
    header = draw(st.sampled_from(["time_s,mv", "TIME_S , MV", "time_s;mv", "time_s", "mv,time_s"]))
    n = draw(st.integers(0, 40))
    step = draw(st.sampled_from([0.002, 2.0, 1e-9, 0.0, -0.002, 1e300]))
    rows = [f"{k * step!r},{np.sin(k / 3):.3f}" for k in range(n)]
    odd = draw(st.lists(st.tuples(st.integers(0, max(n, 1)), NUMBER_TEXT, NUMBER_TEXT), max_size=4))
    for index, left, right in odd:
        rows.insert(index, f"{left},{right}" + draw(st.sampled_from(["", ",x", '"'])))
    return ("\n".join([header, *rows]) + "\n").encode("utf-8", "surrogatepass")


def refused_or(func: object, *args: object) -> object | None:
    try:
        return func(*args)  # type: ignore[operator]
    except EcgmlError as err:
        assert str(err).strip() and "\n" not in str(err), repr(str(err))
        return None


@FUZZ
@given(content=signal_csv())
def test_any_signal_csv_reads_or_is_one_user_error(content: bytes) -> None:
    with case_dir() as case:
        path = case / "signal.csv"
        path.write_bytes(content)
        found = refused_or(read_signal_csv, path)
        if found is not None:
            signal, fs = found  # type: ignore[misc]
            assert np.isfinite(signal).all() and 50 <= fs <= 10_000


@FUZZ
@given(content=beat_text(), beat_fs=st.sampled_from([None, 250.0, 1000.0]))
def test_any_single_beat_csv_reads_or_is_one_user_error(
    content: bytes, beat_fs: float | None
) -> None:
    with case_dir() as case:
        path = case / "beat.csv"
        path.write_bytes(content)
        entry = refused_or(read_beat_file, path, InputOptions(beat_fs=beat_fs))
        if entry is not None:
            assert entry.n_beats == 1 and 0 <= entry.r_indices[0] < len(entry.beats[0])


@FUZZ
@given(
    manifest=manifest_text(),
    meta=meta_text(),
    beats=st.lists(beat_text(), min_size=3, max_size=3),
)
def test_any_beat_store_gives_entries_or_one_user_error(
    manifest: bytes, meta: bytes | None, beats: list[bytes]
) -> None:
    with case_dir() as case:
        root = write_store(case, manifest, meta, beats)
        before = tree_digest(case)
        entries = refused_or(read_store, root, InputOptions())
        for entry in entries or []:  # type: ignore[attr-defined]
            assert len(entry.beats) == len(entry.r_indices) == len(entry.beat_ids)
            for beat, r in zip(entry.beats, entry.r_indices, strict=True):
                assert np.isfinite(beat).all() and 0 <= r < len(beat)
            assert not any(SWALLOWED in w for w in entry.warnings), entry.warnings
        assert tree_digest(case) == before


NAMES = st.sampled_from(["a.csv", "b.CSV", "c.png", "d.jpg", "e.jpeg", "f.txt", "g", ".hidden"])


@FUZZ
@given(
    files=st.lists(
        st.tuples(NAMES, st.one_of(beat_text(), signal_csv(), image_bytes())),
        max_size=3,
        unique_by=lambda item: item[0],
    )
)
def test_a_folder_of_hostile_files_never_stops_predict(files: list[tuple[str, bytes]]) -> None:
    with case_dir() as case:
        folder = case / "in"
        folder.mkdir()
        for name, content in files:
            (folder / name).write_bytes(content)
        before = tree_digest(case)
        paths = refused_or(list_inputs, folder)
        if paths is not None:
            entries = read_inputs(paths, InputOptions(), progress=False)  # type: ignore[arg-type]
            assert len(entries) == len(paths)  # type: ignore[arg-type]
            for entry in entries:
                assert not any(SWALLOWED in w for w in entry.warnings), entry.warnings
        assert tree_digest(case) == before


def test_the_reproducers_of_fixed_signal_csv_defects(tmp_path: Path) -> None:
    """A ragged CSV raised pandas' ParserError; huge times warned about overflow."""
    for name, text in {
        "ragged.csv": "time_s,mv\n0,1\n0.002,1,3,4\n",
        "empty.csv": "",
        "huge.csv": "time_s,mv\n-1e308,1\n1e308,2\n1.5e308,3\n",
        "mv-beyond-float32.csv": "time_s,mv\n0,1e300\n0.002,1\n0.004,2\n",
    }.items():
        (tmp_path / name).write_text(text)
        assert refused_or(read_signal_csv, tmp_path / name) is None, name
