"""Per-patient parameters: heart-failure baseline, serum K/Na, probabilistic disorder effects.

Sizes follow ``shared/physiology.md``: every sign of a disorder is present only with some
probability, a ``silent`` fraction of patients shows none, and ``severity`` scales every
magnitude (factors as ``1 + severity·(f − 1)``, additive effects as ``severity·x``; a factor
below 1 never drops under :data:`FACTOR_FLOOR`, which only bites above severity ≈ 1.3).

Serum potassium and sodium (the ``serum`` section of ``conf/cohort/default.yaml``)
---------------------------------------------------------------------------------------
Each patient gets ``potassium_mmol_l`` and ``sodium_mmol_l``. The electrolyte a group is not
about is drawn from a truncated normal inside the normal range (K 3.5–5.0, Na 135–145 mmol/L).
The disordered one lies at ``edge ± d``, where the distance ``d`` from the normal edge follows a
gamma distribution (``shape``, ``scale``) truncated to ``(0, max_distance]``: most patients are
mildly abnormal (a stable heart-failure clinic cohort rarely shows K > 6.5 or Na < 125). Values
are rounded to lab precision (K 0.01, Na 0.1 mmol/L) away from the edge, so a disorder value is
always strictly outside the normal range.

The level drives the effects through ``x = d / E[d]`` (``E[d]``: the mean of the group's
truncated distance distribution, so ``x`` averages 1 over the group):

* magnitude: every sign's strength is ``severity × m`` with
  ``m = max(0, 1 + coupling · slope · (x − 1))`` — linear in the distance from normal, with mean
  1 over the group, so the cohort's average effect size (and the detection AUROCs) stay those
  of ``coupling = 0``. Webster (Emerg Med J 2002;19:74): hyperkalemic changes escalate with K
  (peaked T at 5.5–6.5, then PR/P/QRS at 6.5–8.0); the T downslope/amplitude ratio tracks K
  (r ≈ 0.63). Hyponatremia's changes are "not tightly tied to the Na level", hence its smaller
  ``slope``.
* presence: a sign listed under ``presence`` (sign: power ``k``) has its odds ``p / (1 − p)``
  multiplied by ``c · x ** (k · coupling)``, where ``c`` (:func:`presence_scale`) keeps the
  sign's mean probability over the group at ``p`` (``p = 0`` and ``p = 1`` stay as they are):
  the sign becomes rarer in mildly abnormal patients and likelier in deep ones — the T peaking
  of hyperkalemia (k = 1: from 5.5 mmol/L on), more steeply its PR prolongation, P flattening
  and QRS widening (k = 2: mostly above 6.5 mmol/L, Webster 2002) and hypokalemia's U wave
  (k = 2: clearer below 3.0, clear changes mostly below ~2.7). Effects stay probabilistic and often
  absent (Green, NDT 2012: T tenting in ~31% of hyperkalemic vs ~33% of normokalemic ESRD
  patients; ~25% of hyperkalemic ECGs look normal, Int J Emerg Med 2022).

``coupling = 0`` gives ``m = 1`` and untouched probabilities: exactly the magnitudes drawn
without the serum section. Serum values come from their own random stream (a child
:class:`~numpy.random.SeedSequence` of the patient's seed, :func:`serum_stream`), so every other
draw of a patient is the same with or without them. ``comorbid``: that fraction of hypokalemia
patients also has hyponatremia (sodium from the hyponatremia distribution and the hyponatremia
effects added on top, drawn from the serum stream); their group stays ``hypokalemia``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammainc, gammaincinv, ndtr, ndtri

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
    #: Serum values (mmol/L; NaN without a ``serum`` config section).
    potassium_mmol_l: float = math.nan
    sodium_mmol_l: float = math.nan
    #: The serum level's magnitude multiplier ``m`` of the group's effects (1 = uncoupled).
    serum_multiplier: float = 1.0

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
    serum_rng: np.random.Generator | None = None,
) -> Patient:
    """Draw one patient's baseline and serum values, then apply the group's disorder effects.

    ``serum_rng`` (default :func:`serum_stream` of ``rng``) draws the serum values and any
    comorbid effects, so ``rng``'s draws are the same with or without a ``serum`` section.
    """
    base, beat, noise = cfg["baseline"], cfg["beat"], cfg["noise"]
    values: dict[str, float] = {
        str(key): (_log_uniform if key in AMPLITUDE_KEYS else _uniform)(rng, bounds)
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
        **dict[str, Any](values),  # the waveform parameters, by their field names
    )
    serum_cfg = cfg.get("serum")
    draw = None
    if serum_cfg is not None:
        serum_rng = serum_rng if serum_rng is not None else serum_stream(rng)
        draw = draw_serum(serum_cfg, group, serum_rng)
        patient.potassium_mmol_l, patient.sodium_mmol_l = draw.potassium, draw.sodium
    if group != "normal":
        multiplier, x = draw.coupling[group] if draw is not None else (1.0, 1.0)
        presence = _presence(cfg, group, x)
        patient.serum_multiplier = multiplier
        apply_disorder(
            patient, cfg["effects"][group], float(cfg["severity"]), rng, multiplier, presence
        )
    if draw is not None and draw.comorbid and "hyponatremia" in cfg["effects"]:
        assert serum_rng is not None
        multiplier, x = draw.coupling["hyponatremia"]
        effects, shown = draw_effects(
            cfg["effects"]["hyponatremia"],
            float(cfg["severity"]),
            serum_rng,
            multiplier,
            _presence(cfg, "hyponatremia", x),
        )
        for name, value in effects.items():
            patient.effects[name] = _combine(name, patient.effects[name], value)
        own = [] if patient.signs == "none" else patient.signs.split("+")
        both = own + [f"hyponatremia.{sign}" for sign in shown]
        patient.signs = "+".join(both) if both else "none"
    return patient


def apply_disorder(
    patient: Patient,
    spec: Mapping[str, Any],
    severity: float,
    rng: np.random.Generator,
    multiplier: float = 1.0,
    presence: Mapping[str, float] | None = None,
) -> None:
    """Draw which signs this patient shows and how strongly; record them in ``effects``.

    A sign that is not present still acts at ``residual`` × its drawn size (a sub-visual
    change of the kind deep models pick up); ``silent`` patients have no change at all. The
    random draws do not depend on ``severity`` nor on the serum level (``multiplier`` scales
    every strength, ``presence`` multiplies a sign's probability), so a severity or coupling
    sweep changes only the magnitudes and presence thresholds of the same patients' signs.
    """
    effects, shown = draw_effects(spec, severity, rng, multiplier, presence)
    patient.effects = effects
    patient.signs = "+".join(shown) if shown else "none"


def draw_effects(
    spec: Mapping[str, Any],
    severity: float,
    rng: np.random.Generator,
    multiplier: float = 1.0,
    presence: Mapping[str, float] | None = None,
) -> tuple[dict[str, float], list[str]]:
    """One disorder's effect parameters (from :data:`NEUTRAL_EFFECTS`) and the signs shown."""
    effects = dict(NEUTRAL_EFFECTS)
    presence = presence or {}
    silent = rng.random() < float(spec.get("silent", 0.0))
    residual = 0.0 if silent else float(spec.get("residual", 0.0))
    shown: list[str] = []
    for sign, sign_spec in spec.items():
        if sign in SPEC_KEYS:
            continue
        p = float(sign_spec["p"])
        if presence.get(sign, 1.0) != 1.0:  # odds × tilt: p = 0 and p = 1 stay as they are
            tilt = presence[sign]
            p = p * tilt / (1.0 - p + p * tilt) if p < 1.0 else p
        present = rng.random() < p and not silent
        draws = {k: _uniform(rng, v) for k, v in sign_spec.items() if k != "p"}
        if present:
            shown.append(sign)
        strength = severity * multiplier if present else severity * residual * multiplier
        if strength == 0:
            continue
        for name, value in _sign_effects(sign, draws, strength).items():
            effects[name] = _combine(name, effects[name], value)
    return effects, shown


# --------------------------------------------------------------------------- serum values

#: The electrolyte each disorder is about, and the direction it leaves the normal range in.
SERUM_OF: dict[str, tuple[str, float]] = {
    "hyperkalemia": ("potassium", 1.0),
    "hypokalemia": ("potassium", -1.0),
    "hyponatremia": ("sodium", -1.0),
}
SERUM_KEYS = ("potassium", "sodium")
#: Lab precision the values are rounded to (decimals of mmol/L).
SERUM_DECIMALS = {"potassium": 2, "sodium": 1}
#: Spawn-key suffix of the serum stream (a child of the patient's SeedSequence).
SERUM_STREAM_KEY = 99
#: Quantiles of the distance distribution :func:`presence_scale` averages over.
QUAD_POINTS = 512
#: A shrinking factor (T flattening, P flattening, T narrowing) never goes below this.
FACTOR_FLOOR = 0.1


@dataclass(frozen=True)
class SerumDraw:
    """One patient's serum values and, per disorder, ``(multiplier m, x = d / E[d])``."""

    potassium: float
    sodium: float
    comorbid: bool
    coupling: dict[str, tuple[float, float]]


def serum_stream(rng: np.random.Generator) -> np.random.Generator:
    """The serum values' own stream: a fixed child of ``rng``'s seed (``rng`` is not used)."""
    seq = rng.bit_generator.seed_seq
    if not isinstance(seq, np.random.SeedSequence):
        raise TypeError("the patient generator must be seeded from a SeedSequence")
    child = np.random.SeedSequence(
        entropy=seq.entropy, spawn_key=(*seq.spawn_key, SERUM_STREAM_KEY)
    )
    return np.random.default_rng(child)


def mean_distance(spec: Mapping[str, Any]) -> float:
    """E[d] of the gamma(``shape``, ``scale``) distance truncated to ``max_distance``."""
    shape, scale, top = (float(spec[k]) for k in ("shape", "scale", "max_distance"))
    x = top / scale
    return float(shape * scale * gammainc(shape + 1.0, x) / gammainc(shape, x))


def _truncated_normal(u: float, spec: Mapping[str, Any]) -> float:
    mean, sd = float(spec["mean"]), float(spec["sd"])
    low, high = (float(v) for v in spec["range"])
    a, b = ndtr((low - mean) / sd), ndtr((high - mean) / sd)
    return float(np.clip(mean + sd * ndtri(a + u * (b - a)), low, high))


def _distance(u: float, spec: Mapping[str, Any], decimals: int) -> float:
    """Truncated-gamma distance from the edge, rounded up to lab precision (≥ one unit)."""
    shape, scale, top = (float(spec[k]) for k in ("shape", "scale", "max_distance"))
    d = scale * float(gammaincinv(shape, u * gammainc(shape, top / scale)))
    unit = 10.0**-decimals
    return round(min(max(math.ceil(d / unit - 1e-9), 1), math.floor(top / unit + 1e-9)) * unit, 9)


def draw_serum(serum: Mapping[str, Any], group: str, rng: np.random.Generator) -> SerumDraw:
    """Serum K and Na for one patient of ``group`` plus the disorders' coupling terms.

    Always three uniforms in a fixed order (comorbidity, K, Na), so values do not shift
    between patients when a knob changes.
    """
    u_comorbid, u_k, u_na = (float(v) for v in rng.random(3))
    comorbid = group == "hypokalemia" and u_comorbid < float(serum.get("comorbid", 0.0))
    disordered = {group} | ({"hyponatremia"} if comorbid else set())
    coupling = float(serum.get("coupling", 1.0))
    values, terms = {}, {}
    for electrolyte, u in (("potassium", u_k), ("sodium", u_na)):
        decimals = SERUM_DECIMALS[electrolyte]
        disorder = next((d for d in disordered if SERUM_OF.get(d, ("",))[0] == electrolyte), None)
        if disorder is None:
            value = _truncated_normal(u, serum["normal"][electrolyte])
            values[electrolyte] = round(value, decimals)
            continue
        spec = serum[disorder]
        d = _distance(u, spec, decimals)
        values[electrolyte] = round(float(spec["edge"]) + SERUM_OF[disorder][1] * d, decimals)
        x = d / mean_distance(spec)
        multiplier = max(0.0, 1.0 + coupling * float(spec["slope"]) * (x - 1.0))
        terms[disorder] = (multiplier, x)
    return SerumDraw(values["potassium"], values["sodium"], comorbid, terms)


def _presence(cfg: Mapping[str, Any], disorder: str, x: float) -> dict[str, float]:
    """Odds multipliers of the disorder's level-tied signs for a patient at ``x = d / E[d]``."""
    serum = cfg.get("serum")
    coupling = float(serum["coupling"]) if serum is not None else 0.0
    if serum is None or coupling == 0 or disorder not in serum:
        return {}
    spec, tilts = serum[disorder], {}
    for sign, power in spec.get("presence", {}).items():
        k = float(power) * coupling
        if k == 0 or sign not in cfg["effects"][disorder]:
            continue
        p = float(cfg["effects"][disorder][sign]["p"])
        shape, scale, top = (float(spec[key]) for key in ("shape", "scale", "max_distance"))
        tilts[sign] = presence_scale(p, shape, scale, top, k) * x**k
    return tilts


@lru_cache(maxsize=256)
def presence_scale(p: float, shape: float, scale: float, top: float, k: float) -> float:
    """``c`` such that odds × ``c · x**k`` keeps the group's mean probability of the sign at p."""
    if not 0.0 < p < 1.0:
        return 1.0
    u = (np.arange(QUAD_POINTS) + 0.5) / QUAD_POINTS
    d = scale * gammaincinv(shape, u * gammainc(shape, top / scale))
    weight = (d / mean_distance({"shape": shape, "scale": scale, "max_distance": top})) ** k

    def gap(log_c: float) -> float:
        tilted = p * math.exp(log_c) * weight
        return float(np.mean(tilted / (1.0 - p + tilted))) - p

    return math.exp(brentq(gap, -50.0, 50.0, xtol=1e-10))


# --------------------------------------------------------------------------- sign effects


def _scaled_factor(factor: float, severity: float) -> float:
    return max(1.0 + severity * (factor - 1.0), FACTOR_FLOOR)


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
