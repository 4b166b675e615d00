"""Does ingesting change what a model learns? The same cohort trained read directly and ingested.

Builds the 12-lead synthetic cohort (``scale``, ``seed`` 42), trains ``model=set_cnn1d`` on it
read directly as a record store (``records.csv`` → ``signals12/``), then exports it as hospital
files (``--format``, default DICOM), ingests them with a lab table and trains the same model,
seed and split on the ingested store. Prints both test AUROCs (record level, from each run's
``predictions.csv``) and their difference; the two stores hold the same patients under the same
ids, so the splits are the same.

    python experiments/ingest_vs_direct.py [--format dicom] [--disorder hypokalemia] [--scale 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from ecgml import CONF_DIR, PROJECT_ROOT
from ecgml.ingest.run import IngestSettings, ingest
from ecgml.synth.cohort import build_cohort, cohort_config
from ecgml.synth.exports import export_cohort


def train(store: Path, run_dir: Path, disorder: str, tmp: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "ecgml.train",
        f"disorder={disorder}",
        "data=records",
        f"data.path={store}",
        "model=set_cnn1d",
        "trainer.enable_progress_bar=false",
        f"logger.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"hydra.run.dir={run_dir}",
        f"paths.cache_dir={tmp / 'cache'}",
    ]
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    predictions = pd.read_csv(run_dir / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    return float(roc_auc_score(test["y_true"], test["y_prob"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="dicom")
    parser.add_argument("--disorder", default="hypokalemia")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecgml-ingest-vs-direct-") as name:
        tmp = Path(name)
        cfg = cohort_config(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
        cfg.update(images=False, twelve_lead=True, seed=42, scale=args.scale)
        cohort = build_cohort(cfg, tmp / "cohort", n_jobs=2)
        start = time.perf_counter()
        exported = export_cohort(cohort, tmp / "export", args.format)
        report = ingest(
            IngestSettings(exported.ecgs, exported.labs, tmp / "store", n_jobs=2, progress=False)
        )
        ingest_s = time.perf_counter() - start
        direct = train(cohort, tmp / "run_direct", args.disorder, tmp)
        ingested = train(tmp / "store", tmp / "run_ingested", args.disorder, tmp)
    print(
        f"cohort scale {args.scale:g} seed 42: {report.n_records} ECGs ingested from "
        f"{args.format} in {ingest_s:.1f} s (export included), groups {report.groups}"
    )
    print(
        f"{args.disorder} set_cnn1d test AUROC: direct {direct:.3f}, ingested {ingested:.3f}, "
        f"difference {ingested - direct:+.3f}"
    )


if __name__ == "__main__":
    main()
