"""Validation of the generator config: every problem is one actionable EcgmlError line."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ecgml import DISORDERS, GROUPS
from ecgml.beatstore import SERUM_BOUNDS
from ecgml.errors import EcgmlError
from ecgml.synth.physiology import (
    KNOWN_SIGNS,
    SERUM_DECIMALS,
    SERUM_KEYS,
    SERUM_OF,
    SPEC_KEYS,
)
from ecgml.synth.render import (
    BOTTOM_MM,
    DISTORTION_KEYS,
    GRID_COLORS,
    LAYOUTS,
    LEFT_MM,
    PAGE_ROW_HEIGHT_MM,
    PAPER_SPEED_MM_S,
    RIGHT_MM,
    TOP_MM,
)

REQUIRED_KEYS = (
    "seed",
    "scale",
    "severity",
    "groups",
    "beats_per_patient",
    "fs",
    "duration_s",
    "pre_r_ms",
    "post_r_ms",
    "images",
    "twelve_lead",
    "centers",
    "devices",
    "powerline_hz",
    "baseline",
    "beat",
    "noise",
    "effects",
    "render",
)
#: Upper bounds that keep one build's memory finite; checked before anything is allocated.
MAX_FS = 10_000.0
MAX_DURATION_S = 600.0
#: Samples of one lead of one recording (fs × duration_s): 2e6 float64 is 16 MB per lead.
MAX_SAMPLES = 2_000_000
MAX_PATIENTS = 1_000_000
MAX_CENTERS = 10_000
#: Pixels of the largest image the renderer may draw (a 12-lead page at the highest dpi).
MAX_IMAGE_PIXELS = 150_000_000
#: Baseline ranges whose values must be strictly positive.
POSITIVE_BASELINE = ("heart_rate_bpm", "pr_ms", "p_ms", "qrs_ms", "qtc_ms", "t_sigma_ms")


def _fail(key: str, problem: str, fix: str) -> EcgmlError:
    return EcgmlError(f"cohort.{key}: {problem}: {fix}")


def _number(cfg: Mapping[str, Any], key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, f"{value!r} is not a number", "give a number")
    return float(value)


def _range(key: str, value: Any, low: float | None = None, high: float | None = None) -> None:
    """A [low, high] pair of numbers, optionally inside (low, high) bounds."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(key, f"{value!r} is not a [low, high] pair", "give two numbers")
    a, b = (_number({}, key, v) for v in value)
    if a > b:
        raise _fail(key, f"low {a} exceeds high {b}", "swap them")
    if low is not None and a <= low:
        raise _fail(key, f"{a} is impossible (must be > {low})", "raise it")
    if high is not None and b > high:
        raise _fail(key, f"{b} is impossible (must be ≤ {high})", "lower it")


def _probability(key: str, value: Any) -> None:
    p = _number({}, key, value)
    if not 0.0 <= p <= 1.0:
        raise _fail(key, f"probability {p} is outside 0–1", "use a value in [0, 1]")


def validate_cohort_config(cfg: Mapping[str, Any]) -> None:
    """Raise an EcgmlError naming the first bad knob; return None when the config is usable."""
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise EcgmlError(
            f"cohort config lacks {', '.join(missing)}: start from conf/cohort/default.yaml"
        )
    for flag in ("images", "twelve_lead", "signal_csvs"):
        if not isinstance(cfg.get(flag, True), bool):
            raise _fail(flag, f"{cfg[flag]!r} is not true or false", "use true or false")
    _validate_counts(cfg)
    _validate_recording(cfg)
    _validate_baseline(cfg)
    _validate_effects(cfg)
    if cfg.get("serum") is not None:
        _validate_serum(cfg)
    _validate_render(cfg["render"])
    if cfg["images"]:
        _validate_image_size(float(cfg["duration_s"]), float(cfg["render"]["dpi"][1]))


