"""Explainability: Captum methods, padding removal, localization, statistics, sanity check.

The key test trains a small CNN on the toy beat store (positives have a taller T wave, see
tests/fakes.py) and checks that its saliency lands on the T wave, where the generator put the
effect, and that a randomized-weights copy does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats as sps
from torch import nn

from ecgml import CONF_DIR
from ecgml.beatstore import load_beat_store
from ecgml.errors import EcgmlError
from ecgml.explain import METHODS, compute_attributions, explain_model
from ecgml.explain.attribution import randomized_copy
from ecgml.explain.localization import (
    localize_beats,
    main_segment,
    r_positions,
    saliency_profiles,
    valid_spans,
)
from ecgml.explain.pipeline import read_stats
from ecgml.explain.regions import (
    delineate_medians,
    fixed_bounds,
    median_beat,
    region_bounds,
    region_masses,
    t_wave_end,
)
from ecgml.explain.stats import group_statistics, primary_focus, run_test
from ecgml.models import BeatClassifier, build_backbone
from ecgml.signal import align_beats
from tests.fakes import FS

#: What one explanation writes.
FILES = ("saliency.csv", "explain.md", "stats.csv", "overlay.png", "examples.png", "profiles.png")

LENGTH = 200  # toy beats are 150 samples: padded to 200 around the R-peak
NO_FIGURES = {"figures": {"enabled": False}}


def small_model(seq_len: int, seed: int = 0) -> BeatClassifier:
    torch.manual_seed(seed)
    backbone = build_backbone("cnn1d", 1, 1, seq_len, channels=(8, 16, 16), dropout=0.0)
    return BeatClassifier(backbone, partial(torch.optim.Adam, lr=1e-2))


@pytest.fixture(scope="session")
def toy_data(toy_store: Path) -> dict:
    """Padded toy beats, labels, patient-level split (a third of the patients held out)."""
    store = load_beat_store(toy_store)
    x, r0 = align_beats(store.beats, store.meta["r_index"].astype(int).tolist(), LENGTH)
    meta = store.meta.assign(y=(store.meta["group"] != "normal").astype(int))
    test = (meta["patient_id"].str[1:].astype(int) % 3 == 0).to_numpy()
    return {"x": x, "r0": r0, "meta": meta, "test": test}


@pytest.fixture(scope="session")
def trained(toy_data: dict) -> Iterator[tuple[BeatClassifier, np.ndarray, pd.DataFrame, int]]:
    """A small CNN trained full-batch on the toy training patients; test beats + predictions."""
    x, meta, test = toy_data["x"], toy_data["meta"], toy_data["test"]
    model = small_model(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs = torch.from_numpy(x[~test]).unsqueeze(1)
    targets = torch.from_numpy(meta.loc[~test, "y"].to_numpy(np.float32))
    model.train()
    # Tiny gradients: denormals slow the CPU a lot. The flag is process-wide processor state
    # (it returns whether it could be set, not the previous value): off again right after
    # training, or every later test in this process (Hypothesis' float strategies) sees it.
    torch.set_flush_denormal(True)
    try:
        for _ in range(40):
            loss = nn.functional.binary_cross_entropy_with_logits(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_flush_denormal(False)
    model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(model(torch.from_numpy(x[test]).unsqueeze(1))).numpy()
    test_meta = meta[test].reset_index(drop=True)
    predictions = test_meta[["patient_id", "beat_id", "group", "r_index"]].assign(
        split="test", y_true=test_meta["y"], y_prob=prob, y_pred=(prob > 0.5).astype(int)
    )
    yield model, x[test], predictions, toy_data["r0"]


def test_every_method_gives_finite_attributions_of_the_beats_shape(toy_data: dict) -> None:
    model = small_model(LENGTH).eval()
    beats = toy_data["x"][:10]
    for method in METHODS:
        attr = compute_attributions(
            model, beats, {"method": method, "batch_size": 4}, FS, progress=False
        )
        assert attr.shape == beats.shape, method
        assert np.isfinite(attr).all(), method
        assert np.abs(attr).sum() > 0, method


def test_saliency_is_the_absolute_input_gradient_of_the_logit(toy_data: dict) -> None:
    model = small_model(LENGTH).eval()
    beats = toy_data["x"][:6]
    x = torch.from_numpy(beats).unsqueeze(1).requires_grad_()
    model(x).sum().backward()
    expected = x.grad.abs().squeeze(1).numpy()
    got = compute_attributions(model, beats, {"method": "saliency"}, FS, progress=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)


def test_integrated_gradients_are_complete(toy_data: dict) -> None:
    """Σ attributions ≈ f(x) − f(0) (the zero baseline) with the default 16 steps."""
    model = small_model(LENGTH).eval()
    beats = toy_data["x"][:8]
    attr = compute_attributions(
        model, beats, {"method": "integrated_gradients"}, FS, progress=False
    )
    with torch.no_grad():
        x = torch.from_numpy(beats).unsqueeze(1)
        delta = (model(x) - model(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(attr.sum(axis=1), delta, atol=0.05 * np.abs(delta).max() + 1e-4)


# A bad explain.method / regions.source / subset fails at composition (ecgml.schemas):
# tests/test_config.py::test_schemas_reject_a_wrong_key_type_or_choice_at_composition.


def test_default_config_has_every_knob_and_is_valid() -> None:
    cfg = OmegaConf.load(CONF_DIR / "explain" / "default.yaml")
    assert cfg.enabled is True
    assert cfg.method == "saliency"  # and it composes against its schema: tests/test_config.py
    for key in ("integrated_gradients", "gradient_shap", "occlusion", "localization", "regions"):
        assert key in cfg


def test_padding_is_removed_before_analysis() -> None:
    """Zero padding never holds saliency, even where the model's gradient is large."""
    beats = np.zeros((2, 100), dtype=np.float32)
    beats[0, 20:80] = np.sin(np.linspace(0, 6, 60)) + 0.1
    beats[1, 10:60] = 1.0
    spans = valid_spans(beats)
    np.testing.assert_array_equal(spans, [[20, 80], [10, 60]])
    attributions = np.ones_like(beats)  # a model looking everywhere, padding included
    profiles = saliency_profiles(attributions, spans, smooth=3)
    assert np.isnan(profiles[0, :20]).all() and np.isnan(profiles[0, 80:]).all()
    assert np.isfinite(profiles[0, 20:80]).all()
    bounds = [fixed_bounds({}, 400.0)] * 2
    table = localize_beats(profiles, np.array([40, 30]), 250.0, bounds)
    start_ms, end_ms = (20 - 40) * 4.0, (80 - 40) * 4.0
    assert start_ms <= table.loc[0, "segment_start_ms"] < table.loc[0, "segment_end_ms"] <= end_ms
    assert table.loc[0, "peak_ms"] >= start_ms


