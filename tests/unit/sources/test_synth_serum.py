"""Issue 13 item 1: serum K / Na in the synthetic cohort, effects coupled to the level."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from ecgml import CONF_DIR
from ecgml.beatstore import load_beat_store
from ecgml.errors import EcgmlError
from ecgml.synth import build_cohort
from ecgml.synth.cohort import GENERATOR_VERSION, cohort_config
from ecgml.synth.physiology import mean_distance, sample_patient

SMALL = {"hyperkalemia": 4, "hypokalemia": 4, "hyponatremia": 4, "normal": 4}


def default_cfg(**overrides: Any) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    assert isinstance(cfg, dict)
    cfg["images"] = False
    cfg.update(copy.deepcopy(overrides))
    return cohort_config(cfg)


def with_serum(cfg: dict[str, Any], **knobs: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg["serum"].update(knobs)
    return cfg


def patients(cfg: dict[str, Any], group: str, n: int, seed: int = 7) -> list[Any]:
    """``n`` patients of ``group`` with the cohort's per-patient seeding (SeedSequence children)."""
    seeds = np.random.SeedSequence(seed).spawn(n)
    return [
        sample_patient(np.random.default_rng(s), cfg, f"P{i}", group, "C01", "mindray")
        for i, s in enumerate(seeds)
    ]


def frame(people: list[Any]) -> pd.DataFrame:
    return pd.DataFrame([p.row() for p in people])


# --------------------------------------------------------------------------- values


def test_serum_ranges_per_group_and_skew_toward_mild() -> None:
    cfg = default_cfg()
    n = 400
    normal = frame(patients(cfg, "normal", n))
    hyper = frame(patients(cfg, "hyperkalemia", n))
    hypo = frame(patients(cfg, "hypokalemia", n))
    hypona = frame(patients(cfg, "hyponatremia", n))

    for table in (normal, hyper, hypo):  # sodium is normal unless the group is hyponatremia
        assert table["sodium_mmol_l"].between(135.0, 145.0).all()
    for table in (normal, hypona):
        assert table["potassium_mmol_l"].between(3.5, 5.0).all()
    assert ((hyper.potassium_mmol_l > 5.0) & (hyper.potassium_mmol_l <= 7.5)).all()
    assert ((hypo.potassium_mmol_l < 3.5) & (hypo.potassium_mmol_l >= 2.5)).all()
    assert ((hypona.sodium_mmol_l < 135.0) & (hypona.sodium_mmol_l >= 120.0)).all()
    # lab precision: K to 0.01, Na to 0.1 mmol/L
    assert np.allclose(hyper.potassium_mmol_l, hyper.potassium_mmol_l.round(2))
    assert np.allclose(hypona.sodium_mmol_l, hypona.sodium_mmol_l.round(1))

    # Skew toward mild: the median distance from the normal edge is well below the midpoint of
    # the allowed span, and deep values are rare.
    hyper_d = hyper.potassium_mmol_l - 5.0
    hypo_d = 3.5 - hypo.potassium_mmol_l
    hypona_d = 135.0 - hypona.sodium_mmol_l
    assert hyper_d.median() < 0.6 < 2.5 / 2
    assert hypo_d.median() < 0.3 < 1.0 / 2
    assert hypona_d.median() < 4.0 < 15.0 / 2
    assert 0.0 < (hyper.potassium_mmol_l > 6.5).mean() < 0.1
    assert 0.08 < (hypo.potassium_mmol_l < 3.0).mean() < 0.3
    assert 0.0 < (hypona.sodium_mmol_l < 125.0).mean() < 0.1
    # normal values: centred in their range, not piled at an edge
    assert 4.1 < normal.potassium_mmol_l.median() < 4.5
    assert 139.0 < normal.sodium_mmol_l.median() < 141.0
    # the multiplier averages ~1 over the group (linear in the distance, normalized by E[d])
    for table in (hyper, hypo, hypona):
        assert table["serum_multiplier"].mean() == pytest.approx(1.0, abs=0.08)
    assert (normal["serum_multiplier"] == 1.0).all()


def test_mean_distance_matches_the_drawn_distances() -> None:
    cfg = default_cfg()
    hyper = frame(patients(cfg, "hyperkalemia", 600))
    expected = mean_distance(cfg["serum"]["hyperkalemia"])
    assert (hyper.potassium_mmol_l - 5.0).mean() == pytest.approx(expected, rel=0.1)


# --------------------------------------------------------------------------- coupling