def _validate_counts(cfg: Mapping[str, Any]) -> None:
    groups = cfg["groups"]
    if not isinstance(groups, Mapping) or not groups:
        raise _fail("groups", "must map group names to patient counts", "e.g. {normal: 230}")
    for group, count in groups.items():
        if group not in GROUPS:
            raise _fail(f"groups.{group}", "unknown group", f"use one of {', '.join(GROUPS)}")
        if isinstance(count, bool) or not isinstance(count, int):
            raise _fail(f"groups.{group}", f"count {count!r} is not a whole number", "fix it")
        if count < 0:
            raise _fail(f"groups.{group}", f"negative patient count {count}", "use 0 or more")
    if sum(int(c) for c in groups.values()) == 0:
        raise _fail("groups", "all patient counts are 0", "give at least one group patients")
    scale = _number(cfg, "scale", cfg["scale"])
    if not 0 < scale < math.inf:
        raise _fail("scale", f"{scale} must be > 0", "e.g. scale=1 (Table 1) or scale=5")
    n_patients = sum(round(int(count) * scale) for count in groups.values())
    if n_patients > MAX_PATIENTS:
        raise _fail(
            "groups × scale",
            f"{n_patients:.3g} patients is more than {MAX_PATIENTS:,}",
            "lower scale or the group counts",
        )
    severity = _number(cfg, "severity", cfg["severity"])
    if not 0 <= severity <= 10:
        raise _fail("severity", f"{severity} is outside 0–10", "1 = literature-sized effects")
    _range("beats_per_patient", cfg["beats_per_patient"], low=0)
    if isinstance(cfg["seed"], bool) or not isinstance(cfg["seed"], int) or cfg["seed"] < 0:
        raise _fail("seed", f"{cfg['seed']!r} is not a non-negative whole number", "fix it")


def _validate_recording(cfg: Mapping[str, Any]) -> None:
    fs = _number(cfg, "fs", cfg["fs"])
    if fs < 100:
        raise _fail("fs", f"{fs} Hz is too low for an ECG", "use ≥ 100 (default 500)")
    if not fs <= MAX_FS:
        raise _fail("fs", f"{fs:g} Hz is more than {MAX_FS:g}", "use ≤ 10000 (default 500)")
    pre = _number(cfg, "pre_r_ms", cfg["pre_r_ms"])
    post = _number(cfg, "post_r_ms", cfg["post_r_ms"])
    if pre <= 0 or post <= 0:
        raise _fail("pre_r_ms/post_r_ms", "window lengths must be > 0 ms", "default 250/650")
    duration = _number(cfg, "duration_s", cfg["duration_s"])
    if duration < (pre + post) / 1000.0 + 2.0:
        raise _fail("duration_s", f"{duration} s is too short for beats", "use ≥ 5 (default 10)")
    if not duration <= MAX_DURATION_S:
        raise _fail("duration_s", f"{duration:g} s is more than {MAX_DURATION_S:g}", "default 10")
    if fs * duration > MAX_SAMPLES:
        raise _fail(
            "fs × duration_s",
            f"{fs * duration:.3g} samples per recording is more than {MAX_SAMPLES:,}",
            "lower fs or duration_s",
        )
    centers = cfg["centers"]
    if isinstance(centers, bool) or not isinstance(centers, int) or centers < 1:
        raise _fail("centers", f"{centers!r} must be a whole number ≥ 1", "default 17")
    if centers > MAX_CENTERS:
        raise _fail("centers", f"{centers} is more than {MAX_CENTERS:,}", "default 17")
    devices = cfg["devices"]
    if not isinstance(devices, Mapping) or not devices:
        raise _fail("devices", "must map device names to {gain, lowpass_hz, share}", "fix it")
    for name, dev in devices.items():
        for key in ("gain", "lowpass_hz", "share"):
            if key not in dev or _number(cfg, f"devices.{name}.{key}", dev[key]) < 0:
                raise _fail(f"devices.{name}.{key}", "missing or negative", "give a number ≥ 0")
        if float(dev["gain"]) == 0 or float(dev["lowpass_hz"]) == 0:
            raise _fail(f"devices.{name}", "gain and lowpass_hz must be > 0", "fix them")
    if sum(float(d["share"]) for d in devices.values()) <= 0:
        raise _fail("devices", "all device shares are 0", "give one device a share > 0")
    if _number(cfg, "powerline_hz", cfg["powerline_hz"]) <= 0:
        raise _fail("powerline_hz", "must be > 0", "50 or 60")


