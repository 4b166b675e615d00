"""Does a single-beat model gain from more beats per training patient? (issue 12 exploration)

    .venv/bin/python experiments/record_beats_training.py DISORDER [--source records|both]
        [key=value ...]

Same cross-validation as ``experiments/limit_gap.py`` (Table-1 size, ``split=group_kfold``,
patient level = mean beat probability, oracle on the same folds), but each fold's *training*
beats are every beat ecgml cuts from the training patients' 10 s records (``records``), or
those plus the study's beats (``both``). Validation and test patients keep their 2–3 study
beats, so the model and its evaluation stay the study's single-beat setting. Prints one line.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, open_dict
from sklearn.metrics import roc_auc_score

from ecgml import PROJECT_ROOT
from ecgml.data.datamodule import BeatTable, fold_names, load_store, load_table
from ecgml.data.labels import binary_labels
from ecgml.data.records import cut_store, resolve_record_store
from ecgml.evaluation.predictions import patient_level
from ecgml.recordstore import load_record_store
from ecgml.signal import align_beats

sys.path.insert(0, str(PROJECT_ROOT))
from experiments.limit_gap import compose_cfg, oracle_features, oracle_scores


def with_record_training_beats(table: BeatTable, cfg: DictConfig, source: str) -> BeatTable:
    """``table`` with its training beats replaced by (or joined with) every record beat of the
    training patients, R-aligned on the table's own R column."""
    store = load_record_store(resolve_record_store(cfg.data))
    record_meta, cut, _ = cut_store(store, ("II",), cfg.data)
    split_of = table.splits.set_index("patient_id")["split"]
    template = table.meta.drop_duplicates("patient_id").set_index("patient_id")
    rows, beats, r_offsets = [], [], []
    for patient_id, item in zip(record_meta["patient_id"], cut, strict=True):
        if patient_id not in template.index or split_of.get(patient_id) != "train":
            continue
        for k, beat in enumerate(item.beats[:, 0, :]):
            row = {**template.loc[patient_id].to_dict(), "patient_id": patient_id}
            rows.append({**row, "beat_id": f"{patient_id}_record_{k:03d}"})
            beats.append(beat)
            r_offsets.append(item.r_offset)
    x_record, _ = align_beats(beats, r_offsets, table.seq_len, r_column=table.r_index)
    keep = np.ones(len(table.meta), bool) if source == "both" else (table.meta["split"] != "train")
    keep = np.asarray(keep)
    meta = pd.concat(
        [pd.DataFrame(rows)[table.meta.columns], table.meta.loc[keep]], ignore_index=True
    )
    x = np.concatenate([x_record, table.x[keep]])
    return BeatTable(x, meta, table.fs, table.r_index, table.digest, table.summary,
                     table.splits, table.task)  # fmt: skip


def run_fold(job: tuple[DictConfig, int, str]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    import lightning.pytorch as L
    import torch

    from ecgml.pipeline.fitters import make_fitter

    cfg, fold, source = job
    torch.set_num_threads(1)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.split.fold = fold
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = with_record_training_beats(load_table(cfg), cfg, source)
    fitter = make_fitter(cfg, logger=False, out=Path(tempfile.mkdtemp()))  # type: ignore[arg-type]
    fitter.fit(table)
    scores = patient_level(fitter.predict("test"), "mean")[["patient_id", "y_true", "y_prob"]]
    return scores, table.splits, int((table.meta["split"] == "train").sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("disorder")
    parser.add_argument("--source", choices=("records", "both"), default="records")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=linear1d")
    args = parser.parse_args()
    cfg = compose_cfg(args.disorder, 1.0, args.overrides)
    store = load_store(cfg)
    labelled, _ = binary_labels(store.meta, cfg.disorder.positive, cfg.disorder.negative)
    jobs = [(cfg, int(f), args.source) for f in fold_names(labelled, cfg.split)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_fold, jobs))
    features = oracle_features(pd.read_csv(store.root.parent / "patients.csv"))
    oracle = pd.concat([oracle_scores(features, splits) for _, splits, _ in results])
    pooled = pd.concat([scores for scores, _, _ in results]).merge(oracle, on="patient_id")
    model = roc_auc_score(pooled["y_true"], pooled["y_prob"])
    best = roc_auc_score(pooled["y_true"], pooled["oracle"])
    n_train = int(np.mean([n for _, _, n in results]))
    print(
        f"{args.disorder} ({args.source}; {' '.join(args.overrides) or 'default'}): "
        f"model {model:.3f}, oracle {best:.3f}, ratio {model / best:.3f}, "
        f"{len(pooled)} patients, {n_train} training beats per fold, "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
