"""ecgml.inference without MLflow: beat preparation, every input kind, scoring and the JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from ecgml.beatstore import load_beat_store
from ecgml.data import datamodule
from ecgml.data.datamodule import build_beat_table
from ecgml.errors import EcgmlError
from ecgml.inference import preprocess
from ecgml.inference.inputs import InputOptions, Window, list_inputs, read_inputs
from ecgml.inference.preprocess import prepare_beats
from ecgml.inference.score import (
    format_table,
    fused_models,
    predict_entries,
    predict_path,
    write_json_atomic,
)
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models import build_backbone
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.signal import align_beats
from ecgml.signal import prepare as signal_prepare
from tests.fakes import FS, PRE, write_toy_store

SEQ_LEN = 150


def make_model(disorder: str, r_index: int | None = PRE, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    backbone = build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=SEQ_LEN)
    return LoadedModel(
        disorder=disorder,
        model=BeatProbabilityModel(backbone).eval(),
        seq_len=SEQ_LEN,
        fs=FS,
        r_index=r_index,
        align="r_peak" if r_index is not None else "start",
        threshold=0.5,
        uri=f"test:{disorder}",
    )


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    names = ("hyperkalemia", "hypokalemia", "hyponatremia")
    return {d: make_model(d, seed=k) for k, d in enumerate(names)}


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inference") / "store"
    return write_toy_store(root, n_positive=3, n_negative=3, beats_per_patient=2)


@pytest.fixture(scope="module")
def ecg_signal() -> np.ndarray:
    import neurokit2 as nk

    return nk.ecg_simulate(duration=8, sampling_rate=FS, heart_rate=70, random_state=1)


# --------------------------------------------------------------------------- preparation


def test_prepare_beats_matches_training_padding() -> None:
    rng = np.random.default_rng(0)
    beats = [rng.normal(size=n).astype(np.float32) for n in (140, 150, 160)]
    r = [45, 50, 60]
    padded, r_target = align_beats(beats, r)
    model = make_model("hyperkalemia", r_index=r_target)
    model.seq_len = padded.shape[1]
    np.testing.assert_array_equal(prepare_beats(beats, r, FS, model), padded)
    start_model = make_model("hyperkalemia", r_index=None)
    start_model.seq_len = padded.shape[1]
    padded_start, _ = align_beats(beats, None, padded.shape[1])
    np.testing.assert_array_equal(prepare_beats(beats, r, FS, start_model), padded_start)


@pytest.mark.parametrize("length", [None, 120, 200])
def test_training_and_serving_alignment_are_byte_identical(length: int | None) -> None:
    rng = np.random.default_rng(1)
    beats = [rng.normal(size=n).astype(np.float32) for n in (140, 150, 160, 90)]
    r = [45, 50, 60, 20]
    trained, r_target = align_beats(beats, r, length)  # what ecgml.data stores in the table
    model = make_model("hyperkalemia", r_index=r_target)
    model.seq_len = trained.shape[1]
    served = prepare_beats(beats, r, FS, model)
    assert served.dtype == trained.dtype == np.float32
    assert served.shape == trained.shape and served.tobytes() == trained.tobytes()


def test_training_table_and_serving_share_one_alignment(toy_store: Path, compose_cfg) -> None:
    # one function: training aligns with align_beats, serving prepares with the signal layer's
    # prepare_beats, which lays beats out with that same align_beats
    assert datamodule.align_beats is signal_prepare.align_beats is align_beats
    assert preprocess.prepare_beats is signal_prepare.prepare_beats
    store = load_beat_store(toy_store)
    for beat_length in ("null", "400", "100"):
        overrides = ("disorder=hyperkalemia", "data=beats", f"data.path={toy_store}")
        cfg = compose_cfg(*overrides, f"data.beat_length={beat_length}")
        table = build_beat_table(store, cfg.disorder, cfg.split, cfg.data)
        model = make_model("hyperkalemia", r_index=table.r_index)
        model.seq_len = table.seq_len
        position = pd.Series(range(len(store.meta)), index=store.meta["beat_id"])
        rows = position.loc[table.meta["beat_id"]].to_numpy()
        beats = [store.beats[i] for i in rows]
        r = store.meta["r_index"].iloc[rows].astype(int).tolist()
        served = prepare_beats(beats, r, table.fs, model)
        assert served.tobytes() == table.x.tobytes()


def test_prepare_beats_resamples_to_the_model_rate() -> None:
    t = np.arange(300) / (2 * FS)
    r_wave = 3.0 * np.exp(-0.5 * ((np.arange(300) - 100) / 6.0) ** 2)
    beat = (np.sin(2 * np.pi * 3 * t) + r_wave).astype(np.float32)  # 2·FS, R at sample 100
    out = prepare_beats([beat], [100], 2 * FS, make_model("hypokalemia"))
    assert out.shape == (1, SEQ_LEN)
    assert int(np.argmax(out[0])) == PRE  # R lands on the model's r_index after resampling
    assert np.abs(out[0, PRE + 40] - np.sin(2 * np.pi * 3 * (180 / (2 * FS)))) < 0.05


def test_score_equals_the_module_applied_directly(models) -> None:
    x = np.random.default_rng(1).normal(size=(2100, SEQ_LEN)).astype(np.float32)
    model = models["hyperkalemia"]
    with torch.no_grad():
        direct = torch.sigmoid(model.model.backbone(torch.from_numpy(x[:, None]))).numpy().ravel()
    np.testing.assert_allclose(model.score(x, batch_size=1000), direct, rtol=1e-5, atol=1e-6)


def test_a_multilabel_network_is_fused_once_and_run_once(small_store) -> None:
    """Three disorders answered by one multi-label network: predict fuses it once, runs it once
    per batch of beats, and each disorder's probabilities equal its own output scored alone."""
    torch.manual_seed(3)
    network = build_backbone("cnn1d", in_channels=1, n_outputs=3, seq_len=SEQ_LEN).eval()
    names = ("hyperkalemia", "hypokalemia", "hyponatremia")
    layout = {"seq_len": SEQ_LEN, "fs": FS, "r_index": PRE, "align": "r_peak"}
    loaded = {
        d: LoadedModel(
            d,
            BeatProbabilityModel(network, k).eval(),
            threshold=0.5,
            uri="test:multilabel",
            **layout,
        )
        for k, d in enumerate(names)
    }
    fused = fused_models(loaded)
    backbones = {id(m.model.backbone) for m in fused.values()}
    assert len(backbones) == 1 and id(network) not in backbones  # one fused copy, shared
    calls = []
    next(iter(fused.values())).model.backbone.register_forward_hook(lambda *_: calls.append(1))
    entries = read_inputs(list_inputs(small_store), InputOptions(), progress=False)
    results = predict_entries(entries, fused)
    assert len(calls) == 1  # all beats of every entry in one batch, one pass for 3 outputs
    for d in names:
        for entry, result in zip(entries, results, strict=True):
            alone = loaded[d].score(
                prepare_beats(entry.beats, entry.r_indices, entry.fs, loaded[d])
            )
            got = [b["probabilities"][d] for b in result["per_beat"]]
            np.testing.assert_allclose(got, alone, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- inputs


def test_beat_store_gives_one_entry_per_patient(small_store, models) -> None:
    results = predict_path(small_store, models)
    store = load_beat_store(small_store)
    assert [r["patient_id"] for r in results] == list(dict.fromkeys(store.meta["patient_id"]))
    assert all(r["n_beats"] == 2 and not r["warnings"] for r in results)
    x, _ = align_beats(store.beats, store.meta["r_index"].astype(int).tolist())
    expected = models["hypokalemia"].score(x)
    got = [b["probabilities"]["hypokalemia"] for r in results for b in r["per_beat"]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    first = results[0]
    assert first["probabilities"]["hypokalemia"] == pytest.approx(np.mean(expected[:2]), abs=1e-6)
    assert first["decisions"]["hypokalemia"] == (first["probabilities"]["hypokalemia"] >= 0.5)


def test_signal_csv_and_wfdb_record(tmp_path: Path, ecg_signal: np.ndarray, models) -> None:
    import wfdb

    t = np.arange(len(ecg_signal)) / FS
    pd.DataFrame({"time_s": t, "mv": ecg_signal}).to_csv(tmp_path / "rec1.csv", index=False)
    two_leads = np.column_stack([ecg_signal * 0.5, ecg_signal])
    wfdb.wrsamp(
        "rec2",
        fs=FS,
        units=["mV", "mV"],
        sig_name=["V1", "II"],
        p_signal=two_leads,
        write_dir=str(tmp_path),
    )
    wfdb.wrsamp(
        "rec3",
        fs=FS,
        units=["mV"],
        sig_name=["V5"],
        p_signal=ecg_signal[:, None],
        write_dir=str(tmp_path),
    )
    window = Window(pre_r_ms=1000 * PRE / FS, post_r_ms=1000 * (SEQ_LEN - PRE) / FS)
    entries = read_inputs(list_inputs(tmp_path), InputOptions(window=window), progress=False)
    assert [Path(e.input).name for e in entries] == ["rec1.csv", "rec2.hea", "rec3.hea"]
    csv_entry, lead_ii, first_channel = entries
    assert 6 <= csv_entry.n_beats <= 10  # 70 bpm over 8 s, edges dropped
    assert all(len(b) == SEQ_LEN for b in csv_entry.beats)
    assert csv_entry.r_indices[0] == PRE
    np.testing.assert_allclose(lead_ii.beats[0], csv_entry.beats[0], atol=1e-3)  # lead II chosen
    assert not lead_ii.warnings
    # every lead cut at lead II's R-peaks: V1 (half of lead II here) beat for beat
    assert sorted(lead_ii.lead_beats) == ["II", "V1"] and not csv_entry.missing_leads(["II"])
    [v1, ii] = lead_ii.beats_of(["V1", "II"])
    np.testing.assert_allclose(np.array(v1), 0.5 * np.array(ii), atol=1e-3)
    assert csv_entry.beats_of(["II", "V1"]) is None and csv_entry.missing_leads(["V1"]) == ["V1"]
    assert any("read V5" in w for w in first_channel.warnings)
    assert first_channel.missing_leads(["II", "V5"]) == ["II"]
    # whole recordings for strip models: lead order kept, a missing lead or beats only → None
    [v1_strip, ii_strip] = lead_ii.strip_of(["V1", "II"])
    np.testing.assert_allclose(v1_strip, 0.5 * ii_strip, atol=1e-3)
    assert len(ii_strip) == len(ecg_signal)
    assert csv_entry.strip_of(["II", "V1"]) is None and csv_entry.strip_of(["II"]) is not None
    beats_only = dataclasses.replace(csv_entry, signal=None)
    assert beats_only.strip_of(["II"]) is None
    r_s = np.array(csv_entry.r_peak_s)
    assert np.all(np.diff(r_s) > 0.5) and r_s[0] > PRE / FS


def test_folder_with_corrupt_files_gives_warning_entries(tmp_path: Path, small_store, models):
    store = load_beat_store(small_store)
    good = tmp_path / "beat_ok.csv"
    good.write_text("mv\n" + "\n".join(f"{v:.5f}" for v in store.beats[0]) + "\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really an image")
    (tmp_path / "text.csv").write_text("hello\nworld\n")
    (tmp_path / "notes.txt").write_text("not an ECG")
    (tmp_path / "images.csv").write_text("image_file,group\n")  # bookkeeping: skipped
    results = predict_path(tmp_path, models)
    by_name = {Path(r["input"]).name: r for r in results}
    assert set(by_name) == {"beat_ok.csv", "broken.png", "text.csv", "notes.txt"}
    ok = by_name["beat_ok.csv"]
    assert ok["n_beats"] == 1 and not ok["warnings"]
    direct = models["hyperkalemia"].score(align_beats([store.beats[0]], [PRE])[0])
    assert ok["probabilities"]["hyperkalemia"] == pytest.approx(float(direct[0]), abs=1e-6)
    for name in ("broken.png", "text.csv", "notes.txt"):
        bad = by_name[name]
        assert bad["n_beats"] == 0 and bad["warnings"], name
        assert bad["probabilities"]["hyperkalemia"] is None
        assert bad["decisions"]["hyperkalemia"] is None
    assert "digitization failed" in by_name["broken.png"]["warnings"][0]


def test_missing_input_is_a_user_error(tmp_path: Path) -> None:
    from ecgml.errors import EcgmlError

    with pytest.raises(EcgmlError, match="does not exist"):
        list_inputs(tmp_path / "nope")


# --------------------------------------------------------------------------- output


def test_json_shape_table_and_saliency(tmp_path: Path, small_store, models) -> None:
    entries = read_inputs(list_inputs(small_store), InputOptions(), progress=False)
    results = predict_entries(entries[:2], models, saliency_dir=tmp_path / "sal")
    write_json_atomic(results, tmp_path / "out.json")
    loaded = json.loads((tmp_path / "out.json").read_text())
    keys = {"input", "patient_id", "n_beats", "probabilities", "decisions", "per_beat", "warnings"}
    assert keys <= set(loaded[0])
    assert set(loaded[0]["probabilities"]) == set(models)
    assert len(loaded[0]["per_beat"]) == loaded[0]["n_beats"]
    png = Path(loaded[0]["saliency_png"])
    assert png.is_file() and png.stat().st_size > 5000
    table = format_table(results, models)
    assert loaded[0]["patient_id"] in table and "hyponatremia" in table


def test_images_csv_gives_patient_id_and_layout(tmp_path: Path) -> None:
    from ecgml.inference.inputs import image_labels

    (tmp_path / "images.csv").write_text(
        "image_file,patient_id,group,layout\nscan1.png,P042,unknown,page\nscan2.jpg,,normal,\n"
    )
    labels = image_labels(tmp_path)
    assert labels["scan1.png"] == ("P042", "page")
    assert labels["scan2.jpg"] == (None, None)


@pytest.mark.parametrize("value", ["abc", "0", "1e9", "nan"])
def test_predict_fs_is_checked_before_any_model_loads(value: str, tmp_path) -> None:
    from ecgml.inference.score import beat_rate, run_predict

    beat = tmp_path / "beat.csv"
    beat.write_text("mv\n0.1\n0.2\n")
    cfg = {"input": str(beat), "fs": value, "tracking_uri": f"sqlite:///{tmp_path / 'no.db'}"}
    with pytest.raises(EcgmlError, match=f"fs={value} is not a sampling rate"):
        run_predict(OmegaConf.create(cfg))
    assert not (tmp_path / "no.db").exists()  # failed before the store was opened
    assert beat_rate(None) is None and beat_rate("250") == 250.0


def test_short_gaps_in_a_digitized_lead_are_filled_and_long_ones_leave_it_out() -> None:
    from ecgml.digitize.leads import fill_short_gaps

    nan = np.nan
    filled = fill_short_gaps(np.array([1.0, nan, 3.0, 4.0, nan, nan]), max_gap=2)
    np.testing.assert_allclose(filled, [1.0, 2.0, 3.0, 4.0, 4.0, 4.0])  # ends held
    assert fill_short_gaps(np.array([1.0, nan, nan, nan, 5.0]), max_gap=2) is None
    assert fill_short_gaps(np.full(4, nan), max_gap=10) is None
