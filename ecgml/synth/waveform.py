"""Closed-form ECG waveform model: each beat is a sum of Gaussian waves (P, Q, R, S, ST, T, U).

In the spirit of ECGSYN's (t_i, a_i, b_i) wave parameters but evaluated directly in time, so a
10 s recording costs milliseconds instead of an ODE integration. Intervals follow the heart
rate (QT by Bazett from the patient's QTc and each beat's RR), the T wave is asymmetric (slow
upstroke), and recording realism (baseline wander, powerline, EMG, device gain and bandwidth)
is added on top. Amplitudes are lead II, in mV; other leads are projections of each wave's
frontal-plane vector plus precordial templates.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from ecgml.synth.physiology import Patient

LIMB_LEAD_ANGLES = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
#: Precordial amplitude multipliers of each wave's lead-II amplitude (P, Q, R, S, ST, T, U).
PRECORDIAL = {
    "V1": (0.6, 0.0, 0.25, 2.2, 0.5, -0.3, 0.6),
    "V2": (0.7, 0.0, 0.5, 2.6, 1.2, 1.1, 1.4),
    "V3": (0.7, 0.3, 0.9, 1.8, 1.0, 1.3, 1.3),
    "V4": (0.8, 0.6, 1.4, 1.1, 0.9, 1.3, 1.1),
    "V5": (0.8, 1.0, 1.3, 0.6, 0.8, 1.1, 0.8),
    "V6": (0.8, 1.0, 1.0, 0.3, 0.7, 0.9, 0.6),
}
WAVES = ("P", "Q", "R", "S", "ST", "T", "U")


@dataclass(frozen=True)
class Recording:
    """A synthetic recording: leads (mV) at ``fs`` and the true R-peak sample indices."""

    leads: dict[str, np.ndarray]
    fs: float
    r_indices: np.ndarray

    @property
    def lead_ii(self) -> np.ndarray:
        return self.leads["II"]


def beat_times(patient: Patient, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """R-peak times (s) from one RR before the start to one after the end, with HRV + RSA."""
    rr_mean = 60.0 / patient.heart_rate_bpm
    times = [-rng.uniform(0.2, 1.0) * rr_mean]
    while times[-1] < duration_s + rr_mean:
        t = times[-1]
        rsa = patient.respiration_amplitude * np.sin(2 * np.pi * patient.respiration_hz * t)
        rr = rr_mean * (1.0 + patient.rr_jitter * rng.standard_normal() + 0.5 * rsa)
        times.append(t + max(rr, 0.3))
    return np.asarray(times)


def wave_parameters(
    patient: Patient, r_times: np.ndarray, rng: np.random.Generator, amp_jitter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per beat and wave: centre (s), left sigma (s), right sigma (s) and lead-II amplitude (mV).

    Arrays have shape ``(n_beats, len(WAVES))``.
    """
    e = patient.effects
    n = len(r_times)
    rr = np.diff(r_times, prepend=r_times[0] - 60.0 / patient.heart_rate_bpm)
    qrs = (patient.qrs_ms + e["qrs_widen_ms"]) / 1000.0
    pr = (patient.pr_ms + e["pr_delta_ms"]) / 1000.0
    p_dur = patient.p_ms / 1000.0
    qt = (patient.qtc_ms + e["qt_delta_ms"]) / 1000.0 * np.sqrt(rr)
    qrs_onset = -0.5 * qrs
    t_sigma_r = patient.t_sigma_ms / 1000.0 * e["t_width_factor"]
    t_asym = 1.0 + (patient.t_asymmetry - 1.0) * e["t_width_factor"]
    t_peak = qrs_onset + qt - 2.2 * t_sigma_r
    st_center = 0.5 * (0.5 * qrs + t_peak)
    u_peak = t_peak + 0.16 + 0.1 * (rr - 0.8)

    centers = np.zeros((n, len(WAVES)))
    centers[:, 0] = qrs_onset - pr + 0.5 * p_dur
    centers[:, 1] = -0.28 * qrs
    centers[:, 2] = 0.0
    centers[:, 3] = 0.28 * qrs
    centers[:, 4] = st_center
    centers[:, 5] = t_peak
    centers[:, 6] = u_peak
    sigma_right = np.column_stack(
        [
            np.full(n, p_dur / 5.0),
            np.full(n, qrs / 14.0),
            np.full(n, qrs / 11.0),
            np.full(n, qrs / 14.0),
            np.maximum((t_peak - 0.5 * qrs) / 3.0, 0.01),
            np.full(n, t_sigma_r),
            np.full(n, 0.045),
        ]
    )
    sigma_left = sigma_right.copy()
    sigma_left[:, 5] *= t_asym
    amplitudes = np.array(
        [
            patient.p_mv * e["p_amp_factor"],
            -patient.q_mv,
            patient.r_mv,
            -patient.s_mv,
            patient.st_mv - e["st_depression_mv"],
            patient.t_mv * e["t_amp_factor"],
            patient.u_mv + e["u_wave_mv"],
        ]
    )
    resp = 1.0 + patient.respiration_amplitude * np.sin(
        2 * np.pi * patient.respiration_hz * r_times
    )
    jitter = 1.0 + amp_jitter * rng.standard_normal((n, len(WAVES)))
    amps = amplitudes[None, :] * jitter * resp[:, None]
    return centers + r_times[:, None], sigma_left, sigma_right, amps