def test_effect_magnitudes_track_the_level() -> None:
    cfg = default_cfg()
    hyper = frame(patients(cfg, "hyperkalemia", 200))
    hypo = frame(patients(cfg, "hypokalemia", 200))
    peaked = hyper[hyper.signs.str.contains("t_peaked")]
    rho_t = spearmanr(peaked.potassium_mmol_l, peaked.t_amp_factor).statistic
    assert rho_t > 0.3
    assert spearmanr(hyper.potassium_mmol_l, hyper.t_amp_factor).statistic > 0.3
    rho_u = spearmanr(hypo.potassium_mmol_l, hypo.u_wave_mv).statistic
    assert rho_u < -0.3  # lower K, taller U wave
    # deep-level signs: PR prolongation far likelier above 6.0 than just above 5.0
    pr = hyper.signs.str.contains("pr_prolong")
    assert pr[hyper.potassium_mmol_l > 6.0].mean() > 0.8  # all but the silent 10%
    assert pr[hyper.potassium_mmol_l < 5.2].mean() < 0.4
    # ... while the group's share of patients showing the sign stays what `p` says
    uncoupled = frame(patients(with_serum(cfg, coupling=0.0), "hyperkalemia", 200))
    for sign in ("t_peaked", "pr_prolong", "qrs_widen"):
        shares = [t.signs.str.contains(sign).mean() for t in (hyper, uncoupled)]
        assert shares[0] == pytest.approx(shares[1], abs=0.08)


def test_coupling_zero_keeps_todays_magnitudes_and_no_correlation() -> None:
    cfg = default_cfg()
    coupled = patients(cfg, "hyperkalemia", 150)
    zero = patients(with_serum(cfg, coupling=0.0), "hyperkalemia", 150)
    no_serum = copy.deepcopy(cfg)
    del no_serum["serum"]
    plain = patients(no_serum, "hyperkalemia", 150)
    for a, b in zip(zero, plain, strict=True):
        assert a.effects == b.effects and a.signs == b.signs
        assert a.serum_multiplier == 1.0
    for a, b in zip(coupled, zero, strict=True):  # same serum values, same baseline draws
        assert a.potassium_mmol_l == b.potassium_mmol_l and a.heart_rate_bpm == b.heart_rate_bpm
    table = frame(zero)
    assert abs(spearmanr(table.potassium_mmol_l, table.t_amp_factor).statistic) < 0.2
    assert np.isnan(plain[0].potassium_mmol_l)


def test_coupling_zero_cohort_is_bit_identical_to_a_cohort_without_serum(
    tmp_path: Path,
) -> None:
    cfg = default_cfg(groups=dict(SMALL))
    no_serum = copy.deepcopy(cfg)
    del no_serum["serum"]
    a = build_cohort(no_serum, tmp_path / "plain", progress=False, n_jobs=1)
    b = build_cohort(with_serum(cfg, coupling=0.0), tmp_path / "zero", progress=False, n_jobs=1)
    c = build_cohort(cfg, tmp_path / "coupled", progress=False, n_jobs=1)
    names = sorted(p.name for p in (a / "signals").iterdir())
    assert len(names) == sum(SMALL.values())
    for name in names:
        assert (a / "signals" / name).read_bytes() == (b / "signals" / name).read_bytes()
    beats_a, beats_b = load_beat_store(a / "beats"), load_beat_store(b / "beats")
    assert beats_a.meta["beat_id"].tolist() == beats_b.meta["beat_id"].tolist()
    for beat_a, beat_b in zip(beats_a.beats, beats_b.beats, strict=True):
        np.testing.assert_array_equal(beat_a, beat_b)
    pa, pb, pc = (pd.read_csv(x / "patients.csv") for x in (a, b, c))
    serum_cols = ["potassium_mmol_l", "sodium_mmol_l", "serum_multiplier"]
    pd.testing.assert_frame_equal(pa.drop(columns=serum_cols), pb.drop(columns=serum_cols))
    assert pa["potassium_mmol_l"].isna().all() and pb["potassium_mmol_l"].notna().all()
    # coupling changes only the disorder patients' effects: normal signals stay identical,
    # and the baseline draws of every patient are the same
    for row in pc[pc.group == "normal"].itertuples():
        name = f"{row.patient_id}.csv"
        assert (a / "signals" / name).read_bytes() == (c / "signals" / name).read_bytes()
    pd.testing.assert_series_equal(pb["qtc_ms"], pc["qtc_ms"])
    assert not np.allclose(pb["t_amp_factor"], pc["t_amp_factor"])


# --------------------------------------------------------------------------- comorbidity


