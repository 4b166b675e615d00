"""A Recording as ecgml's own signal CSV (``time_s`` + one column per lead, mV to 0.01 µV).

The CSV holds no patient or time: an index CSV beside it gives them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgml.ecgfile import Recording


def write(path: Path, rec: Recording) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = np.vstack([np.arange(rec.signal.shape[1]) / rec.fs, rec.signal]).T
    np.savetxt(
        path,
        columns,
        fmt=["%.6f"] + ["%.5f"] * len(rec.leads),
        delimiter=",",
        header=",".join(["time_s", *rec.leads]),
        comments="",
    )
    return path
