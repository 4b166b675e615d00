"""What every reader shares: lead names, derived limb leads, extra leads, units, amplitudes."""

from __future__ import annotations

import numpy as np
import pytest

from ecgml.ecgfile import EcgFileProblem, build_recording, canonical_lead
from ecgml.ecgfile.recording import is_extra_lead, unit_factor

T = np.arange(5000) / 500
BEAT = np.exp(-(((T % 0.8) - 0.4) ** 2) / 0.0004)


@pytest.mark.parametrize(
    ("label", "lead"),
    [
        ("I", "I"),
        ("ii", "II"),
        ("Lead II", "II"),
        ("MDC_ECG_LEAD_AVR", "aVR"),
        ("ECG V1", "V1"),
        ("avl", "aVL"),
        ("MLII", "II"),
        ("mv", "II"),
        ("LEAD-III", "III"),
        ("Lead 3", "III"),
        ("-aVR", None),
        ("V7", None),
        ("Resp", None),
        ("2", None),
    ],
)
def test_lead_names(label: str, lead: str | None) -> None:
    assert canonical_lead(label) == lead


def test_an_8_lead_export_gets_its_limb_leads_derived() -> None:
    one, two = 0.4 * BEAT, BEAT
    chest = [(f"V{k}", (k / 6) * BEAT) for k in range(1, 7)]
    rec = build_recording([("I", one), ("II", two), *chest], 500, "r")
    assert rec.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert np.allclose(rec.lead("III"), two - one)
    assert np.allclose(rec.lead("aVR"), -(one + two) / 2)
    assert np.allclose(rec.lead("aVL"), one - two / 2)
    assert np.allclose(rec.lead("aVF"), two - one / 2)
    only_one_and_three = build_recording([("I", one), ("III", two - one)], 500, "r")
    assert np.allclose(only_one_and_three.lead("II"), two)


def test_extra_leads_of_a_15_lead_ecg_are_dropped_not_refused() -> None:
    assert is_extra_lead("Lead V4R") and is_extra_lead("MDC_ECG_LEAD_V7") and is_extra_lead("vx")
    rec = build_recording([("II", BEAT), ("V4R", BEAT), ("V8", BEAT), ("vz", BEAT)], 500, "r")
    assert rec.leads == ("II",)
    with pytest.raises(EcgFileProblem) as caught:
        build_recording([("II", BEAT), ("Resp", BEAT)], 500, "r")
    assert caught.value.reason == "unknown_lead"


@pytest.mark.parametrize(
    ("channels", "fs", "reason"),
    [
        ([("II", BEAT * 1000)], 500, "implausible_amplitude"),  # µV stored as mV
        ([("II", BEAT * 0.001)], 500, "implausible_amplitude"),  # V stored as mV
        ([("II", BEAT[:500])], 500, "too_short"),
        ([("II", BEAT), ("I", BEAT[:10])], 500, "inconsistent_leads"),
        ([("II", BEAT), ("ii", BEAT)], 500, "inconsistent_leads"),
        ([("I", BEAT)], 500, "no_lead_ii"),
        ([("II", BEAT)], 5.0, "unreadable"),
        ([("II", np.where(T > 5, np.nan, BEAT))], 500, "unreadable"),
    ],
)
def test_unusable_recordings_name_their_reason(channels: list, fs: float, reason: str) -> None:
    with pytest.raises(EcgFileProblem) as caught:
        build_recording(channels, fs, "r")
    assert caught.value.reason == reason and "\n" not in caught.value.detail


@pytest.mark.parametrize(("unit", "factor"), [("mV", 1.0), ("uV", 1e-3), ("µV", 1e-3), ("V", 1e3)])
def test_units(unit: str, factor: float) -> None:
    assert unit_factor(unit, "x") == factor


@pytest.mark.parametrize("unit", [None, "", "NU", "mmHg"])
def test_a_missing_or_foreign_unit_is_never_assumed(unit: str | None) -> None:
    with pytest.raises(EcgFileProblem) as caught:
        unit_factor(unit, "lead II")
    assert caught.value.reason == "no_units"
