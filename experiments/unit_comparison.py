"""Which unit should a model read? Single beat vs patient-aggregated beats vs set model vs strip.

    .venv/bin/python experiments/unit_comparison.py [--disorders ...] [--folds 0 1 2 3 4]
        [--epochs 20] [--leads II] [--record-models set strip] [--skip-beats]
        [--out experiments/results] [key=value ...]

For each disorder, on the default synthetic cohort (Table 1 size), patient-level 5-fold
cross-validation with **the same folds for every unit** (the folds of the record path's patient
table; a patient whose record yields no beat is left out everywhere):

- **single beat**: the disorder's default beat model (``cnn1d``; ``linear1d`` for hyponatremia;
  ``--beat-model`` picks another) on the beat store (2–3 beats per patient, the study's
  setting), scored per beat (AUROC over test beats);
- **patient-aggregated beats**: the same predictions, mean probability per patient;
- **set model**: ``model=set_cnn1d`` on every beat of the patient's 10 s record (attention);
- **whole strip**: ``model=strip_cnn1d`` on the 10 s signal;
- **oracle**: logistic regression on the generator's true per-patient morphology
  (``experiments/limit_gap.py``), fitted on each fold's training patients.

Every unit is trained with ecgml's own code (the beat fitter, :mod:`ecgml.pipeline.records`),
without MLflow. Pooled out-of-fold AUROCs with a patient-level stratified bootstrap 95% CI
(2,000 resamples, the same for every unit). ``key=value`` arguments are Hydra overrides for
every run; ``record:key=value`` ones only for the record models (``set:`` / ``strip:`` only for
the set / whole-strip model). Writes ``unit_comparison.md`` /
``.csv`` / ``.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import DictConfig

from ecgml import DISORDERS, PROJECT_ROOT
from ecgml.data.datamodule import build_beat_table, load_store
from ecgml.data.records import build_record_table, resolve_leads, resolve_record_store
from ecgml.data.splits import PatientSplit, build_split
from ecgml.data.tasks import task_spec
from ecgml.evaluation.bootstrap import bootstrap_auroc, patient_bootstrap_indices
from ecgml.evaluation.predictions import patient_level
from ecgml.pipeline.units import BeatUnit, RecordUnit
from ecgml.recordstore import LEADS, load_record_store

sys.path.insert(0, str(PROJECT_ROOT))
from experiments.limit_gap import compose_cfg as limit_gap_cfg
from experiments.limit_gap import oracle_features, oracle_scores

N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class FixedSplit(PatientSplit):
    """A precomputed patient table (``patient_id, y, split``) as a split: every unit of one
    fold uses exactly these patients in these subsets (patients absent from it are dropped)."""

    table: pd.DataFrame
    name: str = "fixed"

    def assign(self, beats: pd.DataFrame, universe: pd.DataFrame | None = None) -> pd.DataFrame:
        patients = set(beats["patient_id"])
        return self.table[self.table["patient_id"].isin(patients)].reset_index(drop=True)


def compose_cfg(disorder: str, overrides: list[str]) -> DictConfig:
    """limit_gap's cross-validation config at Table-1 size (``data.cohort.scale=…`` among
    ``overrides`` still wins: the last value of a key is the one Hydra keeps)."""
    return limit_gap_cfg(disorder, 1.0, overrides)


def with_model(cfg: DictConfig, model: str | None, epochs: int, extra: list[str]) -> DictConfig:
    """``cfg`` with ``model=<model>`` composed in (None: the disorder's default model) and
    ``trainer.max_epochs``."""
    disorder = str(cfg.disorder.name)
    chosen = [f"model={model}"] if model else []
    return compose_cfg(disorder, [*chosen, f"trainer.max_epochs={epochs}", *extra])


def beat_fold(cfg: DictConfig, store, split: PatientSplit) -> pd.DataFrame:
    """The single-beat model of one fold: its test beats' probabilities."""
    import lightning.pytorch as L

    from ecgml.pipeline.fitters import make_fitter

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = build_beat_table(store, cfg.disorder, split, cfg.data, task_spec(cfg))
    out = Path(tempfile.mkdtemp(prefix="ecgml-units-"))
    fitter = make_fitter(cfg, logger=False, out=out, unit=BeatUnit())  # type: ignore[arg-type]
    fitter.fit(table)
    return fitter.predict("test")


def record_fold(cfg: DictConfig, store, split: PatientSplit) -> pd.DataFrame:
    """A record model of one fold: one test row per record (= patient)."""
    import lightning.pytorch as L

    from ecgml.pipeline.fitters import LightningFitter

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = build_record_table(store, cfg.disorder, split, cfg.data, task_spec(cfg))
    fitter = LightningFitter(
        cfg, False, Path(tempfile.mkdtemp(prefix="ecgml-units-")), RecordUnit()
    )
    fitter.fit(table)
    return fitter.predict("test")


def _fold_auroc(frame: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(frame["y_true"], frame["y_prob"])), 3)