def test_r_positions_common_store_or_detected() -> None:
    beats = np.zeros((2, 50), dtype=np.float32)
    beats[0, 5:45] = 0.1
    beats[0, 17] = 2.0
    beats[1, 0:40] = -0.05
    beats[1, 33] = -1.5
    spans = valid_spans(beats)
    assert r_positions(beats, spans, 12)[0].tolist() == [12, 12]
    assert r_positions(beats, spans, None, [7.0, 9.0])[0].tolist() == [7, 9]
    detected, how = r_positions(beats, spans, None)
    assert detected.tolist() == [17, 33] and how.startswith("detected")


def test_localization_of_a_known_bump() -> None:
    """A bump centred 200 ms after R: peak there, segment around it, T primary."""
    fs, r = 500.0, 100
    t_ms = (np.arange(450) - r) * 1000 / fs
    profile = np.exp(-0.5 * ((t_ms - 200) / 20) ** 2) + 0.01
    bounds = fixed_bounds({}, 700.0)  # T = 120…380 ms
    table = localize_beats(profile[None, :], np.array([r]), fs, [bounds], threshold=0.5)
    row = table.iloc[0]
    assert row["peak_ms"] == pytest.approx(200, abs=2)
    assert row["segment_start_ms"] == pytest.approx(200 - 23.5, abs=3)  # half max at ±1.18σ
    assert row["segment_end_ms"] == pytest.approx(200 + 23.5, abs=3)
    assert row["primary_region"] == "T" and row["peak_region"] == "T"
    assert row["mass_T"] > 0.8
    masses = region_masses(profile, r, fs, bounds)
    assert sum(masses.values()) == pytest.approx(1.0)


def test_main_segment_picks_the_run_with_most_mass() -> None:
    profile = np.zeros(100)
    profile[10:13] = 1.0  # the highest but short
    profile[50:80] = 0.8  # lower but holds more mass
    start, stop, mass = main_segment(profile, threshold=0.5)
    assert (start, stop) == (50, 80)
    assert mass == pytest.approx(24 / 27)


