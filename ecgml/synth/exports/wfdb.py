"""A Recording as a WFDB record (format 16, 1 µV per step), as MIMIC-IV-ECG stores its ECGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgml.ecgfile import Recording

#: ADC steps per mV: 1 µV resolution, ±32.7 mV range in format 16.
ADC_GAIN = 1000.0


def write(path: Path, rec: Recording) -> Path:
    """Write ``path`` (``<name>.hea``) and ``<name>.dat`` beside it; returns the header."""
    import wfdb

    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(rec.leads)
    digital = np.round(rec.signal.T * ADC_GAIN).astype(np.int16)
    comments = [f"patient_id: {rec.patient_id}"] if rec.patient_id else []
    wfdb.wrsamp(
        path.stem,
        fs=rec.fs,
        units=["mV"] * n,
        sig_name=list(rec.leads),
        d_signal=digital,
        fmt=["16"] * n,
        adc_gain=[ADC_GAIN] * n,
        baseline=[0] * n,
        base_date=rec.time.date() if rec.time else None,
        base_time=rec.time.time() if rec.time else None,
        comments=comments,
        write_dir=str(path.parent),
    )
    return path.with_suffix(".hea")
