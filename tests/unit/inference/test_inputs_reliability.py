"""Issue 17: prediction inputs from an unlucky or hostile user.

One bad beat or file never drops the others (#5), unreadable or unbounded files become a warning
entry (#4, #12), paths never escape a beat store (#9), amplitudes in the wrong unit are refused
unless forced (#15), and CSV mistakes get a message that says what to fix (#16).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import read_manifest
from ecgml.errors import EcgmlError
from ecgml.inference.inputs import InputOptions, list_inputs, read_file, read_input, read_inputs
from ecgml.inference.score import predict_entries
from tests.fakes import FS, PRE, toy_beat, write_toy_store

REPO = Path(__file__).resolve().parents[3]
SEQ_LEN = 150


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """6 patients × 2 beats of 150 samples at 250 Hz (R at 50)."""
    return write_toy_store(tmp_path / "store", n_positive=3, n_negative=3, beats_per_patient=2)


def read(path: Path, **options: object) -> list:
    return read_inputs(list_inputs(path), InputOptions(**options), progress=False)  # type: ignore[arg-type]


def beat_text(values: np.ndarray) -> str:
    return "mv\n" + "\n".join(f"{v:.6g}" for v in values) + "\n"


def a_beat(scale: float = 1.0) -> np.ndarray:
    shape = np.array([0.1, 4.0, 60.0, 12.0])
    return toy_beat(np.random.default_rng(0), 0.3, shape) * scale


@dataclass
class PeakModel:
    """A stand-in for a loaded model: the probability is the beat's peak, clipped to [0, 1]."""

    disorder: str = "hyperkalemia"
    seq_len: int = SEQ_LEN
    fs: float = FS
    r_index: int | None = PRE
    baseline: str = "none"
    threshold: float = 0.5
    calibration: dict = field(default_factory=lambda: {"method": "none"})
    unit: str = "beat"
    model: object = None  # no network: scored through score()

    @property
    def layout_key(self) -> tuple:
        return (self.seq_len, self.fs, self.r_index, self.baseline)

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x.max(axis=1), 0.0, 1.0)


# --------------------------------------------------------------------------- 5: one bad beat


def test_one_nan_beat_is_skipped_and_every_patient_scored(store: Path) -> None:
    manifest = read_manifest(store)
    (store / manifest["beat_file"][0]).write_text("mv\n0.1\nnan\n0.2\n")
    entries = read(store)
    assert [e.patient_id for e in entries] == list(dict.fromkeys(manifest["patient_id"]))
    assert [e.n_beats for e in entries] == [1] + [2] * 5
    skipped = manifest["beat_id"][0]
    assert any(skipped in w and "NaN" in w for w in entries[0].warnings)
    assert not any(e.warnings for e in entries[1:])
    results = predict_entries(entries, {"hyperkalemia": PeakModel()})  # type: ignore[dict-item]
    assert all(r["probabilities"]["hyperkalemia"] is not None for r in results)


def test_patient_whose_every_beat_is_bad_gets_a_failed_entry(store: Path) -> None:
    manifest = read_manifest(store)
    for name in manifest["beat_file"][:2]:
        (store / name).write_text("mv\nabc\n")
    entries = read(store)
    assert len(entries) == 6 and entries[0].n_beats == 0 and entries[0].warnings
    assert all(e.n_beats == 2 for e in entries[1:])


# --------------------------------------------------------------------------- 4: unbounded reads


def test_overlong_single_beat_csv_gives_a_warning_entry(tmp_path: Path) -> None:
    (tmp_path / "long.csv").write_text("mv\n" + "0.5\n" * 1_000_000)
    (tmp_path / "ok.csv").write_text(beat_text(a_beat()))
    entries = {Path(e.input).name: e for e in read(tmp_path, beat_fs=FS)}
    assert entries["ok.csv"].n_beats == 1
    assert entries["long.csv"].n_beats == 0
    assert "at most 1000 samples" in entries["long.csv"].warnings[0]