def auroc_ci(plan, ids, y, score) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    dist = bootstrap_auroc(plan, ids, y, score)
    low, high = np.nanquantile(dist, [0.025, 0.975])
    return float(roc_auc_score(y, score)), float(low), float(high)


def lead_label(leads: tuple[str, ...]) -> str:
    return "12 leads" if len(leads) == 12 else "+".join(leads)


RECORD_MODELS = {"set": ("set model", "set_cnn1d"), "strip": ("whole strip", "strip_cnn1d")}


def unit_names(
    lead_sets: list[tuple[str, ...]],
    beats: bool = True,
    record_models: tuple[str, ...] = ("set", "strip"),
) -> list[str]:
    """The table's columns: beat units, each record model per lead set, the oracle."""
    names = ["single beat", "patient-aggregated beats"] if beats else []
    for leads in lead_sets:
        suffix = "" if len(lead_sets) == 1 and leads == ("II",) else f" [{lead_label(leads)}]"
        names += [f"{RECORD_MODELS[m][0]}{suffix}" for m in record_models]
    return [*names, "oracle"]


def evaluate_disorder(disorder: str, args: argparse.Namespace) -> list[dict]:
    prefixes = ("record:", "set:", "strip:")
    common = [o for o in args.overrides if not o.startswith(prefixes)]
    record_only = [o.removeprefix("record:") for o in args.overrides if o.startswith("record:")]
    set_only = [o.removeprefix("set:") for o in args.overrides if o.startswith("set:")]
    strip_only = [o.removeprefix("strip:") for o in args.overrides if o.startswith("strip:")]
    lead_sets = [resolve_leads("all" if s == "all" else s.split(",")) for s in args.leads]
    union = tuple(lead for lead in LEADS if any(lead in s for s in lead_sets))
    base = compose_cfg(disorder, [*common, f"data.leads=[{','.join(lead_sets[0])}]"])
    record_store = load_record_store(resolve_record_store(base.data), union)
    beat_store = None if args.skip_beats else load_store(base)
    record_models = tuple(args.record_models)
    units = unit_names(lead_sets, not args.skip_beats, record_models)
    only = {"set": set_only, "strip": strip_only}
    rec_cfg = {}
    for leads in lead_sets:
        extra = [*common, f"data.leads=[{','.join(leads)}]", "data.unit=record", *record_only]
        names = [u for u in units if u.startswith(("set model", "whole strip"))]
        if len(lead_sets) > 1:
            names = [n for n in names if n.endswith(f"[{lead_label(leads)}]")]
        for name, kind in zip(names, record_models, strict=True):
            model = RECORD_MODELS[kind][1]
            rec_cfg[name] = with_model(base, model, args.epochs, [*extra, *only[kind]])
    beat_cfg = with_model(base, args.beat_model, args.beat_epochs, common)
    features = oracle_features(pd.read_csv(record_store.root / "patients.csv"))
    scores: dict[str, list[pd.DataFrame]] = {u: [] for u in units}
    seconds: dict[str, float] = {u: 0.0 for u in units}
    for fold in args.folds:
        # the fold's patient table, from the record path (patients with a usable record)
        table = build_record_table(
            record_store,
            base.disorder,
            build_split(base.split).with_fold(fold),
            base.data,
            task_spec(base),
        )
        split = FixedSplit(table.splits[["patient_id", "y", "split"]].copy())
        if beat_store is not None:
            start = time.perf_counter()
            beats = beat_fold(beat_cfg, beat_store, split)
            seconds["single beat"] += time.perf_counter() - start
            scores["single beat"].append(beats[["patient_id", "beat_id", "y_true", "y_prob"]])
            scores["patient-aggregated beats"].append(
                patient_level(beats)[["patient_id", "y_true", "y_prob"]]
            )
        for unit, cfg in rec_cfg.items():
            start = time.perf_counter()
            rows = record_fold(cfg, record_store, split)
            seconds[unit] += time.perf_counter() - start
            scores[unit].append(rows[["patient_id", "y_true", "y_prob"]])
        oracle = oracle_scores(features, table.splits).rename(columns={"oracle": "y_prob"})
        truth = table.splits.set_index("patient_id")["y"]
        oracle["y_true"] = truth.loc[oracle["patient_id"]].to_numpy()
        scores["oracle"].append(oracle[["patient_id", "y_true", "y_prob"]])
        aucs = {u: _fold_auroc(scores[u][-1]) for u in units}
        print(
            f"{disorder} fold {fold}: AUROC {aucs}, seconds "
            f"{ {k: round(v) for k, v in seconds.items()} }",
            flush=True,
        )
    patients = pd.concat(scores["oracle"])
    ids, y = patients["patient_id"].to_numpy(), patients["y_true"].to_numpy()
    plan = patient_bootstrap_indices(ids, y, N_BOOTSTRAP, seed=0)
    rows = []
    for unit in units:
        pooled = pd.concat(scores[unit], ignore_index=True)
        if unit == "single beat":  # beat-level AUROC, patient-level resampling
            beat_plan = patient_bootstrap_indices(
                pooled["patient_id"].to_numpy(), pooled["y_true"].to_numpy(), N_BOOTSTRAP, seed=0
            )
            auc = auroc_ci(
                beat_plan,
                pooled["patient_id"].to_numpy(),
                pooled["y_true"].to_numpy(),
                pooled["y_prob"].to_numpy(),
            )
        else:
            pooled = pooled.set_index("patient_id").loc[ids].reset_index()
            auc = auroc_ci(plan, ids, y, pooled["y_prob"].to_numpy())
        rows.append(
            {
                "disorder": disorder,
                "unit": unit,
                "n_patients": len(ids),
                "n_positive": int(y.sum()),
                "n_rows": len(pooled),
                "auroc": auc[0],
                "low": auc[1],
                "high": auc[2],
                "train_seconds": round(seconds[unit], 1),
                "folds": len(args.folds),
            }
        )
    return rows


