"""Per-patient parameters: a heart-failure baseline plus probabilistic disorder effects.

Sizes follow ``shared/physiology.md``: every sign of a disorder is present only with some
probability, a ``silent`` fraction of patients shows none, and ``severity`` scales every
magnitude (factors as ``1 + severity·(f − 1)``, additive effects as ``severity·x``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Effect parameters every patient carries (neutral values for the normal group).
NEUTRAL_EFFECTS: dict[str, float] = {
    "t_amp_factor": 1.0,
    "t_width_factor": 1.0,
    "pr_delta_ms": 0.0,
    "p_amp_factor": 1.0,
    "qrs_widen_ms": 0.0,
    "st_depression_mv": 0.0,
    "u_wave_mv": 0.0,
    "qt_delta_ms": 0.0,
}


@dataclass
class Patient:
    """Everything the waveform model needs for one patient's recording (lead II in mV)."""

    patient_id: str
    group: str
    center: str
    device: str
    severity: float
    heart_rate_bpm: float
    pr_ms: float
    p_ms: float
    qrs_ms: float
    qtc_ms: float
    p_mv: float
    q_mv: float
    r_mv: float
    s_mv: float
    t_mv: float
    u_mv: float
    st_mv: float
    t_sigma_ms: float
    t_asymmetry: float
    qrs_axis_deg: float
    t_axis_deg: float
    rr_jitter: float
    respiration_hz: float
    respiration_amplitude: float
    wander_mv: float
    emg_mv: float
    powerline_mv: float
    powerline_hz: float
    gain: float
    lowpass_hz: float
    effects: dict[str, float] = field(default_factory=lambda: dict(NEUTRAL_EFFECTS))
    signs: str = ""

    def row(self) -> dict[str, Any]:
        """One flat row of ``patients.csv``."""
        row = asdict(self)
        row.update(row.pop("effects"))
        row["heart_rate"] = row.pop("heart_rate_bpm")
        return row


def _uniform(rng: np.random.Generator, bounds: Any) -> float:
    low, high = (float(b) for b in bounds)
    return float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, bounds: Any) -> float:
    low, high = (float(b) for b in bounds)
    if low <= 0:
        return _uniform(rng, bounds)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


AMPLITUDE_KEYS = ("p_mv", "q_mv", "r_mv", "s_mv", "t_mv", "u_mv")


def sample_patient(
    rng: np.random.Generator,
    cfg: Mapping[str, Any],
    patient_id: str,
    group: str,
    center: str,
    device: str,
) -> Patient:
    """Draw one patient's baseline, then apply the group's disorder effects."""
    base, beat, noise = cfg["baseline"], cfg["beat"], cfg["noise"]
    values = {
        key: (_log_uniform if key in AMPLITUDE_KEYS else _uniform)(rng, bounds)
        for key, bounds in base.items()
        if key != "t_axis_offset_deg"
    }
    values["t_axis_deg"] = values["qrs_axis_deg"] + _uniform(rng, base["t_axis_offset_deg"])
    dev = cfg["devices"][device]
    patient = Patient(
        patient_id=patient_id,
        group=group,
        center=center,
        device=device,
        severity=float(cfg["severity"]) if group != "normal" else 0.0,
        rr_jitter=_uniform(rng, beat["rr_jitter"]),
        respiration_hz=_uniform(rng, beat["respiration_hz"]),
        respiration_amplitude=_uniform(rng, beat["respiration_amplitude"]),
        wander_mv=_log_uniform(rng, noise["baseline_wander_mv"]),
        emg_mv=_log_uniform(rng, noise["emg_mv"]),
        powerline_mv=_uniform(rng, noise["powerline_mv"]),
        powerline_hz=float(cfg["powerline_hz"]),
        gain=float(dev["gain"]) * _uniform(rng, noise["electrode_gain"]),
        lowpass_hz=float(dev["lowpass_hz"]),
        **values,
    )
    if group != "normal":
        apply_disorder(patient, cfg["effects"][group], float(cfg["severity"]), rng)
    return patient


def apply_disorder(
    patient: Patient, spec: Mapping[str, Any], severity: float, rng: np.random.Generator
) -> None:
    """Draw which signs this patient shows and how strongly; record them in ``effects``.

    A sign that is not present still acts at ``residual`` × its drawn size (a sub-visual
    change of the kind deep models pick up); ``silent`` patients have no change at all. The
    random draws do not depend on ``severity``, so a severity sweep changes only the
    magnitudes of the same patients' signs.
    """
    effects = dict(NEUTRAL_EFFECTS)
    silent = rng.random() < float(spec.get("silent", 0.0))
    residual = 0.0 if silent else float(spec.get("residual", 0.0))
    shown: list[str] = []
    for sign, sign_spec in spec.items():
        if sign in SPEC_KEYS:
            continue
        present = rng.random() < float(sign_spec["p"]) and not silent
        draws = {k: _uniform(rng, v) for k, v in sign_spec.items() if k != "p"}
        if present:
            shown.append(sign)
        strength = severity if present else severity * residual
        if strength == 0:
            continue
        for name, value in _sign_effects(sign, draws, strength).items():
            effects[name] = _combine(name, effects[name], value)
    patient.effects = effects
    patient.signs = "+".join(shown) if shown else "none"


def _scaled_factor(factor: float, severity: float) -> float:
    return 1.0 + severity * (factor - 1.0)


def _sign_effects(sign: str, draws: Mapping[str, float], severity: float) -> dict[str, float]:
    """Map one sign's drawn magnitudes to effect parameters, scaled by severity."""
    if sign == "t_peaked":
        return {
            "t_amp_factor": _scaled_factor(draws["amp_factor"], severity),
            "t_width_factor": _scaled_factor(draws["width_factor"], severity),
        }
    if sign in ("t_flatten",):
        return {"t_amp_factor": _scaled_factor(draws["factor"], severity)}
    if sign in ("p_flatten", "p_taller"):
        return {"p_amp_factor": _scaled_factor(draws["factor"], severity)}
    if sign == "pr_prolong":
        return {"pr_delta_ms": severity * draws["ms"]}
    if sign == "qrs_widen":
        return {"qrs_widen_ms": severity * draws["ms"]}
    if sign == "qt_prolong":
        return {"qt_delta_ms": severity * draws["ms"]}
    if sign == "st_depression":
        return {"st_depression_mv": severity * draws["mv"]}
    if sign == "u_wave":
        return {"u_wave_mv": severity * draws["mv"]}
    raise KeyError(sign)


def _combine(name: str, current: float, value: float) -> float:
    return current * value if name.endswith("_factor") else current + value


#: Keys of a disorder's effect spec that are not signs.
SPEC_KEYS = ("silent", "residual")
KNOWN_SIGNS = (
    "t_peaked",
    "t_flatten",
    "p_flatten",
    "p_taller",
    "pr_prolong",
    "qrs_widen",
    "qt_prolong",
    "st_depression",
    "u_wave",
)
