"""Wave delineation: NeuroKit2's wavelet (DWT) delineator, the one call every caller shares.

Single beats are too short for the delineator, so callers lay beats end to end as one
pseudo-record (``models.features_lr`` with neighbouring beats as context, ``explain.regions``
with each median beat tiled) and read the fiducials back per R-peak.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: NeuroKit2's fiducials, as ``ECG_<name>`` keys, in the order of a beat.
WAVES = ("P_Onsets", "P_Offsets", "R_Onsets", "R_Offsets", "T_Onsets", "T_Peaks", "T_Offsets")


class DelineationError(ValueError):
    """NeuroKit2 could not delineate the record (it raises bare errors on odd input)."""


def delineate_record(signal: np.ndarray, rpeaks: np.ndarray, fs: float) -> pd.DataFrame:
    """Fiducials (samples in ``signal``) with one row per R-peak and one column per wave in
    :data:`WAVES`; NaN where the delineator found none.

    Raises :class:`DelineationError` when NeuroKit2 fails or returns fiducials for a different
    number of beats than ``rpeaks``.
    """
    import neurokit2 as nk  # deferred: a slow import (~2 s), needed only where waves are

    rpeaks = np.asarray(rpeaks, dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NeuroKit2 warns on short/odd input
            _, waves = nk.ecg_delineate(
                np.asarray(signal, dtype=float), rpeaks, sampling_rate=round(fs), method="dwt"
            )
    except Exception as err:  # NeuroKit2 raises bare ValueError/IndexError/ZeroDivisionError
        raise DelineationError(f"NeuroKit2 delineation failed: {err}") from err
    columns = {name: waves.get(f"ECG_{name}", [np.nan] * len(rpeaks)) for name in WAVES}
    lengths = {len(v) for v in columns.values()}
    if lengths != {len(rpeaks)}:
        raise DelineationError(
            "NeuroKit2 delineation failed: "
            f"fiducials for {sorted(lengths)} beats, expected {len(rpeaks)}"
        )
    return pd.DataFrame({name: np.asarray(v, dtype=float) for name, v in columns.items()})
