"""Shared by the reader tests: a synthetic 12-lead truth, XML mutation, the refusal check."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ecgml.ecgfile import EcgFileProblem, read_ecg


def synthetic_twelve_lead(seconds: float = 10.0, fs: float = 500.0) -> dict[str, np.ndarray]:
    """Lead → mV: gaussian P/QRS/T bumps every 0.8 s plus slow sines; III, aVR, aVL, aVF
    derived by Einthoven/Goldberger from I and II, as a real body gives them."""
    t = np.arange(int(seconds * fs)) / fs
    phase = (t % 0.8) - 0.4

    def beat(p: float, r: float, s: float, tw: float) -> np.ndarray:
        return (
            p * np.exp(-((phase + 0.16) ** 2) / 0.0008)
            + r * np.exp(-(phase**2) / 0.00015)
            + s * np.exp(-((phase - 0.03) ** 2) / 0.0002)
            + tw * np.exp(-((phase - 0.25) ** 2) / 0.003)
        )

    one = beat(0.08, 0.9, -0.15, 0.25) + 0.05 * np.sin(2 * np.pi * 0.3 * t)
    two = beat(0.12, 1.4, -0.2, 0.35) + 0.04 * np.sin(2 * np.pi * 0.25 * t + 1.0)
    leads = {"I": one, "II": two, "III": two - one, "aVR": -(one + two) / 2}
    leads |= {"aVL": one - two / 2, "aVF": two - one / 2}
    for k in range(1, 7):
        chest = beat(0.05 * k, 0.3 * k - 0.6, -0.9 + 0.12 * k, 0.1 * k)
        leads[f"V{k}"] = chest + 0.02 * np.cos(2 * np.pi * 0.2 * k * t)
    return leads


def synthetic_channels(
    leads: tuple[str, ...], n: int = 5000, fs: float = 500.0
) -> list[tuple[str, np.ndarray]]:
    """Per lead: a baseline wander, a 1.1 Hz QRS-like bump train and a T wave, in mV."""
    t = np.arange(n) / fs
    channels = []
    for k, lead in enumerate(leads):
        phase = (t * 1.1) % 1.0
        qrs = (0.6 + 0.1 * k) * np.exp(-(((phase - 0.3) / 0.012) ** 2))
        t_wave = 0.2 * np.exp(-(((phase - 0.6) / 0.05) ** 2))
        wander = 0.05 * np.sin(2 * np.pi * 0.2 * t + k)
        channels.append((lead, qrs + t_wave + wander - 0.1 * np.sin(2 * np.pi * 7 * t + k)))
    return channels


def mutated_xml(source: Path, target: Path, change: Callable[[ET.Element], object]) -> Path:
    """A copy of our own (trusted) XML file with ``change`` applied to its root."""
    tree = ET.parse(source)
    change(tree.getroot())
    tree.write(target, encoding="UTF-8", xml_declaration=True)
    return target


def refused(path: Path) -> EcgFileProblem:
    """The problem ``read_ecg`` raises for ``path``: one line, starting with the file name."""
    with pytest.raises(EcgFileProblem) as caught:
        read_ecg(path)
    problem = caught.value
    assert problem.detail.startswith(path.name) and "\n" not in problem.detail, problem.detail
    return problem
