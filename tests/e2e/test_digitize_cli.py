"""``python -m ecgml.digitize`` end to end on a few small rendered images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store
from ecgml.digitize.folder import digitize_folder, read_labels
from ecgml.errors import EcgmlError
from ecgml.recordstore import load_record_store
from ecgml.synth.render import render_ecg

FS = 500


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two good images (a strip and a page), a corrupt file and a blank page, with labels."""
    import neurokit2 as nk

    folder = tmp_path_factory.mktemp("images")
    ecg = nk.ecg_simulate(duration=8, sampling_rate=FS, heart_rate=75, random_state=5)
    cv2.imwrite(str(folder / "a.png"), render_ecg(ecg, FS, dpi=120)[0])
    page, _ = render_ecg(ecg, FS, layout="page", dpi=110, distortions={"jpeg_quality": 80})
    cv2.imwrite(str(folder / "b.jpg"), page)
    (folder / "c.png").write_bytes(b"\x89PNG broken")
    cv2.imwrite(str(folder / "d.png"), np.full((300, 900, 3), 245, np.uint8))
    pd.DataFrame(
        {
            "image_file": ["a.png", "b.jpg", "c.png"],
            "patient_id": ["p1", "p2", "p3"],
            "group": ["normal", "Hyperkalemia", "normal"],
            "center": ["C01", "C02", "C01"],
            "layout": ["strip", "page", "strip"],
        }
    ).to_csv(folder / "images.csv", index=False)
    return folder


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ecgml.digitize", *args, "hydra.run.dir=" + str(cwd / "hydra")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_read_labels_uses_images_csv_and_defaults(image_dir: Path) -> None:
    images = sorted(p for p in image_dir.iterdir() if p.suffix != ".csv")
    labels = read_labels(image_dir, images, "strip")
    assert labels.loc["b.jpg", "group"] == "hyperkalemia"
    assert labels.loc["b.jpg", "layout"] == "page"
    assert labels.loc["d.png", "patient_id"] == "d" and labels.loc["d.png", "group"] == "unknown"


def test_digitize_folder_writes_signals_beats_and_report(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = digitize_folder(image_dir, out, n_jobs=1, progress=False)
    assert list(report.columns)[:5] == ["image_file", "status", "error", "n_beats", "seconds"]
    assert list(report.columns)[5:] == ["layout", "leads", "leads_left_out", "calibration"]
    status = dict(zip(report["image_file"], report["status"], strict=True))
    rows = report.set_index("image_file")
    assert rows.loc["a.png", "layout"] == "strip" and rows.loc["a.png", "leads"] == "II"
    assert rows.loc["b.jpg", "layout"] == "page" and rows.loc["b.jpg", "calibration"] == "grid"
    assert len(rows.loc["b.jpg", "leads"].split(";")) == 12
    page_leads = pd.read_csv(out / "leads" / "b.csv")
    assert list(page_leads.columns) == ["time_s", "I", "II", "III", "aVR", "aVL", "aVF"] + [
        f"V{k}" for k in range(1, 7)
    ]
    assert page_leads["II"].notna().mean() > 0.95  # the rhythm strip: the whole page
    assert 0.2 < page_leads["V1"].notna().mean() < 0.3  # a 3x4 column: a quarter of it
    assert list(pd.read_csv(out / "leads" / "a.csv").columns) == ["time_s", "II"]
    assert status == {"a.png": "ok", "b.jpg": "ok", "c.png": "failed", "d.png": "failed"}
    assert "not a readable image" in report.set_index("image_file").loc["c.png", "error"]
    signal = pd.read_csv(out / "signals" / "a.csv")
    assert list(signal.columns) == ["time_s", "mv"]
    assert signal["time_s"].iloc[1] == pytest.approx(1 / FS)
    assert abs(signal["time_s"].iloc[-1] - 8.0) < 0.1
    assert not (out / "signals" / "c.csv").exists()
    store = load_beat_store(out)  # the packed beat store in out/beats/
    names = sorted(p.name for p in (out / "beats").iterdir())
    assert names == ["beatstore.json", "manifest.csv", "samples.arrow"]  # no beat CSVs
    assert len(store) == int(report["n_beats"].sum()) >= 12
    assert set(store.meta["patient_id"]) == {"p1", "p2"}
    assert set(store.meta["group"]) == {"normal", "hyperkalemia"}
    assert set(store.meta["source_image"]) == {"a.png", "b.jpg"}
    assert store.info.fs == FS
    assert pd.read_csv(out / "records.csv")["packed_row"].tolist() == [0, 1]  # samples.arrow
    records = load_record_store(out)  # records.csv: each digitized image's lead-II signal
    assert sorted(r.record_id for r in records.records) == ["a", "b"]
    by_id = {r.record_id: r for r in records.records}
    groups = dict(zip(records.meta["record_id"], records.meta["group"], strict=True))
    assert groups == {"a": "normal", "b": "hyperkalemia"} and by_id["a"].patient_id == "p1"
    np.testing.assert_allclose(by_id["a"].lead("II"), signal["mv"], atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp left
    with pytest.raises(EcgmlError, match="not empty"):
        digitize_folder(image_dir, out, progress=False)


def test_digitize_folder_rejects_bad_arguments(image_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(EcgmlError, match="layout"):
        digitize_folder(image_dir, tmp_path / "o", layout="scroll")
    with pytest.raises(EcgmlError, match="no .* files"):
        digitize_folder(tmp_path, tmp_path / "o")
    bad = tmp_path / "bad_labels"
    bad.mkdir()
    cv2.imwrite(str(bad / "x.png"), np.full((50, 50, 3), 255, np.uint8))
    (bad / "images.csv").write_text("image_file,patient_id,group\nx.png,p,hypercalcemia\n")
    with pytest.raises(EcgmlError, match="hypercalcemia"):
        digitize_folder(bad, tmp_path / "o")


@pytest.mark.slow
def test_cli_exit_codes(image_dir: Path, tmp_path: Path) -> None:
    ok = run_cli(f"input_dir={image_dir}", "output_dir=out", "n_jobs=2", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "out" / "beats" / "manifest.csv").is_file()
    report = pd.read_csv(tmp_path / "out" / "report.csv")
    assert (report["status"] == "ok").sum() == 2

    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "c.png").write_bytes(b"broken")
    failed = run_cli(f"input_dir={only_bad}", "output_dir=out2", cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: no image could be digitized")
    assert not (tmp_path / "out2" / "beats").exists()
    assert (tmp_path / "out2" / "report.csv").is_file()

    missing = run_cli("output_dir=out3", cwd=tmp_path)
    assert missing.returncode == 2 and "input_dir" in missing.stderr