def _validate_baseline(cfg: Mapping[str, Any]) -> None:
    for section in ("baseline", "beat", "noise"):
        for key, value in cfg[section].items():
            if isinstance(value, list | tuple):
                positive = section == "baseline" and key in POSITIVE_BASELINE
                _range(f"{section}.{key}", value, low=0 if positive else None)
    rates = cfg["baseline"]["heart_rate_bpm"]
    if float(rates[1]) > 250:
        raise _fail("baseline.heart_rate_bpm", f"{rates[1]} bpm is impossible", "use ≤ 250")


def _validate_effects(cfg: Mapping[str, Any]) -> None:
    effects = cfg["effects"]
    for group, count in cfg["groups"].items():
        if group in DISORDERS and int(count) > 0 and group not in effects:
            raise _fail(f"effects.{group}", "missing", "copy it from conf/cohort/default.yaml")
    for group, spec in effects.items():
        if group not in DISORDERS:
            raise _fail(f"effects.{group}", "unknown disorder", f"use {', '.join(DISORDERS)}")
        for sign, sign_spec in spec.items():
            key = f"effects.{group}.{sign}"
            if sign in SPEC_KEYS:
                _probability(key, sign_spec)
                continue
            if sign not in KNOWN_SIGNS:
                raise _fail(key, "unknown sign", f"use one of {', '.join(KNOWN_SIGNS)}")
            _probability(f"{key}.p", sign_spec.get("p"))
            for name, value in sign_spec.items():
                if name != "p":
                    _range(f"{key}.{name}", value, low=-1e-12)


SERUM_DISORDER_KEYS = ("edge", "shape", "scale", "max_distance", "slope", "presence")


def _validate_serum(cfg: Mapping[str, Any]) -> None:
    """The optional ``serum`` section: distributions inside plausible mmol/L, knobs in range."""
    serum = cfg["serum"]
    if not isinstance(serum, Mapping):
        raise _fail("serum", "must be a mapping", "copy it from conf/cohort/default.yaml")
    known = ("coupling", "comorbid", "normal", *DISORDERS)
    for key in serum:
        if key not in known:
            raise _fail(f"serum.{key}", "unknown key", f"use {', '.join(known)}")
    for key in ("coupling", "comorbid", "normal"):
        if key not in serum:
            raise _fail(f"serum.{key}", "missing", "copy it from conf/cohort/default.yaml")
    coupling = _number({}, "serum.coupling", serum["coupling"])
    if not 0 <= coupling <= 10:
        raise _fail("serum.coupling", f"{coupling} is outside 0–10", "1 = default, 0 = none")
    _probability("serum.comorbid", serum["comorbid"])
    for electrolyte in SERUM_KEYS:
        key = f"serum.normal.{electrolyte}"
        spec = serum["normal"].get(electrolyte) if isinstance(serum["normal"], Mapping) else None
        if not isinstance(spec, Mapping) or {"mean", "sd", "range"} - set(spec):
            raise _fail(key, "must be {mean, sd, range}", "copy it from conf/cohort/default.yaml")
        low, high = SERUM_BOUNDS[electrolyte]
        _range(f"{key}.range", spec["range"], low=low - 1e-9, high=high)
        lo, hi = (float(v) for v in spec["range"])
        if lo == hi or not lo <= _number({}, f"{key}.mean", spec["mean"]) <= hi:
            raise _fail(f"{key}.mean", f"{spec['mean']} must lie in range {lo}–{hi}", "fix it")
        if not _number({}, f"{key}.sd", spec["sd"]) > 0:
            raise _fail(f"{key}.sd", f"{spec['sd']} must be > 0", "e.g. 0.35 for K")
    needed = {g for g, n in cfg["groups"].items() if g in DISORDERS and int(n) > 0}
    needed |= {"hyponatremia"} if float(serum["comorbid"]) > 0 else set()
    for disorder in DISORDERS:
        if disorder not in serum:
            if disorder in needed:
                raise _fail(f"serum.{disorder}", "missing", "copy it from conf/cohort/default.yaml")
            continue
        _validate_serum_disorder(serum[disorder], disorder)


