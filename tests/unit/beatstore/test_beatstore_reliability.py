"""Issue 17: a beat store from an unlucky or hostile user ends in one EcgmlError line.

Defects #4 (unbounded memory), #9 (paths escaping the store), #12 (tracebacks), #13 (implausible
``fs``), #15 (amplitude in the wrong unit) and #16 (a ``;``-separated manifest). Nothing here
allocates more than a few MB: the refusals must happen before any padding or unbounded read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store, read_manifest
from ecgml.data import datamodule
from ecgml.data.datamodule import load_store, load_table
from ecgml.errors import EcgmlError
from tests.fakes import write_toy_store

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """12 beats of 150 samples at 250 Hz (R at 50), 3 hyperkalemia + 3 normal patients."""
    return write_toy_store(tmp_path / "store", n_positive=3, n_negative=3, beats_per_patient=2)


def set_cell(store: Path, column: str, value: object, row: int = 0) -> None:
    manifest = pd.read_csv(store / "manifest.csv", dtype=str)
    manifest[column] = manifest[column].astype(object)
    manifest.loc[row, column] = value
    manifest.to_csv(store / "manifest.csv", index=False)


def first_beat(store: Path) -> Path:
    return store / read_manifest(store)["beat_file"][0]


def scale_beats(store: Path, factor: float) -> None:
    for name in read_manifest(store)["beat_file"]:
        values = pd.read_csv(store / name)["mv"].to_numpy() * factor
        (store / name).write_text("mv\n" + "\n".join(f"{v:.6g}" for v in values) + "\n")


def load_in_child(store: Path, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``load_beat_store`` in a child capped at 1.5 GiB of address space and ``timeout`` s."""
    code = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
        from ecgml.beatstore import load_beat_store
        from ecgml.errors import EcgmlError
        try:
            load_beat_store(sys.argv[1])
        except EcgmlError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, str(store)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


# --------------------------------------------------------------------------- 4: memory


def test_overlong_beat_is_refused_before_padding(
    store: Path, monkeypatch: pytest.MonkeyPatch, compose_cfg
) -> None:
    first_beat(store).write_text("mv\n" + "0.1\n" * 1_000_000)  # 4 MB, 10^6 samples
    monkeypatch.setattr(datamodule, "align_beats", _never_called)
    cfg = compose_cfg("data=beats", f"data.path={store}", "disorder=hyperkalemia")
    with pytest.raises(EcgmlError, match=r"1000 samples \(data.max_beat_s=4") as info:
        load_table(cfg)
    assert str(first_beat(store)) in str(info.value)
    assert "\n" not in str(info.value)


def _never_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("beats were padded before the overlong beat was refused")


def test_the_beat_length_bound_is_configurable(store: Path, compose_cfg) -> None:
    first_beat(store).write_text("mv\n" + "0.1\n" * 5000)  # 20 s at 250 Hz
    with pytest.raises(EcgmlError, match="at most 1000 samples"):
        load_beat_store(store)
    assert len(load_beat_store(store, max_beat_s=30).beats[0]) == 5000
    cfg = compose_cfg("data=beats", f"data.path={store}", "data.max_beat_s=30")
    assert len(load_store(cfg).beats[0]) == 5000


def test_symlink_to_dev_zero_is_refused_without_reading_it(store: Path) -> None:
    beat = first_beat(store)
    beat.unlink()
    beat.symlink_to("/dev/zero")
    run = load_in_child(store)
    assert run.returncode == 2, run.stderr[-1500:]
    assert run.stderr.count("\n") == 1 and str(beat) in run.stderr
    assert "outside the beat store" in run.stderr or "not a regular file" in run.stderr


def test_fifo_beat_file_is_refused_without_blocking(store: Path) -> None:
    beat = first_beat(store)
    beat.unlink()
    os.mkfifo(beat)
    run = load_in_child(store, timeout=20)
    assert run.returncode == 2, run.stderr[-1500:]
    assert run.stderr.startswith("error: ") and "not a regular file" in run.stderr