def test_comorbid_hypokalemia_patients_get_hyponatremia() -> None:
    cfg = default_cfg()
    n = 400
    alone = frame(patients(cfg, "hypokalemia", n))
    mixed = frame(patients(with_serum(cfg, comorbid=0.3), "hypokalemia", n))
    assert (alone.sodium_mmol_l >= 135).all()
    comorbid = mixed.sodium_mmol_l < 135
    assert comorbid.mean() == pytest.approx(0.3, abs=0.06)
    assert (mixed.group == "hypokalemia").all()
    assert mixed.sodium_mmol_l.min() >= 120.0
    # the potassium values and the hypokalemia draws are the patients' own either way
    pd.testing.assert_series_equal(alone.potassium_mmol_l, mixed.potassium_mmol_l)
    pd.testing.assert_series_equal(alone.u_wave_mv, mixed.u_wave_mv)  # hypoNa has no U wave
    # hyponatremia effects come on top: QT longer (or equal) for every comorbid patient
    assert (mixed.qt_delta_ms[comorbid] >= alone.qt_delta_ms[comorbid] - 1e-12).all()
    assert (mixed.qt_delta_ms[comorbid] > alone.qt_delta_ms[comorbid]).mean() > 0.7
    pd.testing.assert_series_equal(alone.qt_delta_ms[~comorbid], mixed.qt_delta_ms[~comorbid])
    assert mixed.signs[comorbid].str.contains("hyponatremia.").mean() > 0.6
    # the other groups never become comorbid
    hyper = frame(patients(with_serum(cfg, comorbid=1.0), "hyperkalemia", 50))
    assert (hyper.sodium_mmol_l >= 135).all()


# --------------------------------------------------------------------------- cohort folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = default_cfg(groups=dict(SMALL))
    cfg["serum"]["comorbid"] = 0.5
    return build_cohort(cfg, tmp_path_factory.mktemp("serum") / "c", progress=False, n_jobs=1)


def test_patients_csv_and_manifest_carry_serum_values(cohort: Path) -> None:
    table = pd.read_csv(cohort / "patients.csv")
    for column in ("potassium_mmol_l", "sodium_mmol_l", "serum_multiplier"):
        assert table[column].notna().all()
    assert table.columns.get_loc("potassium_mmol_l") < table.columns.get_loc("signs")
    store = load_beat_store(cohort / "beats")
    assert store.meta["potassium"].notna().all() and store.meta["sodium"].notna().all()
    joined = store.meta.merge(table, on="patient_id", suffixes=("", "_p"))
    np.testing.assert_allclose(joined["potassium"], joined["potassium_mmol_l"])
    np.testing.assert_allclose(joined["sodium"], joined["sodium_mmol_l"])
    header = (cohort / "beats" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert header.index("potassium") < header.index("record_r_index")
    assert set(table.group) == set(SMALL)  # the group vocabulary is unchanged
    assert GENERATOR_VERSION >= 3


# --------------------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("coupling",), -1, r"cohort\.serum\.coupling: -1\.0 is outside 0–10"),
        (("comorbid",), 1.5, r"cohort\.serum\.comorbid: probability 1\.5"),
        (("hyperkalemia", "max_distance"), 6.0, r"serum\.hyperkalemia\.edge/max_distance"),
        (("hypokalemia", "scale"), 0, r"serum\.hypokalemia\.scale: 0 must be > 0"),
        (("hyponatremia", "max_distance"), 0.05, r"max_distance: must be ≥ 0\.1 mmol/L"),
        (("hyponatremia", "slope"), 2, r"serum\.hyponatremia\.slope: 2\.0 is outside 0–1"),
        (("hyperkalemia", "presence"), {"sine_wave": 1}, r"presence\.sine_wave: unknown sign"),
        (("hypokalemia", "presence", "u_wave"), -1, r"presence\.u_wave: power -1 is outside"),
        (("normal", "potassium", "range"), [3.5, 12], r"serum\.normal\.potassium\.range"),
        (("normal", "sodium", "sd"), 0, r"serum\.normal\.sodium\.sd"),
        (("typo",), 1, r"serum\.typo: unknown key"),
    ],
)
def test_bad_serum_config_is_one_line(path: tuple[str, ...], value: Any, match: str) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    assert isinstance(cfg, dict)
    node = cfg["serum"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(EcgmlError, match=match) as caught:
        cohort_config(cfg)
    assert "\n" not in str(caught.value)


def test_missing_disorder_distribution_is_named() -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    assert isinstance(cfg, dict)
    del cfg["serum"]["hyponatremia"]
    with pytest.raises(EcgmlError, match=r"serum\.hyponatremia: missing"):
        cohort_config(cfg)
    cfg["groups"]["hyponatremia"] = 0  # not needed without hyponatremia patients
    cohort_config(cfg)
    cfg["serum"]["comorbid"] = 0.2  # ... unless hypokalemia patients may have it
    with pytest.raises(EcgmlError, match=r"serum\.hyponatremia: missing"):
        cohort_config(cfg)
