"""Signal → beats, one implementation each, shared by training, serving, explain and features.

- :mod:`~ecgml.signal.rpeaks`: R-peak detection (NeuroKit2).
- :mod:`~ecgml.signal.windows`: one window per R-peak and the interference filter (``BeatSet``).
- :mod:`~ecgml.signal.baseline`: per-beat isoelectric (PR-segment) referencing.
- :mod:`~ecgml.signal.align`: R-aligned zero-padding / cropping to one length.
- :mod:`~ecgml.signal.prepare`: new beats laid out as a trained model saw them.
- :mod:`~ecgml.signal.delineate`: NeuroKit2 wave delineation.

This layer imports nothing from ecgml but ``ecgml.errors`` and the package constants.
"""

from ecgml.signal.align import Align, Mode, align_beats, beat_layout, resample_beat
from ecgml.signal.baseline import BASELINES, Baseline, reference_beat, reference_beats
from ecgml.signal.delineate import WAVES, DelineationError, delineate_record
from ecgml.signal.prepare import BeatLayout, prepare_beats, prepare_strip, prepare_strips
from ecgml.signal.rpeaks import detect_rpeaks
from ecgml.signal.windows import (
    DEFAULT_MAX_AMPLITUDE_RATIO,
    DEFAULT_MIN_CORRELATION,
    DEFAULT_POST_R_MS,
    DEFAULT_PRE_R_MS,
    REASON_EDGE,
    BeatSet,
    extract_beats,
    extract_windows,
    window_samples,
)

__all__ = [
    "BASELINES",
    "DEFAULT_MAX_AMPLITUDE_RATIO",
    "DEFAULT_MIN_CORRELATION",
    "DEFAULT_POST_R_MS",
    "DEFAULT_PRE_R_MS",
    "REASON_EDGE",
    "WAVES",
    "Align",
    "Baseline",
    "BeatLayout",
    "BeatSet",
    "DelineationError",
    "Mode",
    "align_beats",
    "beat_layout",
    "delineate_record",
    "detect_rpeaks",
    "extract_beats",
    "extract_windows",
    "prepare_beats",
    "prepare_strip",
    "prepare_strips",
    "reference_beat",
    "reference_beats",
    "resample_beat",
    "window_samples",
]
