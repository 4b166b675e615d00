"""Fuzz: any manifest, beat file or ``beatstore.json`` loads or raises a one-line EcgmlError.

In-process (no subprocess per case): :func:`ecgml.beatstore.load_beat_store` strict and lenient
(predict's ``skip_bad_beats``), with and without the packed cache. Nothing outside the store's
cache folder may change, and nothing outside the store may ever be read into a beat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecgml.beatstore import BeatLimits, load_beat_store, read_beat_csv, read_store_meta
from ecgml.errors import EcgmlError
from tests.fuzz.cases import case_dir, write_store
from tests.fuzz.harness import FUZZ, tree_digest
from tests.fuzz.strategies import beat_text, manifest_text, meta_text

OUTSIDE_BEAT = np.array([0.1, 1.2, 0.3], np.float32)


def assert_user_error(err: EcgmlError) -> None:
    message = str(err)
    assert message.strip() and "\n" not in message and "\r" not in message, repr(message)


def check_loaded(store: object, max_beat_s: float) -> None:
    beats = store.beats  # type: ignore[attr-defined]
    limits = BeatLimits.of(store.info.fs, max_beat_s)  # type: ignore[attr-defined]
    assert len(beats) == len(store.meta)  # type: ignore[attr-defined]
    for beat in beats:
        assert beat.dtype == np.float32 and beat.ndim == 1 and len(beat) > 0
        assert len(beat) <= limits.max_samples and np.isfinite(beat).all()
        assert not np.array_equal(beat, OUTSIDE_BEAT), "a beat was read from outside the store"


def load_or_refuse(root: Path, cache: Path | None, skip: bool, max_beat_s: float) -> None:
    try:
        store = load_beat_store(root, cache_dir=cache, skip_bad_beats=skip, max_beat_s=max_beat_s)
    except EcgmlError as err:
        assert_user_error(err)
        return
    check_loaded(store, max_beat_s)


@FUZZ
@given(
    manifest=manifest_text(),
    meta=meta_text(),
    beats=st.lists(beat_text(), min_size=3, max_size=3),
    skip=st.booleans(),
    max_beat_s=st.sampled_from([4.0, 0.01, 1.0]),
)
def test_any_store_loads_or_is_one_user_error(
    manifest: bytes, meta: bytes | None, beats: list[bytes], skip: bool, max_beat_s: float
) -> None:
    with case_dir() as case:
        root = write_store(case, manifest, meta, beats)
        before = tree_digest(case, exclude=case / "cache")
        load_or_refuse(root, None if skip else case / "cache", skip, max_beat_s)
        load_or_refuse(root, None if skip else case / "cache", skip, max_beat_s)  # cached
        assert tree_digest(case, exclude=case / "cache") == before


@FUZZ
@given(content=beat_text(), fs=st.sampled_from([50.0, 500.0, 10_000.0]))
def test_any_beat_file_reads_or_is_one_user_error(content: bytes, fs: float) -> None:
    with case_dir() as case:
        path = case / "beat.csv"
        path.write_bytes(content)
        limits = BeatLimits.of(fs, 4.0)
        try:
            beat = read_beat_csv(path, limits)
        except EcgmlError as err:
            assert_user_error(err)
            return
        assert beat.dtype == np.float32 and np.isfinite(beat).all()
        assert 0 < len(beat) <= limits.max_samples


@FUZZ
@given(meta=meta_text(), default_fs=st.sampled_from([500.0, 0.0, float("nan"), 1e9]))
def test_any_beatstore_json_reads_or_is_one_user_error(
    meta: bytes | None, default_fs: float
) -> None:
    with case_dir() as case:
        if meta is not None:
            (case / "beatstore.json").write_bytes(meta)
        try:
            info = read_store_meta(case, default_fs)
        except EcgmlError as err:
            assert_user_error(err)
            return
        assert 50.0 <= info.fs <= 10_000.0 and info.units == "mV"


MANIFEST_HEAD = "beat_file,patient_id,group"
GOOD_BEAT = "mv\n0.1\n1.0\n0.2\n"


@pytest.mark.parametrize(
    ("manifest", "meta"),
    [
        pytest.param(f"{MANIFEST_HEAD}\nbeats/b0.csv,p,normal\n", "[" * 100_000, id="deep-json"),
        pytest.param(
            f"{MANIFEST_HEAD}\nbeats/b0.csv,p,normal\n",
            '{"fs": 1' + "0" * 400 + "}",
            id="fs-beyond-float",
        ),
        pytest.param(
            f"{MANIFEST_HEAD}\nbeats/b0.csv,p,normal\n",
            '{"fs": 1' + "0" * 5000 + "}",
            id="fs-over-int-digits",
        ),
        pytest.param(f"{MANIFEST_HEAD}\n{'a' * 300}.csv,p,normal\n", None, id="name-too-long"),
        pytest.param(
            f"{MANIFEST_HEAD},r_index\nbeats/b0.csv,p,normal,1e30\n",
            None,
            id="r-index-beyond-int64",
        ),
        pytest.param(f"{MANIFEST_HEAD}\nbeats/b1.csv,p,normal\n", None, id="sample-beyond-float32"),
    ],
)
@pytest.mark.parametrize("skip", [False, True])
def test_defects_the_fuzzer_found_stay_fixed(
    tmp_path: Path, manifest: str, meta: str | None, skip: bool
) -> None:
    """Each of these raised OverflowError, RecursionError, ValueError, OSError or TypeError."""
    beats = [GOOD_BEAT.encode(), b"mv\n1e300\n0.5\n"]
    root = write_store(tmp_path, manifest.encode(), None if meta is None else meta.encode(), beats)
    with pytest.raises(EcgmlError) as err:
        load_beat_store(root, skip_bad_beats=skip)
        if skip:  # a bad beat is skipped, not fatal: the store then has nothing to offer
            raise EcgmlError("skipped")
    assert_user_error(err.value)
