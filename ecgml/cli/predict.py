"""``python -m ecgml.predict input=PATH``: hyperkalemia, hypokalemia and hyponatremia probabilities.

PATH is an ECG image, a ``time_s,mv`` signal CSV, a WFDB record, a single-beat CSV, a beat store
or a folder of these; the three ``champion`` models come from the MLflow registry (see
``python -m ecgml.promote``). JSON to ``output=`` or stdout, a short table on stderr.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.inference.score import run_predict
from ecgml.tracking import check_store


@hydra_entry("predict")
def main(cfg: DictConfig) -> None:
    check_store(cfg.tracking_uri)  # before any input is read
    run_predict(cfg)