@pytest.mark.parametrize("r_index", ["100000000", "-100000000", "150", "-1"])
def test_r_index_outside_its_beat_is_refused(store: Path, r_index: str) -> None:
    set_cell(store, "r_index", r_index)
    with pytest.raises(EcgmlError, match=f"r_index {r_index} lies outside its beat of 150"):
        load_beat_store(store)


# --------------------------------------------------------------------------- 9: path escapes


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_beat_file_outside_the_store_is_refused(store: Path, tmp_path: Path, how: str) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("mv\n0.1\n0.2\n")
    if how == "dotdot":
        set_cell(store, "beat_file", "beats/../../secret.csv")
    elif how == "absolute":
        set_cell(store, "beat_file", str(outside))
    else:
        first_beat(store).unlink()
        first_beat(store).symlink_to(outside)
    with pytest.raises(EcgmlError, match="outside the beat store") as info:
        load_beat_store(store)
    assert "\n" not in str(info.value)


def test_symlink_inside_the_store_is_accepted(store: Path) -> None:
    beats = read_manifest(store)["beat_file"]
    first_beat(store).unlink()
    first_beat(store).symlink_to(store / beats[1])
    loaded = load_beat_store(store)
    np.testing.assert_array_equal(loaded.beats[0], loaded.beats[1])


