"""Every registered backbone can learn (a tiny overfit); the features baseline's pieces work."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from ecgml.models import available_backbones, build_backbone
from ecgml.models.features_lr import FEATURES, beat_features, build_classifier, rr_intervals_ms


def test_zoo_registers_the_issue_backbones() -> None:
    assert {"cnn1d", "resnet1d", "inception1d", "transformer1d"} <= set(available_backbones())


@pytest.mark.slow
@pytest.mark.parametrize("name", available_backbones())
def test_each_backbone_overfits_one_small_batch(name: str) -> None:
    """Random labels on 12 fixed beats are memorized: the backbone can learn."""
    L.seed_everything(0)
    x = torch.randn(12, 1, 96)
    y = torch.tensor([0.0, 1.0] * 6).unsqueeze(1)
    model = build_backbone(name, in_channels=1, n_outputs=1, seq_len=96, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    first = loss_fn(model(x), y).item()
    for _ in range(80):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = ((model(x) > 0).float() == y).float().mean().item()
    assert first > 0.5
    assert loss.item() < 0.1
    assert accuracy == 1.0


def test_backbone_parameter_counts_stay_small() -> None:
    """CPU sweeps need small models: every default backbone stays under 300k parameters; the
    linear baseline is one weight per 20 ms segment, a bias and its normalization's two."""
    for name in available_backbones():
        model = build_backbone(name, in_channels=1, n_outputs=1, seq_len=450)
        n = sum(p.numel() for p in model.parameters())
        if name == "linear1d":
            assert n == 45 + 1 + 2
        else:
            assert 1_000 < n < 300_000, (name, n)


def test_beat_features_from_known_wave_positions() -> None:
    fs = 500.0
    beat = np.zeros(450)
    beat[125] = 1.0  # R
    beat[230] = 0.3  # T peak
    waves = {
        "P_Onsets": 40.0,
        "P_Offsets": 80.0,
        "R_Onsets": 100.0,
        "R_Offsets": 150.0,
        "T_Peaks": 230.0,
        "T_Onsets": 200.0,
        "T_Offsets": 260.0,
    }
    f = beat_features(beat, waves, r_index=125, fs=fs, rr_ms=1000.0)
    assert f["t_amplitude"] == pytest.approx(0.3)
    assert f["t_width_ms"] == pytest.approx(120.0)
    assert f["qrs_width_ms"] == pytest.approx(100.0)
    assert f["pr_ms"] == pytest.approx(120.0)
    assert f["qt_ms"] == pytest.approx(320.0)
    assert f["qtc_ms"] == pytest.approx(320.0)  # RR 1 s: Bazett leaves QT unchanged
    assert f["r_amplitude"] == pytest.approx(1.0)
    assert f["u_t_ratio"] == pytest.approx(0.0)
    assert set(f) == set(FEATURES)


def test_rr_from_neighbouring_beats_then_patient_median() -> None:
    import pandas as pd

    meta = pd.DataFrame(
        {
            "patient_id": ["A", "A", "A", "B"],
            "record_id": ["A", "A", "A", "B"],
            "beat_index": [1, 2, 4, 0],
            "record_r_index": [100, 500, 1300, 50],
        }
    )
    rr = rr_intervals_ms(meta, fs=500.0)
    assert rr[1] == pytest.approx(800.0)
    assert rr[2] == pytest.approx(800.0)  # two beats apart: 800 samples / 2
    assert rr[0] == pytest.approx(800.0)  # first beat: the patient's median
    assert np.isnan(rr[3])


def test_classifier_imputes_missing_features() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, len(FEATURES)))
    y = (x[:, 0] > 0).astype(int)
    x[::5, 1] = np.nan
    model = build_classifier({"C": 1.0}).fit(x, y)
    assert (model.predict(x) == y).mean() > 0.9