def test_region_bounds_fall_back_to_fixed_windows_and_widen_t() -> None:
    fixed = fixed_bounds({}, 600.0)
    assert fixed["regions_source"] == "fixed"
    assert (fixed["qrs_on"], fixed["t_off"], fixed["u_off"]) == (-50.0, 380.0, 580.0)
    found = {"p_on": -200, "p_off": -120, "qrs_on": -45, "qrs_off": 45}
    found |= {"t_on": 200, "t_peak": 230, "t_off": 250}
    bounds = region_bounds(found, {"min_t_half_ms": 80}, 600.0)
    assert bounds["regions_source"] == "neurokit"
    assert (bounds["t_on"], bounds["t_off"]) == (150.0, 310.0)  # widened to ±80 ms
    early_t = region_bounds({**found, "t_on": 50}, {"min_t_half_ms": 80}, 600.0)
    assert early_t["t_on"] == 150.0  # an onset inside the S wave is not trusted
    disordered = region_bounds({**found, "qrs_on": 100}, {}, 600.0)  # QRS onset after R
    assert disordered["regions_source"].startswith("neurokit (fixed")
    order = [disordered[k] for k in ("p_on", "p_off", "qrs_on", "qrs_off", "t_on", "t_off")]
    assert order == sorted(order)


def test_neurokit_delineation_of_a_median_beat() -> None:
    """ECGSYN (shipped with NeuroKit2) at 500 Hz: QRS around R, T wave 150–350 ms after it."""
    import neurokit2 as nk

    fs, pre, post = 500, 125, 325
    signal = nk.ecg_simulate(
        duration=8, sampling_rate=fs, heart_rate=70, method="ecgsyn", noise=0.0, random_state=1
    )
    peaks = nk.ecg_findpeaks(signal, sampling_rate=fs)["ECG_R_Peaks"][1:-1]
    beats = np.stack([signal[p - pre : p + post] for p in peaks])
    median = median_beat(beats, np.ones_like(beats, dtype=bool))
    fiducials = delineate_medians([median], [pre], fs).iloc[0]
    assert -100 < fiducials["qrs_on"] < 0 < fiducials["qrs_off"] < 100
    assert fiducials["t_on"] < fiducials["t_peak"] < fiducials["t_off"]
    assert 150 < fiducials["t_peak"] < 350
    t_end = t_wave_end(median, pre, fs, fiducials["t_peak"])
    assert fiducials["t_peak"] < t_end <= post * 1000 / fs
    assert np.isnan(t_wave_end(median, pre, fs, np.nan))
    bounds = region_bounds({**fiducials.to_dict(), "t_end": t_end}, {}, post * 1000 / fs)
    assert bounds["regions_source"] == "neurokit"
    assert bounds["qrs_on"] < 0 < bounds["qrs_off"] <= bounds["t_on"] < bounds["t_off"]


def test_group_statistics_match_scipy() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(200, 20, 30), rng.normal(220, 35, 25)
    sal_a, sal_b = rng.uniform(0.2, 0.8, 30), rng.uniform(0.4, 1.0, 25)
    table = pd.DataFrame(
        {
            "y_true": [0] * 30 + [1] * 25,
            "peak_ms": np.r_[a, b],
            "peak_saliency": np.r_[sal_a, sal_b],
        }
    )
    stats = group_statistics(table)
    assert stats.p("anova") == pytest.approx(sps.f_oneway(a, b).pvalue)
    assert stats.p("kruskal") == pytest.approx(sps.kruskal(sal_a, sal_b).pvalue)
    assert stats.p("levene") == pytest.approx(sps.levene(a, b).pvalue)
    assert stats.summary.loc[1, "peak_ms_mean"] == pytest.approx(b.mean())
    assert stats.summary.loc[1, "peak_ms_sd"] == pytest.approx(b.std(ddof=1))
    assert stats.summary.loc[0, "n"] == 30
    assert not stats.notes


def test_degenerate_statistics_are_nan_with_a_note() -> None:
    one_class = pd.DataFrame({"y_true": [1, 1, 1], "peak_ms": [1.0, 2, 3], "peak_saliency": 0.5})
    stats = group_statistics(one_class)
    assert np.isnan(stats.p("anova")) and any("class" in n for n in stats.notes)
    assert np.isnan(run_test("kruskal", [np.array([1.0]), np.array([2.0, 3.0])]).p)
    constant = run_test("anova", [np.ones(4), np.ones(5)])
    assert np.isnan(constant.p) and constant.note == "all values are equal"