@pytest.mark.slow
def test_train_cli_exits_2_on_a_path_escape(store: Path, tmp_path: Path) -> None:
    set_cell(store, "beat_file", "/etc/passwd")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = subprocess.run(
        [sys.executable, "-m", "ecgml.train", "data=beats", f"data.path={store}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "outside the beat store" in errors[0]
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------- 12: tracebacks


def test_beat_file_that_is_a_folder_is_refused(store: Path) -> None:
    set_cell(store, "beat_file", "beats")
    with pytest.raises(EcgmlError, match="is a folder"):
        load_beat_store(store)


def test_symlink_loop_is_refused(store: Path) -> None:
    beat = first_beat(store)
    beat.unlink()
    beat.symlink_to(beat)
    with pytest.raises(EcgmlError, match="cannot be resolved"):
        load_beat_store(store)


@pytest.mark.parametrize("text", ["[500, 1]", '"500"', "42", "null"])
def test_beatstore_json_that_is_not_an_object_is_refused(store: Path, text: str) -> None:
    (store / "beatstore.json").write_text(text)
    with pytest.raises(EcgmlError, match="beatstore.json must hold a JSON object"):
        load_beat_store(store)


@pytest.mark.parametrize("r_index", ["12.7", "1e400", "abc"])
def test_fractional_r_index_is_refused(store: Path, r_index: str) -> None:
    set_cell(store, "r_index", r_index)
    with pytest.raises(EcgmlError, match="r_index must hold whole sample indices"):
        load_beat_store(store)


def test_whole_float_r_index_is_accepted(store: Path) -> None:
    set_cell(store, "r_index", "50.0")
    assert load_beat_store(store).meta["r_index"].iloc[0] == 50


# --------------------------------------------------------------------------- 13: fs


@pytest.mark.parametrize("fs", ["NaN", "1e-9", "0", "49", "10001", "1e9", '"500"', "true"])
def test_implausible_fs_is_refused(store: Path, fs: str) -> None:
    (store / "beatstore.json").write_text(f'{{"fs": {fs}, "units": "mV"}}')
    with pytest.raises(EcgmlError, match="fs must be a number of Hz between 50 and 10000"):
        load_beat_store(store)


def test_implausible_default_fs_is_refused(store: Path) -> None:
    (store / "beatstore.json").unlink()
    with pytest.raises(EcgmlError, match="between 50 and 10000"):
        load_beat_store(store, default_fs=float("nan"))


# --------------------------------------------------------------------------- 15: amplitude


@pytest.mark.parametrize(("factor", "unit"), [(1000.0, "µV"), (0.001, "V")])
def test_training_refuses_beats_in_the_wrong_unit(
    store: Path, compose_cfg, factor: float, unit: str
) -> None:
    scale_beats(store, factor)
    cfg = compose_cfg("data=beats", f"data.path={store}", "disorder=hyperkalemia")
    with pytest.raises(EcgmlError, match=f"median R amplitude .* mV .*{unit}") as info:
        load_table(cfg)
    assert str(store) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- 16: separator


@pytest.mark.parametrize("sep", [";", "\t"])
def test_manifest_with_the_wrong_separator_says_so(store: Path, sep: str) -> None:
    manifest = pd.read_csv(store / "manifest.csv")
    manifest.to_csv(store / "manifest.csv", index=False, sep=sep)
    with pytest.raises(EcgmlError, match=re.escape(f"separator looks like {sep!r}")) as info:
        read_manifest(store)
    assert "comma" in str(info.value)


def test_a_huge_manifest_of_missing_files_is_refused_at_its_first_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The existence check streams the manifest: the first missing file answers before the
    whole table is parsed (a 3-million-row manifest: experiments/bench_manifest.py)."""
    import ecgml.beatstore as beatstore

    store = tmp_path / "store"
    (store / "beats").mkdir(parents=True)
    rows = 120_000  # more than two chunks
    lines = [f"beats/b{k}.csv,P{k // 3},normal,b{k},1\n" for k in range(rows)]
    (store / "manifest.csv").write_text(
        "beat_file,patient_id,group,beat_id,r_index\n" + "".join(lines)
    )

    def full_parse(*_args, **_kwargs):
        raise AssertionError("the whole manifest was parsed before the missing file was found")

    monkeypatch.setattr(beatstore, "read_manifest", full_parse)
    with pytest.raises(EcgmlError, match=r"manifest.csv line 2: beat file .*b0.csv is listed"):
        load_beat_store(store)
    (store / "beats" / "b0.csv").write_text("mv\n0.1\n")  # now the next missing one is named
    with pytest.raises(EcgmlError, match=r"line 3: beat file .*b1.csv"):
        load_beat_store(store)


@pytest.mark.parametrize("listed", ["../outside.csv", "/etc/passwd", "beats/../../outside.csv"])
def test_a_listed_path_leaving_the_store_is_refused_by_the_stream(tmp_path: Path, listed) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "outside.csv").write_text("mv\n0.1\n")
    (store / "manifest.csv").write_text(f"beat_file,patient_id,group\n{listed},P1,normal\n")
    with pytest.raises(EcgmlError, match="lies outside the beat store"):
        load_beat_store(store)


def _object_array_npz(path: Path) -> None:
    np.savez(path, flat=np.array([{"a": 1}], dtype=object), offsets=np.array([0, 1]))


def _wrong_offsets_npz(path: Path) -> None:
    np.savez(path, flat=np.zeros(10, np.float32), offsets=np.array([0, 99]))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"PK\x03\x04 not a zip at all"),
        lambda p: p.write_bytes(p.read_bytes()[:200]),  # truncated
        _object_array_npz,
        _wrong_offsets_npz,
    ],
    ids=["garbage", "truncated", "object-array", "wrong-offsets"],
)
def test_a_damaged_beat_cache_is_discarded_and_rebuilt(store: Path, tmp_path: Path, damage, caplog):
    cache = tmp_path / "cache"
    first = load_beat_store(store, cache_dir=cache)
    (cache_file,) = cache.glob("beats-*.npz")
    damage(cache_file)
    with caplog.at_level("WARNING", logger="ecgml.data"):
        again = load_beat_store(store, cache_dir=cache)
    assert "unusable" in caplog.text and "rebuilding" in caplog.text
    assert len(again.beats) == len(first.beats)
    for a, b in zip(again.beats, first.beats, strict=True):
        np.testing.assert_array_equal(a, b)
    caplog.clear()
    load_beat_store(store, cache_dir=cache)  # the rebuilt cache is used silently
    assert "unusable" not in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [("pre_r_ms", 1e300), ("post_r_ms", -5), ("pre_r_ms", "250"), ("post_r_ms", 1e5)],
)
def test_beatstore_json_windows_are_range_checked(store: Path, key: str, value) -> None:
    import json

    (store / "beatstore.json").write_text(json.dumps({"fs": 500, key: value}))
    with pytest.raises(EcgmlError, match=f"{key} must be a number of ms between 0 and 4000"):
        load_beat_store(store)