def markdown(rows: pd.DataFrame) -> str:
    units = list(dict.fromkeys(rows["unit"]))
    lines = [
        "| disorder | patients (pos) | " + " | ".join(units) + " |",
        "|---|---|" + "---|" * len(units),
    ]
    for disorder, part in rows.groupby("disorder", sort=False):
        first = part.iloc[0]
        cells = []
        for unit in units:
            r = part[part["unit"] == unit].iloc[0]
            cells.append(f"{r.auroc:.3f} ({r.low:.3f}–{r.high:.3f})")
        lines.append(
            f"| {disorder} | {first.n_patients} ({first.n_positive}) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plot(rows: pd.DataFrame, path: Path) -> None:
    figure = Figure(figsize=(9.5, 3.8))
    ax = figure.subplots()
    disorders = list(dict.fromkeys(rows["disorder"]))
    units = list(dict.fromkeys(rows["unit"]))
    width = 0.8 / len(units)
    for k, unit in enumerate(units):
        part = rows[rows["unit"] == unit].set_index("disorder").loc[disorders]
        x = np.arange(len(disorders)) + (k - (len(units) - 1) / 2) * width
        value = part["auroc"].to_numpy()
        err = [value - part["low"].to_numpy(), part["high"].to_numpy() - value]
        ax.bar(x, value, width, yerr=err, label=unit, capsize=2)
    ax.set_xticks(np.arange(len(disorders)), disorders)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("pooled out-of-fold AUROC")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("unit comparison (same folds, pooled out-of-fold, 95% CI)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disorders", nargs="+", default=list(DISORDERS), choices=DISORDERS)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=20, help="record models' epochs")
    parser.add_argument("--beat-epochs", type=int, default=40, help="single-beat model's epochs")
    parser.add_argument(
        "--leads",
        nargs="+",
        default=["II"],
        help="lead sets for the record models: II (default), all, or a comma list; several "
        "sets train the record models once per set",
    )
    parser.add_argument("--skip-beats", action="store_true", help="record models only")
    parser.add_argument(
        "--beat-model", default=None, help="single-beat model (default: the disorder's default)"
    )
    parser.add_argument(
        "--record-models",
        nargs="+",
        default=["set", "strip"],
        choices=list(RECORD_MODELS),
        help="which record models to train (default: both)",
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results")
    parser.add_argument("--name", default="unit_comparison")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides for every run ('record:key=value': record models only; "
        "'set:' / 'strip:': that record model only)",
    )
    parser.add_argument("--replot", action="store_true", help="redraw from the saved CSV")
    args = parser.parse_args()
    if args.replot:
        frame = pd.read_csv(args.out / f"{args.name}.csv")
        plot(frame, args.out / f"{args.name}.png")
        print(markdown(frame))
        return
    import torch

    torch.set_num_threads(1)  # one thread: ~4x faster than two on a shared 2-core machine
    rows = [row for d in args.disorders for row in evaluate_disorder(d, args)]
    frame = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / f"{args.name}.csv", index=False)
    table = markdown(frame)
    (args.out / f"{args.name}.md").write_text(table + "\n")
    plot(frame, args.out / f"{args.name}.png")
    print(table)


if __name__ == "__main__":
    main()