def sum_waves(
    n_samples: int,
    fs: float,
    centers: np.ndarray,
    sigma_left: np.ndarray,
    sigma_right: np.ndarray,
    amps: np.ndarray,
) -> np.ndarray:
    """Sum each wave's asymmetric Gaussians over all beats: shape ``(n_waves, n_samples)``.

    Each beat is evaluated only over its own support (±5 sigma), which keeps a 10 s recording
    at a few milliseconds.
    """
    out = np.zeros((centers.shape[1], n_samples))
    for c, sl, sr, a in zip(centers, sigma_left, sigma_right, amps, strict=True):
        first = max(int(np.floor((c - 5 * sl).min() * fs)), 0)
        last = min(int(np.ceil((c + 5 * sr).max() * fs)) + 1, n_samples)
        if last <= first:
            continue
        t = np.arange(first, last) / fs
        d = t[None, :] - c[:, None]
        sigma = np.where(d < 0, sl[:, None], sr[:, None])
        out[:, first:last] += a[:, None] * np.exp(-0.5 * (d / sigma) ** 2)
    return out


def lead_gains(patient: Patient, leads: Sequence[str]) -> np.ndarray:
    """Per lead and wave: multiplier of the lead-II amplitude, shape ``(n_leads, n_waves)``."""
    axes = {
        "P": 50.0,
        "Q": patient.qrs_axis_deg + 160.0,
        "R": patient.qrs_axis_deg,
        "S": patient.qrs_axis_deg + 200.0,
        "ST": patient.t_axis_deg,
        "T": patient.t_axis_deg,
        "U": patient.t_axis_deg,
    }
    gains = np.ones((len(leads), len(WAVES)))
    for i, lead in enumerate(leads):
        for j, wave in enumerate(WAVES):
            if lead in LIMB_LEAD_ANGLES:
                theta = np.deg2rad(axes[wave])
                in_ii = np.cos(theta - np.deg2rad(60.0))
                in_ii = np.sign(in_ii) * max(abs(in_ii), 0.35) if in_ii != 0 else 0.35
                gains[i, j] = np.cos(theta - np.deg2rad(LIMB_LEAD_ANGLES[lead])) / in_ii
            else:
                gains[i, j] = PRECORDIAL[lead][j]
    return gains


def recording_noise(
    patient: Patient, t: np.ndarray, rng: np.random.Generator, n_leads: int
) -> np.ndarray:
    """Baseline wander (<0.5 Hz, partly respiratory), powerline and EMG, per lead."""
    noise = np.zeros((n_leads, len(t)))
    freqs = np.array([patient.respiration_hz, *rng.uniform(0.05, 0.5, size=2)])
    weights = rng.dirichlet(np.ones(3))
    for lead in range(n_leads):
        phases = rng.uniform(0, 2 * np.pi, size=3)
        wander = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(
            0
        )
        powerline = np.sin(2 * np.pi * patient.powerline_hz * t + rng.uniform(0, 2 * np.pi))
        noise[lead] = (
            patient.wander_mv * wander
            + patient.powerline_mv * powerline
            + patient.emg_mv * rng.standard_normal(len(t))
        )
    return noise


@functools.lru_cache(maxsize=64)
def lowpass(cutoff_hz: float, fs: float) -> np.ndarray:
    """The device's 2nd-order Butterworth low-pass as second-order sections (designed once per
    device and rate: a design costs as much as filtering a recording)."""
    return sps.butter(2, min(cutoff_hz, 0.45 * fs), fs=fs, output="sos")  # shared: never edit


def synthesize(
    patient: Patient,
    fs: float,
    duration_s: float,
    rng: np.random.Generator,
    leads: Sequence[str] = ("II",),
    amp_jitter: float = 0.03,
    clean: bool = False,
) -> Recording:
    """One recording of ``duration_s`` seconds; ``clean=True`` skips noise and device filtering."""
    n_samples = round(duration_s * fs)
    t = np.arange(n_samples) / fs
    r_times = beat_times(patient, duration_s, rng)
    centers, sigma_left, sigma_right, amps = wave_parameters(patient, r_times, rng, amp_jitter)
    per_wave = sum_waves(n_samples, fs, centers, sigma_left, sigma_right, amps)
    gains = lead_gains(patient, leads)
    signals = gains @ per_wave
    noise = recording_noise(patient, t, rng, len(leads))
    if not clean:
        signals = patient.gain * (signals + noise)
        signals = sps.sosfiltfilt(lowpass(patient.lowpass_hz, fs), signals, axis=-1)
    r_idx = np.round(r_times * fs).astype(np.int64)
    r_idx = r_idx[(r_idx >= 0) & (r_idx < n_samples)]
    return Recording({lead: signals[i] for i, lead in enumerate(leads)}, float(fs), r_idx)
