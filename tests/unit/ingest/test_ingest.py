"""``ecgml.ingest`` end to end on the synthetic cohort exported in every format: the true lab
values paired, the decoys passed over, the samples kept, every exclusion named."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml import PROJECT_ROOT
from ecgml.ecgfile import Recording, build_recording
from ecgml.errors import EcgmlError
from ecgml.ingest.groups import GroupRule
from ecgml.ingest.pairing import PairingRule
from ecgml.ingest.reading import Cutting
from ecgml.ingest.run import IngestSettings, ingest
from ecgml.recordstore import load_record_store, read_record_csv
from ecgml.synth.exports import FORMATS, export_cohort
from ecgml.synth.exports import csv as csv_export
from tests.interrupt import ctrl_c_once_started

#: Largest difference (mV) between a lead-II sample written and read back: half the coarsest
#: step of any writer (MUSE 4.88 µV, aECG 5 µV) plus the CSV's 0.01 µV.
TOLERANCE_MV = 0.0026


def _settings(ecgs: Path, labs: Path, out: Path, **changes: object) -> IngestSettings:
    return replace(IngestSettings(ecgs, labs, out, progress=False), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=sorted(FORMATS))
def ingested(request: pytest.FixtureRequest, cohort12: Path, tmp_path_factory) -> tuple:
    fmt = request.param
    root = tmp_path_factory.mktemp(f"export_{fmt}")
    exported = export_cohort(cohort12, root / "export", fmt)
    report = ingest(_settings(exported.ecgs, exported.labs, root / "store"))
    return fmt, exported, root / "store", report


def test_every_format_pairs_the_true_values(ingested: tuple) -> None:
    _fmt, exported, store, report = ingested
    records = pd.read_csv(store / "records.csv", dtype={"patient_id": str, "record_id": str})
    truth = pd.read_csv(exported.truth, dtype={"patient_id": str, "record_id": str})
    assert len(records) == len(truth) == 20 and report.n_records == 20
    merged = records.merge(truth, on="patient_id", suffixes=("", "_true"), validate="1:1")
    assert (merged["group"] == merged["group_true"]).all()
    assert np.allclose(merged["potassium"], merged["potassium_true"], atol=1e-9)
    assert np.allclose(merged["sodium"], merged["sodium_true"], atol=1e-9)
    true_time = pd.to_datetime(merged["ecg_time_true"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    assert (merged["ecg_time"] == true_time).all()
    # the true results lie before the ECG; the tie decoy as far after it lost
    assert (pd.to_datetime(merged["potassium_time"]) < pd.to_datetime(merged["ecg_time"])).all()
    assert report.excluded == {}


def test_every_format_keeps_the_samples(ingested: tuple, cohort12: Path) -> None:
    fmt, exported, store, _ = ingested
    records = pd.read_csv(store / "records.csv", dtype={"patient_id": str, "record_id": str})
    truth = pd.read_csv(exported.truth, dtype={"patient_id": str, "record_id": str})
    source = truth.set_index("patient_id")["record_id"]
    worst = 0.0
    for row in records.itertuples(index=False):
        fs, leads, signal = read_record_csv(store / row.record_file)
        _, true_leads, true_signal = read_record_csv(
            cohort12 / "signals12" / f"{source[row.patient_id]}.csv"
        )
        assert fs == 500 and leads == true_leads  # 12 leads (MUSE's 4 derived ones included)
        ii = leads.index("II")
        worst = max(worst, float(np.abs(signal[ii] - true_signal[ii]).max()))
    assert worst <= TOLERANCE_MV, f"{fmt}: lead II off by {worst} mV"


def test_the_decoy_lab_rows_are_excluded_with_their_reasons(ingested: tuple) -> None:
    fmt, _, store, report = ingested
    labs = pd.read_csv(store / "excluded_labs.csv")
    expected = {"lab_out_of_range": 20, "non_numeric_value": 1, "no_patient_id": 1, "bad_time": 1}
    if fmt != "wfdb":  # MIMIC's other item ids are skipped unread, not excluded
        expected["unknown_analyte"] = 20
    assert report.excluded_labs == expected
    assert labs["reason"].value_counts().to_dict() == expected


def test_the_ingested_store_loads_as_a_record_store(ingested: tuple) -> None:
    _, _, store, _ = ingested
    loaded = load_record_store(store)
    assert len(loaded) == 20 and loaded.fs == 500 and not loaded.skipped
    table = pd.read_csv(store / "records.csv", dtype={"record_id": str})
    assert (store / "samples.arrow").is_file() and table["packed_row"].tolist() == list(range(20))
    for record, listed in zip(loaded.records, table["record_file"], strict=True):
        _, leads, written = read_record_csv(store / listed)  # the CSV copy of the same window
        assert record.leads == leads
        np.testing.assert_allclose(record.signal, written, atol=0.0005 + 1e-6)  # int16: 1 µV


# --------------------------------------------------------------------------- bad input


def _csv_record(path: Path, seconds: float = 10.0, fs: float = 500.0, scale: float = 1.0) -> None:
    """A signal CSV of beat-like bumps (``scale`` 0: flat; 1000: µV written as mV)."""
    t = np.arange(int(seconds * fs)) / fs
    beat = scale * np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0004)
    rec = Recording(np.stack([0.5 * beat, beat]), ("I", "II"), fs, path.stem)
    csv_export.write(path, rec)


def _labs_for(path: Path, patients: dict[str, str], k: float = 4.0) -> Path:
    rows = ["patient_id,time,analyte,value"]
    for patient, when in patients.items():
        rows += [f"{patient},{when},K,{k}", f"{patient},{when},Na,140"]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_bad_files_and_index_rows_are_excluded_with_their_reasons(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    for name in ("good", "copy", "flat", "loud"):
        _csv_record(ecgs / f"{name}.csv", scale={"flat": 0.0, "loud": 1000.0}.get(name, 1.0))
    _csv_record(ecgs / "short.csv", seconds=1.0)
    shutil.copy(ecgs / "good.csv", ecgs / "copy.csv")
    (ecgs / "garbage.csv").write_text("time_s,II\n0,abc\n")
    (tmp_path / "outside.csv").write_text("time_s,II\n")
    when = "2180-01-01 10:00:00"
    index = pd.DataFrame(
        {
            "path": [
                "good.csv",
                "copy.csv",
                "flat.csv",
                "loud.csv",
                "short.csv",
                "garbage.csv",
                "nothere.csv",
                "../outside.csv",
                "good.csv",
                "good.csv",
            ],
            "patient_id": ["p1", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "", "p9"],
            "time": [when] * 9 + [""],
        }
    )
    index.to_csv(ecgs / "index.csv", index=False)
    labs = _labs_for(tmp_path / "labs.csv", {"p1": when})
    ingest(_settings(ecgs / "index.csv", labs, tmp_path / "out"))
    excluded = pd.read_csv(tmp_path / "out" / "excluded.csv")
    keys = excluded["source_file"] + "|" + excluded["patient_id"].fillna("").astype(str)
    reasons = dict(zip(keys, excluded["reason"], strict=True))
    assert reasons == {
        "copy.csv|p1": "duplicate",
        "flat.csv|p2": "implausible_amplitude",
        "loud.csv|p3": "implausible_amplitude",
        "short.csv|p4": "too_short",
        "garbage.csv|p5": "unreadable",
        "nothere.csv|p6": "missing_file",
        "../outside.csv|p7": "outside_ecgs",
        "good.csv|": "no_patient_id",
        "good.csv|p9": "no_time",
    }
    assert (
        excluded["detail"].str.len().gt(0).all() and not excluded["detail"].str.contains("\n").any()
    )
    records = pd.read_csv(tmp_path / "out" / "records.csv")
    assert records["source_file"].tolist() == ["good.csv"]


def test_windows_resampling_ids_and_one_group_per_patient(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    _csv_record(ecgs / "a" / "x.csv", seconds=25.0, fs=360.0)
    _csv_record(ecgs / "b" / "x.csv")
    _csv_record(ecgs / "later.csv")
    pd.DataFrame(
        {
            "path": ["a/x.csv", "b/x.csv", "later.csv"],
            "patient_id": ["p1", "p2", "p1"],
            "time": ["2180-01-01 10:00:00", "2180-01-01 10:00:00", "2180-01-03 10:00:00"],
        }
    ).to_csv(ecgs / "index.csv", index=False)
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "patient_id,time,analyte,value\n"
        "p1,2180-01-01 09:00,K,6.1\np1,2180-01-03 09:00,K,4.0\np1,2180-01-03 09:00,Na,140\n"
        "p2,2180-01-01 09:00,K,4.0\np2,2180-01-01 09:30,Na,139\n"
    )
    out = tmp_path / "out"
    ingest(_settings(ecgs / "index.csv", labs, out, cutting=Cutting(500.0, 10.0, "all")))
    records = pd.read_csv(out / "records.csv", dtype=str)
    assert records["record_id"].tolist() == ["a/x_w0", "a/x_w1", "b/x_w0"]
    assert records["ecg_time"].tolist() == [
        "2180-01-01T10:00:00",
        "2180-01-01T10:00:10",
        "2180-01-01T10:00:00",
    ]
    assert records["group"].tolist() == ["hyperkalemia", "hyperkalemia", "normal"]
    fs, _, signal = read_record_csv(out / records["record_file"][0])
    assert fs == 500 and signal.shape[1] == 5000
    excluded = pd.read_csv(out / "excluded.csv")
    assert excluded[["source_file", "reason"]].values.tolist() == [
        ["later.csv", "other_group_of_patient"]
    ]
    assert excluded["detail"][0] == "the patient's group is hyperkalemia"
    everything = ingest(
        _settings(ecgs / "index.csv", labs, tmp_path / "all", groups=GroupRule(selection="all"))
    )
    assert everything.groups == {"hyperkalemia": 1, "normal": 2}


def test_hashed_patient_ids_never_reach_the_store(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    _csv_record(ecgs / "r.csv")
    when = "2180-01-01 10:00:00"
    pd.DataFrame({"path": ["r.csv"], "patient_id": ["MRN-7734"], "time": [when]}).to_csv(
        ecgs / "index.csv", index=False
    )
    labs = _labs_for(tmp_path / "labs.csv", {"MRN-7734": when, "": when})
    first = ingest(
        _settings(ecgs / "index.csv", labs, tmp_path / "a", hash_ids=True, hash_salt="s3cret")
    )
    ingest(_settings(ecgs / "index.csv", labs, tmp_path / "b", hash_ids=True, hash_salt="s3cret"))
    ids = [pd.read_csv(tmp_path / d / "records.csv", dtype=str)["patient_id"][0] for d in "ab"]
    assert ids[0] == ids[1] and len(ids[0]) == 16 and first.n_records == 1
    files = (p for p in (tmp_path / "a").rglob("*") if p.is_file())
    text = "".join(p.read_bytes().decode("utf-8", "replace") for p in files)  # samples.arrow too
    assert "MRN-7734" not in text


def test_pairing_window_rule_is_used(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    _csv_record(ecgs / "r.csv")
    pd.DataFrame({"path": ["r.csv"], "patient_id": ["p"], "time": ["2180-01-01 10:00"]}).to_csv(
        ecgs / "index.csv", index=False
    )
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "patient_id,time,analyte,value\np,2180-01-01 08:00,K,6\np,2180-01-01 08:00,Na,140\n"
    )
    same_day = ingest(_settings(ecgs / "index.csv", labs, tmp_path / "a"))
    assert same_day.groups == {"hyperkalemia": 1}
    with pytest.raises(EcgmlError, match=r"no_lab_in_window 1"):
        ingest(
            _settings(ecgs / "index.csv", labs, tmp_path / "b", pairing=PairingRule("window", 1.0))
        )
    assert not (tmp_path / "b").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecgml.ingest", "progress=false", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_unusable_inputs_are_one_line_exit_2_and_leave_nothing(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    ecgs.mkdir()
    (ecgs / "junk.dcm").write_bytes(b"not dicom at all" * 10)
    (ecgs / "note.txt").write_text("hello")
    labs = _labs_for(tmp_path / "labs.csv", {"p": "2180-01-01 10:00"})
    bad_labs = tmp_path / "bad.csv"
    bad_labs.write_text("who,when\n1,2\n")
    out = tmp_path / "out"
    cases = {
        "no readable ECG": (f"ecgs={ecgs}", f"labs={labs}", f"out={out}"),
        "unknown lab layout": (f"ecgs={ecgs}", f"labs={bad_labs}", f"out={out}"),
        "out inside ecgs": (f"ecgs={ecgs}", f"labs={labs}", f"out={ecgs / 'store'}"),
        "out beside the index": (
            f"ecgs={ecgs / 'index.csv'}",
            f"labs={labs}",
            f"out={ecgs / 'store'}",
        ),
        "bad setting": (f"ecgs={ecgs}", f"labs={labs}", f"out={out}", "max_s=-1"),
        "no ecgs": (f"labs={labs}", f"out={out}"),
    }
    for name, args in cases.items():
        run = _cli(*args)
        assert run.returncode == 2, (name, run.stderr[-2000:])
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, run.stderr)
        assert not out.exists() and not (ecgs / "store").exists(), name
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], name


@pytest.mark.slow
def test_the_cli_ingests_and_refuses_to_overwrite_without_leave(
    tmp_path: Path, cohort12: Path
) -> None:
    exported = export_cohort(
        cohort12, tmp_path / "export", "dicom" if "dicom" in FORMATS else "csv"
    )
    out = tmp_path / "store"
    run = _cli(f"ecgs={exported.ecgs}", f"labs={exported.labs}", f"out={out}", "n_jobs=2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ingested 20 ECG(s) of 20 file(s)" in run.stdout
    assert "groups: hyperkalemia 4, hypokalemia 4, hyponatremia 4, normal 8" in run.stdout
    again = _cli(f"ecgs={exported.ecgs}", f"labs={exported.labs}", f"out={out}")
    assert again.returncode == 2 and "overwrite=true" in again.stderr
    replaced = _cli(
        f"ecgs={exported.ecgs}",
        f"labs={exported.labs}",
        f"out={out}",
        "overwrite=true",
        "pairing.rule=window",
        "pairing.window_h=1",
    )
    assert replaced.returncode == 0, replaced.stderr[-3000:]


@pytest.mark.slow
def test_ecgml_trains_on_an_ingested_store_unchanged(tmp_path: Path, cohort12: Path) -> None:
    exported = export_cohort(cohort12, tmp_path / "export", "wfdb")
    store = tmp_path / "store"
    ingest(_settings(exported.ecgs, exported.labs, store))
    command = [
        sys.executable,
        "-m",
        "ecgml.train",
        "disorder=hyponatremia",
        "data=records",
        f"data.path={store}",
        "model=set_cnn1d",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "evaluation.n_bootstrap=10",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "++model.backbone.encoder_overrides.channels=[4,8]",
    ]
    run = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv", dtype={"record_id": str})
    records = pd.read_csv(store / "records.csv", dtype={"record_id": str})
    assert set(predictions["record_id"]) <= set(records["record_id"]) and len(predictions) > 0


def test_a_recording_datetime_from_the_file_is_used_without_an_index(tmp_path: Path) -> None:
    from ecgml.synth.exports import wfdb as wfdb_export

    t = np.arange(5000) / 500
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0004)
    rec = build_recording([("II", beat)], 500, "r1", "p1", datetime(2180, 5, 5, 10, 0, 0))
    wfdb_export.write(tmp_path / "ecgs" / "r1.hea", rec)
    labs = _labs_for(tmp_path / "labs.csv", {"p1": "2180-05-05 09:30"}, k=3.0)
    report = ingest(_settings(tmp_path / "ecgs", labs, tmp_path / "out"))
    records = pd.read_csv(tmp_path / "out" / "records.csv", dtype=str)
    assert report.groups == {"hypokalemia": 1}
    assert records[["patient_id", "ecg_time", "source_file"]].values.tolist() == [
        ["p1", "2180-05-05T10:00:00", "r1.hea"]
    ]


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import ecgml.ingest.reading as reading
    from ecgml.cli.ingest import main

    flag = Path(sys.argv[1])

    def slow_read(job, **_):
        flag.write_text("started")
        time.sleep(60)

    reading.read_source = slow_read
    sys.argv = ["ingest", *sys.argv[2:]]
    main()
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="process groups and fork")
def test_ctrl_c_is_one_line_exit_130_and_leaves_no_output(tmp_path: Path) -> None:
    ecgs = tmp_path / "ecgs"
    for n in range(4):
        _csv_record(ecgs / f"r{n}.csv")
    labs = _labs_for(tmp_path / "labs.csv", {"p": "2180-01-01 10:00"})
    flag = tmp_path / "started"
    args = [
        f"ecgs={ecgs}",
        f"labs={labs}",
        f"out={tmp_path / 'out'}",
        "n_jobs=2",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'h'}",
    ]
    returncode, stderr = ctrl_c_once_started(CTRL_C_SCRIPT, flag, args, "ingest")
    assert returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_acquisition_offsets_are_dropped_or_converted_like_lab_times(tmp_path: Path) -> None:
    from datetime import timedelta, timezone

    from ecgml.synth.exports import aecg as aecg_export

    t = np.arange(5000) / 500
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 0.0004)
    for n, hours in enumerate((-5, -4)):
        when = datetime(2180, 3, 10, 10, 0, 0, tzinfo=timezone(timedelta(hours=hours)))
        rec = build_recording([("II", beat), ("I", 0.5 * beat)], 500, f"r{n}", f"p{n}", when)
        aecg_export.write(tmp_path / "ecgs" / f"r{n}.xml", rec)
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "patient_id,time,analyte,value\n"
        "p0,2180-03-10 09:00,K,4\np0,2180-03-10 09:00,Na,140\n"
        "p1,2180-03-10T14:30:00+00:00,K,4\np1,2180-03-10T14:30:00+00:00,Na,140\n"
    )
    ingest(_settings(tmp_path / "ecgs", labs, tmp_path / "wall"))
    wall = pd.read_csv(tmp_path / "wall" / "records.csv", dtype=str)
    assert wall["ecg_time"].tolist() == ["2180-03-10T10:00:00", "2180-03-10T10:00:00"]
    assert wall["potassium_time"].tolist() == ["2180-03-10T09:00:00", "2180-03-10T14:30:00"]
    ingest(_settings(tmp_path / "ecgs", labs, tmp_path / "utc", timezone="UTC"))
    utc = pd.read_csv(tmp_path / "utc" / "records.csv", dtype=str)
    assert utc["ecg_time"].tolist() == ["2180-03-10T15:00:00", "2180-03-10T14:00:00"]


def test_an_index_csv_s_folder_is_an_input_too(tmp_path: Path) -> None:
    ecgs = tmp_path / "export"
    _csv_record(ecgs / "r.csv")
    (ecgs / "index.csv").write_text("path,patient_id,time\nr.csv,p,2180-01-01 10:00\n")
    labs = _labs_for(tmp_path / "labs.csv", {"p": "2180-01-01 10:00"})
    with pytest.raises(EcgmlError, match="out .* overlaps ecgs folder"):
        ingest(_settings(ecgs / "index.csv", labs, ecgs / "store"))
    assert sorted(p.name for p in ecgs.iterdir()) == ["index.csv", "r.csv"]
    assert ingest(_settings(ecgs / "index.csv", labs, tmp_path / "store")).n_records == 1
