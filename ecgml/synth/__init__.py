"""The synthetic cohort: physiologically grounded patients, beats and paper-ECG images.

``build_cohort`` writes the cohort folder (the CLI, ``python -m ecgml.synth out=DIR``);
``ensure_cohort`` builds or reuses one in a cache keyed by the generator config (training);
``ecgml.synth.render.render_ecg`` renders any signal as a paper ECG (the digitizer's test bed).
"""

from ecgml.synth.cohort import build_cohort, config_hash, ensure_cohort

__all__ = ["build_cohort", "config_hash", "ensure_cohort"]