def test_devices_and_fifos_become_warning_entries(tmp_path: Path) -> None:
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "ok.csv").write_text(beat_text(a_beat()))
    code = textwrap.dedent(
        """
        import json, resource, sys
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
        from ecgml.inference.inputs import InputOptions, list_inputs, read_inputs
        entries = read_inputs(list_inputs(Path(sys.argv[1])), InputOptions(), progress=False)
        print(json.dumps({Path(e.input).name: [e.n_beats, e.warnings] for e in entries}))
        """
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["ok.csv"][0] == 1
    for name in ("zero.csv", "pipe.csv"):
        assert got[name][0] == 0 and "not a regular file" in got[name][1][0], got[name]


def test_r_index_outside_the_beat_skips_that_beat(store: Path) -> None:
    manifest = pd.read_csv(store / "manifest.csv")
    manifest.loc[0, "r_index"] = 100_000_000
    manifest.to_csv(store / "manifest.csv", index=False)
    entries = read(store)
    assert entries[0].n_beats == 1 and "lies outside its beat" in entries[0].warnings[0]


# --------------------------------------------------------------------------- 9: path escapes


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_store_beat_file_outside_the_store_is_a_user_error(
    store: Path, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text(beat_text(a_beat()))
    manifest = pd.read_csv(store / "manifest.csv")
    first = store / manifest.loc[0, "beat_file"]
    if how == "symlink":
        first.unlink()
        first.symlink_to(outside)
    else:
        manifest.loc[0, "beat_file"] = "../secret.csv" if how == "dotdot" else str(outside)
        manifest.to_csv(store / "manifest.csv", index=False)
    with pytest.raises(EcgmlError, match="outside the beat store"):
        read(store)


# --------------------------------------------------------------------------- 12: tracebacks


def test_beatstore_json_array_gives_a_warning_entry(store: Path) -> None:
    (store / "beatstore.json").write_text("[1, 2]")
    (entry,) = read(store)
    assert entry.n_beats == 0 and "must hold a JSON object" in entry.warnings[0]


# --------------------------------------------------------------------------- 15: amplitude


@pytest.mark.parametrize(("scale", "unit"), [(1000.0, "µV"), (0.001, "V")])
def test_wrong_unit_is_refused_and_the_others_go_on(tmp_path: Path, scale: float, unit: str):
    (tmp_path / "a_wrong.csv").write_text(beat_text(a_beat(scale)))
    (tmp_path / "b_ok.csv").write_text(beat_text(a_beat()))
    wrong, ok = read(tmp_path)
    assert ok.n_beats == 1 and not ok.warnings
    assert wrong.n_beats == 0
    (reason,) = wrong.warnings
    assert "median R amplitude" in reason and unit in reason
    assert "allow_implausible_amplitude=true" in reason


def test_wrong_unit_store_patients_are_refused(store: Path) -> None:
    for name in read_manifest(store)["beat_file"]:
        values = pd.read_csv(store / name)["mv"].to_numpy()
        (store / name).write_text(beat_text(values * 1000))
    entries = read(store)
    assert len(entries) == 6 and all(e.n_beats == 0 for e in entries)
    assert all("µV" in e.warnings[-1] for e in entries)


def test_allow_implausible_amplitude_scores_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "uv.csv").write_text(beat_text(a_beat(1000.0)))
    (entry,) = read(tmp_path, allow_implausible_amplitude=True)
    assert entry.n_beats == 1
    assert "median R amplitude" in entry.warnings[0] and "scored anyway" in entry.warnings[0]


def test_predict_config_has_the_amplitude_switch(compose_cfg) -> None:
    cfg = compose_cfg(name="predict")
    assert cfg.allow_implausible_amplitude is False


# --------------------------------------------------------------------------- 16: messages


def write_signal(path: Path, time_scale: float = 1.0, sep: str = ",") -> None:
    t = np.arange(0, 4, 1 / FS)
    mv = np.sin(2 * np.pi * 1.2 * t)
    frame = pd.DataFrame({"time_s": t * time_scale, "mv": mv})
    frame.to_csv(path, index=False, sep=sep)


def test_signal_csv_in_ms_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "ms.csv"
    write_signal(path, time_scale=1000.0)
    with pytest.raises(EcgmlError, match="ms.csv.*time_s.*seconds.*divide") as info:
        read_file(path, InputOptions())
    assert "\n" not in str(info.value)
    entry = read_input(path, InputOptions())
    assert "TypeError" not in entry.warnings[0]


def test_semicolon_signal_csv_says_the_separator_looks_wrong(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    write_signal(path, sep=";")
    with pytest.raises(EcgmlError, match="separator looks like ';'"):
        read_file(path, InputOptions())
