"""Does a single-beat model gain from more beats per training patient? (issue 12 exploration)

    .venv/bin/python experiments/record_beats_training.py DISORDER [--source records|both]
        [key=value ...]

Same cross-validation and fold runner as ``experiments/limit_gap.py`` (Table-1 size,
``split=group_kfold``, patient level = mean beat probability or ``evaluation.aggregate``, oracle
on the same folds), but each fold's *training* beats are every beat ecgml cuts from the training
patients' 10 s records (``records``), or those plus the study's beats (``both``). Validation and
test patients keep their 2–3 study beats, so the model and its evaluation stay the study's
single-beat setting. Prints each fold's training-beat count, then one result line.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import roc_auc_score

from ecgml import PROJECT_ROOT
from ecgml.data.datamodule import BeatTable, fold_names, load_store
from ecgml.data.labels import binary_labels
from ecgml.data.records import cut_store, resolve_record_store
from ecgml.recordstore import load_record_store
from ecgml.signal import align_beats

sys.path.insert(0, str(PROJECT_ROOT))
from experiments.limit_gap import FoldJob, compose_cfg, pooled_with_oracle, run_fold


def with_record_training_beats(table: BeatTable, cfg: DictConfig, source: str) -> BeatTable:
    """``table`` with its training beats replaced by (or joined with) every record beat of the
    training patients, R-aligned on the table's own R column."""
    store = load_record_store(resolve_record_store(cfg.data))
    record_meta, cut, _ = cut_store(store, ("II",), cfg.data)
    train = set(table.splits.loc[table.splits["split"] == "train", "patient_id"])
    template = table.meta.drop_duplicates("patient_id").set_index("patient_id", drop=False)
    rows, beats, r_offsets = [], [], []
    for patient_id, item in zip(record_meta["patient_id"], cut, strict=True):
        if patient_id not in train or patient_id not in template.index:
            continue
        row = template.loc[patient_id].to_dict()
        for k, beat in enumerate(item.beats[:, 0, :]):
            rows.append({**row, "beat_id": f"{patient_id}_record_{k:03d}"})
            beats.append(beat)
            r_offsets.append(item.r_offset)
    x_record, _ = align_beats(beats, r_offsets, table.seq_len, r_column=table.r_index)
    keep = (table.meta["split"] != "train").to_numpy() | (source == "both")
    meta = pd.concat(
        [pd.DataFrame(rows)[table.meta.columns], table.meta.loc[keep]], ignore_index=True
    )
    print(f"{len(beats)} training beats from {len(train)} patients' records", flush=True)
    return BeatTable(
        np.concatenate([x_record, table.x[keep]]),
        meta,
        table.fs,
        table.r_index,
        table.digest,
        table.summary,
        table.splits,
        table.task,
    )


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
    hook = functools.partial(with_record_training_beats, source=args.source)
    jobs = [FoldJob(cfg, int(f), 1, hook) for f in fold_names(labelled, cfg.split)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_fold, jobs))
    pooled = pooled_with_oracle(results, store.root.parent / "patients.csv")
    model = roc_auc_score(pooled["y_true"], pooled["y_prob"])
    best = roc_auc_score(pooled["y_true"], pooled["oracle"])
    print(
        f"{args.disorder} ({args.source}; {' '.join(args.overrides) or 'default'}): "
        f"model {model:.3f}, oracle {best:.3f}, ratio {model / best:.3f}, "
        f"{len(pooled)} patients, {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