def test_saliency_concentrates_on_the_t_wave(trained, tmp_path: Path) -> None:
    """The generator put the effect in the T wave: correct positive beats look there."""
    model, beats, predictions, r0 = trained
    assert (predictions["y_pred"] == predictions["y_true"]).mean() > 0.8
    metrics = explain_model(model, beats, predictions, FS, r0, NO_FIGURES, tmp_path / "t")
    table = pd.read_csv(tmp_path / "t" / "saliency.csv")
    positives = table[(table["y_true"] == 1) & table["correct"]]
    assert len(positives) >= 10
    assert (positives["primary_region"] == "T").mean() >= 0.7
    focus = primary_focus(positives).set_index("y_true")
    assert focus.loc[1, "primary_region"] == "T"
    mass_columns = [c for c in table.columns if c.startswith("mass_") and c != "mass_other"]
    assert positives[mass_columns].mean().idxmax() == "mass_T"
    assert metrics["explain/t_region_fraction_positive"] > 0.3

    random_model = randomized_copy(model, seed=5)
    explain_model(random_model, beats, predictions, FS, r0, NO_FIGURES, tmp_path / "r")
    random_table = pd.read_csv(tmp_path / "r" / "saliency.csv").set_index("beat_id")
    random_t = random_table.loc[positives["beat_id"], "mass_T"].mean()
    assert positives["mass_T"].mean() > random_t + 0.1
    assert metrics["explain/sanity_similarity"] < 0.5
    assert metrics["explain/sanity_passed"] == 1.0


def test_explain_model_writes_artifacts_and_stats_table(trained, tmp_path: Path) -> None:
    model, beats, predictions, r0 = trained
    cfg = {"method": "saliency", "figures": {"examples_per_class": 2, "dpi": 40}}
    metrics = explain_model(model, beats, predictions, FS, r0, cfg, tmp_path)
    for name in FILES:
        assert (tmp_path / name).is_file(), name
    stats = read_stats(tmp_path / "stats.csv")  # every statistic, NaNs included, one row each
    assert stats.keys() == metrics.keys()
    assert all(np.isclose(stats[k], metrics[k], equal_nan=True) for k in metrics)
    table = pd.read_csv(tmp_path / "saliency.csv")
    assert len(table) == len(beats)
    assert table["beat_id"].tolist() == predictions["beat_id"].tolist()
    for column in ("peak_ms", "peak_saliency", "segment_start_ms", "segment_end_ms", "mass_T"):
        assert column in table.columns
    assert table["peak_saliency"].between(0, 1).all() and table["peak_saliency"].max() == 1.0
    for key in ("peak_ms_positive_mean", "shift_ms", "anova_p", "kruskal_p", "levene_p"):
        assert np.isfinite(metrics[f"explain/{key}"]), key
    assert metrics["explain/shift_ms"] == pytest.approx(
        table.loc[table.y_true == 1, "peak_ms"].mean()
        - table.loc[table.y_true == 0, "peak_ms"].mean()
    )
    assert all(key.startswith("explain/") for key in metrics)
    report = (tmp_path / "explain.md").read_text()
    for text in ("Primary ECG focus", "Kruskal", "levene", "randomized weights", "hyperkalemia"):
        assert text.lower() in report.lower(), text


def test_one_class_and_tiny_inputs_give_nan_statistics_not_a_crash(trained, tmp_path: Path) -> None:
    model, beats, predictions, r0 = trained
    positive = (predictions["y_true"] == 1).to_numpy()
    metrics = explain_model(
        model,
        beats[positive][:3],
        predictions[positive].head(3),
        FS,
        None,  # R unknown: taken from the r_index column
        NO_FIGURES,
        tmp_path / "one",
    )
    assert np.isnan(metrics["explain/anova_p"]) and np.isnan(metrics["explain/shift_ms"])
    assert "class" in (tmp_path / "one" / "explain.md").read_text()
    empty = explain_model(
        model, beats[:0], predictions.head(0), FS, r0, NO_FIGURES, tmp_path / "none"
    )
    assert empty["explain/n_beats"] == 0 and np.isnan(empty["explain/kruskal_p"])
    assert (tmp_path / "none" / "saliency.csv").is_file()


def test_mismatched_beats_and_predictions_are_a_user_error(trained, tmp_path: Path) -> None:
    model, beats, predictions, r0 = trained
    with pytest.raises(EcgmlError, match="prediction rows"):
        explain_model(model, beats[:5], predictions, FS, r0, {}, tmp_path)


def test_correct_subset_with_patient_and_fixed_regions(trained, tmp_path: Path) -> None:
    model, beats, predictions, r0 = trained
    beats, predictions = beats[:24], predictions.head(24)  # 8 patients: 8 delineations
    n_correct = int((predictions["y_pred"] == predictions["y_true"]).sum())
    for source in ("patient_median", "fixed"):
        cfg = {"subset": "correct", "regions": {"source": source}, "sanity": {"enabled": False}}
        metrics = explain_model(model, beats, predictions, FS, r0, cfg | NO_FIGURES, tmp_path)
        table = pd.read_csv(tmp_path / "saliency.csv")
        assert len(table) == n_correct == metrics["explain/n_beats"]
        assert table["correct"].all()
        assert np.isnan(metrics["explain/sanity_similarity"])
    assert set(table["regions_source"]) == {"fixed"}
    assert "fixed windows" in (tmp_path / "explain.md").read_text()
