"""Record models of every kind are served. A 12-lead set or strip model reads every lead of a
signal CSV or WFDB record in ``ecgml.predict`` exactly as training cut them, the served pyfunc
takes one column per lead, and an input lacking a lead gets no answer and says which lead is
missing. A multi-label set model answers each disorder from one reading of the recording, a
serum (regression) set model one mmol/L estimate per recording."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from ecgml import TWELVE_LEADS
from ecgml.data.records import DEFAULT_STRIP_FS, DEFAULT_STRIP_S, cut_record, make_strip
from ecgml.inference.inputs import InputOptions
from ecgml.inference.loading import load_model_uri
from ecgml.inference.score import predict_path
from ecgml.models.factory import build_backbone, pinned_backbone
from ecgml.pipeline.beat_model import BadRequest, log_beat_model, model_spec, predict_frame
from ecgml.recordstore import Record
from tests.unit.records.toy import FS, ecg, twelve_views, write_record

SEQ, R = 450, 125  # the record cutter's window at 500 Hz: 250 ms before R, 650 ms after
SHARPEN = 60.0


def twelve_leads(seed: int = 0) -> dict[str, np.ndarray]:
    return twelve_views(ecg(np.random.default_rng(seed), heart_rate=75.0, effect_beats=(1, 4)))


def logged(
    tmp_path: Path,
    compose_cfg,
    model: str,
    seq_len: int,
    fs: float,
    r_index: int | None,
    unit: str,
    lead_mode: str = "joint",
):
    """A 12-lead record model (untrained, its last layer sharpened so that inputs that differ
    give clearly different probabilities) logged and loaded back."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("m", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(experiment).info.run_id
    cfg = compose_cfg(
        "disorder=hyperkalemia", f"model={model}", f"model.backbone.leads={lead_mode}"
    )
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model, len(TWELVE_LEADS), 1, seq_len).eval()
    last = [m for m in backbone.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(SHARPEN)
    spec = model_spec(cfg, seq_len, fs, r_index, 0.5)
    spec = dataclasses.replace(
        spec,
        unit=unit,
        backbone=pinned_backbone(cfg.model.backbone),
        leads=list(TWELVE_LEADS),
        baseline="none",
    )
    loaded = load_model_uri(f"models:/{log_beat_model(uri, run_id, backbone, spec)}", uri)
    return loaded, backbone


@pytest.mark.parametrize("lead_mode", ["joint", "shared"])
def test_a_twelve_lead_set_model_reads_every_lead_as_training_cut_it(
    tmp_path, compose_cfg, lead_mode
):
    leads = twelve_leads()
    write_record(tmp_path / "twelve.csv", leads["II"], leads=leads)
    write_record(tmp_path / "lead_ii.csv", leads["II"])
    model, backbone = logged(tmp_path, compose_cfg, "set_cnn1d", SEQ, FS, R, "record", lead_mode)
    assert model.leads == TWELVE_LEADS and model.unit == "record"

    record = Record("r", "P1", FS, TWELVE_LEADS, np.stack([leads[n] for n in TWELVE_LEADS]))
    cut = cut_record(record, TWELVE_LEADS)  # training's own cutter
    assert cut.r_offset == R and cut.beats.shape[1:] == (12, SEQ)
    batch = {
        "beats": torch.from_numpy(cut.beats)[None],
        "mask": torch.ones(1, len(cut.beats), dtype=torch.bool),
    }
    with torch.no_grad():
        expected = float(torch.sigmoid(backbone(batch))[0, 0])
    assert 0.02 < expected < 0.98, expected  # a real decision, not a saturated one

    by_name = {
        Path(r["input"]).name: r
        for r in predict_path(tmp_path, {"hyperkalemia": model}, InputOptions())
    }
    twelve = by_name["twelve.csv"]
    assert twelve["n_beats"] == len(cut.beats)
    assert twelve["probabilities"]["hyperkalemia"] == pytest.approx(expected, abs=1e-5)
    assert not twelve["warnings"]
    contributions = [b["contributions"]["hyperkalemia"] for b in twelve["per_beat"]]
    assert sum(contributions) == pytest.approx(1.0)
    only_ii = by_name["lead_ii.csv"]
    assert only_ii["probabilities"]["hyperkalemia"] is None
    assert any("lacks I, III, aVR" in w for w in only_ii["warnings"])

    # served: one column per lead, each row one beat of every lead (a record of one beat)
    request = pd.DataFrame(
        {name: [cut.beats[k, c].tolist() for k in range(3)] for c, name in enumerate(TWELVE_LEADS)}
    )
    served = predict_frame(model, request)
    with torch.no_grad():
        one_beat = torch.sigmoid(backbone(torch.from_numpy(cut.beats[:3]))).numpy()[:, 0]
    np.testing.assert_allclose(served["hyperkalemia_raw"], one_beat, rtol=1e-4, atol=1e-6)
    with pytest.raises(BadRequest, match="no column V6"):
        predict_frame(model, request.drop(columns=["V6"]))
    request.loc[0, "V1"] = cut.beats[0, 6, :-10].tolist()
    with pytest.raises(BadRequest, match="row 0: the leads have different lengths"):
        predict_frame(model, request)


@pytest.mark.parametrize("lead_mode", ["joint", "shared"])
def test_a_twelve_lead_strip_model_reads_a_wfdb_record(tmp_path, compose_cfg, lead_mode):
    import wfdb

    leads = twelve_leads(seed=1)
    wfdb.wrsamp(
        "rec12",
        fs=FS,
        units=["mV"] * 12,
        sig_name=list(TWELVE_LEADS),
        p_signal=np.column_stack([leads[n] for n in TWELVE_LEADS]),
        write_dir=str(tmp_path),
    )
    width = round(DEFAULT_STRIP_S * DEFAULT_STRIP_FS)
    model, backbone = logged(
        tmp_path, compose_cfg, "strip_cnn1d", width, DEFAULT_STRIP_FS, None, "strip", lead_mode
    )
    record = Record("r", "P1", FS, TWELVE_LEADS, np.stack([leads[n] for n in TWELVE_LEADS]))
    strip = make_strip(record, TWELVE_LEADS, DEFAULT_STRIP_FS, DEFAULT_STRIP_S)  # training's
    with torch.no_grad():
        expected = float(torch.sigmoid(backbone(torch.from_numpy(strip)[None]))[0, 0])
    [result] = predict_path(tmp_path / "rec12.hea", {"hyperkalemia": model}, InputOptions())
    assert result["probabilities"]["hyperkalemia"] == pytest.approx(expected, abs=1e-4)
    shares = result["strip_contributions"]["hyperkalemia"]
    assert len(shares) == 10 and sum(shares) == pytest.approx(1.0, abs=1e-5)  # 6 decimals each
    served = predict_frame(
        model, pd.DataFrame({**{n: [leads[n].tolist()] for n in TWELVE_LEADS}, "fs": [FS]})
    )
    assert served["hyperkalemia_raw"].iloc[0] == pytest.approx(expected, abs=1e-4)


def task_set_model(tmp_path: Path, compose_cfg, task: str, n_outputs: int, **fields):
    """A lead-II set model of ``task`` written as a logged model's files and read back: one
    :class:`LoadedModel` per output, and the network itself."""
    from ecgml.pipeline.beat_model import read_model_files, scorer_of, write_model_files

    cfg = compose_cfg("model=set_cnn1d")
    torch.manual_seed(1)
    backbone = build_backbone(cfg.model, 1, n_outputs, SEQ).eval()
    last = [m for m in backbone.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(SHARPEN)
    spec = dataclasses.replace(
        model_spec(cfg, SEQ, FS, R, 0.5),
        unit="record",
        task=task,
        disorder=task,
        backbone=pinned_backbone(cfg.model.backbone),
        baseline="none",
        **fields,
    )
    files = write_model_files(scorer_of(backbone, spec), spec, tmp_path / "model")
    return read_model_files(Path(files["weights"]), Path(files["spec"]), "test"), backbone


def lead_ii_record(tmp_path: Path):
    """A lead-II signal CSV and training's cut of it (beats ``(n, 1, SEQ)``, R at ``R``)."""
    leads = twelve_leads(seed=2)
    write_record(tmp_path / "rec.csv", leads["II"])
    cut = cut_record(Record("r", "P1", FS, ("II",), leads["II"][None]), ("II",))
    batch = {
        "beats": torch.from_numpy(cut.beats)[None],
        "mask": torch.ones(1, len(cut.beats), dtype=torch.bool),
    }
    return tmp_path / "rec.csv", batch


def test_a_multilabel_set_model_answers_every_disorder_from_one_reading(tmp_path, compose_cfg):
    from ecgml import DISORDERS

    thresholds = {"hyperkalemia": 0.3, "hypokalemia": 0.5, "hyponatremia": 0.7}
    models, backbone = task_set_model(
        tmp_path,
        compose_cfg,
        "multilabel",
        3,
        outputs=list(DISORDERS),
        thresholds=thresholds,
        calibrations={d: {"method": "none"} for d in DISORDERS},
    )
    assert set(models) == set(DISORDERS) and {m.unit for m in models.values()} == {"record"}
    path, batch = lead_ii_record(tmp_path)
    with torch.no_grad():
        expected = torch.sigmoid(backbone(batch))[0].numpy()
    assert np.ptp(expected) > 0.01  # three different answers
    [result] = predict_path(path, models, InputOptions())
    for k, disorder in enumerate(DISORDERS):
        assert result["probabilities"][disorder] == pytest.approx(expected[k], abs=1e-5)
        assert result["decisions"][disorder] == (expected[k] >= thresholds[disorder])
    weights = [b["contributions"]["hyponatremia"] for b in result["per_beat"]]
    assert sum(weights) == pytest.approx(1.0)


def test_a_serum_set_model_gives_one_estimate_per_recording(tmp_path, compose_cfg):
    from ecgml.inference.inputs import list_inputs, read_inputs
    from ecgml.inference.score import predict_entries

    models, backbone = task_set_model(
        tmp_path, compose_cfg, "potassium", 1, target_mean=4.5, target_std=0.6
    )
    [potassium] = models.values()
    assert potassium.disorder == "potassium" and potassium.unit == "record"
    path, batch = lead_ii_record(tmp_path)
    with torch.no_grad():
        expected = 4.5 + 0.6 * float(backbone(batch)[0, 0])
    entries = read_inputs(list_inputs(path), InputOptions(), progress=False)
    [result] = predict_entries(entries, {}, serum_models=models)
    assert result["potassium_mmol_l"] == pytest.approx(expected, abs=1e-4)
    assert abs(expected - 4.5) > 0.01  # not just the training mean
    assert all("potassium_mmol_l" not in b for b in result["per_beat"])  # one per recording