def _validate_serum_disorder(spec: Any, disorder: str) -> None:
    key = f"serum.{disorder}"
    if not isinstance(spec, Mapping) or set(SERUM_DISORDER_KEYS) - set(spec):
        raise _fail(key, f"needs {', '.join(SERUM_DISORDER_KEYS)}", "copy it from the default")
    bad = [k for k in spec if k not in SERUM_DISORDER_KEYS]
    if bad:
        raise _fail(f"{key}.{bad[0]}", "unknown key", f"use {', '.join(SERUM_DISORDER_KEYS)}")
    for name in ("shape", "scale", "max_distance"):
        if not _number({}, f"{key}.{name}", spec[name]) > 0:
            raise _fail(f"{key}.{name}", f"{spec[name]} must be > 0", "fix it")
    slope = _number({}, f"{key}.slope", spec["slope"])
    if not 0 <= slope <= 1:
        raise _fail(f"{key}.slope", f"{slope} is outside 0–1", "0.5 = half the effect tracks it")
    electrolyte, direction = SERUM_OF[disorder]
    unit = 10.0 ** -SERUM_DECIMALS[electrolyte]
    if float(spec["max_distance"]) < unit:
        raise _fail(f"{key}.max_distance", f"must be ≥ {unit:g} mmol/L (lab precision)", "raise it")
    low, high = SERUM_BOUNDS[electrolyte]
    edge = _number({}, f"{key}.edge", spec["edge"])
    far = edge + direction * float(spec["max_distance"])
    if not (low <= min(edge, far) and max(edge, far) <= high):
        raise _fail(
            f"{key}.edge/max_distance",
            f"{electrolyte} would reach {far:g} mmol/L, outside {low:g}–{high:g}",
            "lower max_distance",
        )
    presence = spec["presence"]
    if not isinstance(presence, Mapping):
        raise _fail(f"{key}.presence", f"{presence!r} is not a mapping", "e.g. {u_wave: 2.0}")
    for sign, power in presence.items():
        if sign not in KNOWN_SIGNS:
            raise _fail(f"{key}.presence.{sign}", "unknown sign", f"use {', '.join(KNOWN_SIGNS)}")
        if not 0 <= _number({}, f"{key}.presence.{sign}", power) <= 5:
            raise _fail(f"{key}.presence.{sign}", f"power {power} is outside 0–5", "e.g. 1 or 2")


def _validate_render(render: Mapping[str, Any]) -> None:
    _range("render.dpi", render["dpi"], low=29, high=1200)
    for key, known in (("layouts", LAYOUTS), ("grid_colors", tuple(GRID_COLORS))):
        weights = render[key]
        bad = [k for k in weights if k not in known]
        if bad:
            raise _fail(f"render.{key}.{bad[0]}", "unknown", f"use {', '.join(known)}")
        if any(_number({}, f"render.{key}", w) < 0 for w in weights.values()) or not sum(
            float(w) for w in weights.values()
        ):
            raise _fail(f"render.{key}", "weights must be ≥ 0, not all 0", "fix them")
    for name, spec in render["distortions"].items():
        if name not in DISTORTION_KEYS:
            raise _fail(
                f"render.distortions.{name}", "unknown", f"use {', '.join(DISTORTION_KEYS)}"
            )
        _probability(f"render.distortions.{name}.p", spec.get("p"))
        _range(f"render.distortions.{name}.range", spec.get("range"))
    low_res = render["distortions"].get("low_res_scale")
    if low_res and not 0.05 <= float(low_res["range"][0]) <= float(low_res["range"][1]) <= 1:
        raise _fail("render.distortions.low_res_scale.range", "must lie in 0.05–1", "fix it")
    jpeg = render["distortions"].get("jpeg_quality")
    if jpeg and not 1 <= float(jpeg["range"][0]) <= float(jpeg["range"][1]) <= 100:
        raise _fail("render.distortions.jpeg_quality.range", "must lie in 1–100", "fix it")


def _validate_image_size(duration_s: float, dpi: float) -> None:
    """Refuse a cohort whose largest page (12-lead layout, highest dpi) is too big to draw."""
    width_mm = LEFT_MM + duration_s * PAPER_SPEED_MM_S + RIGHT_MM
    height_mm = TOP_MM + 4 * PAGE_ROW_HEIGHT_MM + BOTTOM_MM
    pixels = width_mm * height_mm * (dpi / 25.4) ** 2
    if pixels > MAX_IMAGE_PIXELS:
        raise _fail(
            "duration_s/render.dpi",
            f"a {duration_s:g} s page at {dpi:g} dpi is {pixels / 1e6:.0f} Mpx, more than "
            f"{MAX_IMAGE_PIXELS / 1e6:g} Mpx",
            "lower duration_s or render.dpi, or pass images=false",
        )
