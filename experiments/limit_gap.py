"""How close does a model get to what the data allow? Model vs oracle AUROC on the same folds.

    .venv/bin/python experiments/limit_gap.py [--scales 1 5] [--disorders ...] [--jobs 2]
        [--label default] [--out experiments/results] [key=value ...]

For each disorder and cohort scale (Table 1 × scale), patient-level 5-fold cross-validation
(``split=group_kfold``): every fold trains the configured model with ecgml's own fitter (the
product's code path, without MLflow) and scores its test patients (patient level = mean beat
probability, or ``evaluation.aggregate=median|max``). The **oracle** is a logistic regression on
the generator's true per-patient morphology (``patients.csv``: baseline × applied effects — PR,
P, QRS, QTc, P/Q/R/S/T/U amplitudes, ST level, T width and asymmetry, heart rate), fitted on the
same fold's training patients only. Pooled out-of-fold AUROCs with a patient-level stratified
bootstrap CI (2,000 resamples, the same resamples for both, so the ratio gets a paired CI too).

Extra ``key=value`` arguments are Hydra overrides for every model run (e.g. ``data.augment=none``),
so each lever of the small-data issue gets its own row. Results are appended to
``limit_gap_history.csv`` (one row per label × disorder × scale) and the latest table and plot
are written as ``limit_gap.md`` / ``limit_gap.png``. Each row also keeps ``model_val_auroc``:
the folds' validation patients scored by their fold's model, pooled (patient level). That is
the number a choice between settings reads; the test folds never choose anything.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from matplotlib.figure import Figure
from omegaconf import DictConfig, open_dict
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgml import CONF_DIR, DISORDERS, PROJECT_ROOT
from ecgml.data.datamodule import BeatTable, fold_names, load_store, load_table
from ecgml.data.labels import binary_labels
from ecgml.evaluation.bootstrap import bootstrap_auroc, patient_bootstrap_indices
from ecgml.evaluation.predictions import patient_level

N_BOOTSTRAP = 2000


def oracle_features(patients: pd.DataFrame) -> pd.DataFrame:
    """The waveform each patient's beats are drawn from: baseline combined with its effects."""
    p = patients
    return pd.DataFrame(
        {
            "heart_rate": p["heart_rate"],
            "pr_ms": p["pr_ms"] + p["pr_delta_ms"],
            "p_ms": p["p_ms"],
            "qrs_ms": p["qrs_ms"] + p["qrs_widen_ms"],
            "qtc_ms": p["qtc_ms"] + p["qt_delta_ms"],
            "p_mv": np.log(p["p_mv"] * p["p_amp_factor"]),
            "q_mv": np.log(p["q_mv"]),
            "r_mv": np.log(p["r_mv"]),
            "s_mv": np.log(p["s_mv"]),
            "t_mv": np.log(p["t_mv"] * p["t_amp_factor"]),
            "u_mv": np.log(p["u_mv"] + p["u_wave_mv"]),
            "st_mv": p["st_mv"] - p["st_depression_mv"],
            "t_sigma_ms": p["t_sigma_ms"] * p["t_width_factor"],
            "t_asymmetry": 1.0 + (p["t_asymmetry"] - 1.0) * p["t_width_factor"],
        }
    ).set_index(p["patient_id"].astype(str))


def beat_visible_features(features: pd.DataFrame) -> pd.DataFrame:
    """The oracle's features restricted to what one fixed-window beat shows: the QT the beat
    displays (QTc × √RR, the generator's own rule) instead of QTc, and no heart rate — a beat
    cut ``pre_r_ms``/``post_r_ms`` around R does not contain its RR interval."""
    rr_s = 60.0 / features["heart_rate"]
    visible = features.drop(columns=["heart_rate", "qtc_ms"])
    return visible.assign(qt_ms=features["qtc_ms"] * np.sqrt(rr_s))


def oracle_scores(features: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """One fold of the oracle: fitted on the fold's train+val patients, scored on its test ones."""
    fit = splits[splits["split"] != "test"]
    test = splits[splits["split"] == "test"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    model.fit(features.loc[fit["patient_id"]], fit["y"])
    prob = model.predict_proba(features.loc[test["patient_id"]])[:, 1]
    visible = beat_visible_features(features)
    model.fit(visible.loc[fit["patient_id"]], fit["y"])
    prob_visible = model.predict_proba(visible.loc[test["patient_id"]])[:, 1]
    return pd.DataFrame(
        {"patient_id": test["patient_id"].to_numpy(), "oracle": prob, "oracle_beat": prob_visible}
    )


def compose_cfg(disorder: str, scale: float, overrides: list[str]) -> DictConfig:
    base = [
        f"disorder={disorder}",
        "split=group_kfold",
        f"data.cohort.scale={scale}",
        "trainer.enable_progress_bar=false",
        "explain.enabled=false",
        "training.log_model=false",
        "training.log_checkpoint=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*base, *overrides])


@dataclass
class FoldJob:
    cfg: DictConfig
    fold: int
    threads: int
    #: Changes the fold's table before training (a picklable function: another experiment's
    #: variation of the training data on these same folds); ``None`` trains on it as built.
    table_hook: Callable[[BeatTable, DictConfig], BeatTable] | None = None


@dataclass
class FoldResult:
    """One fold's patient-level scores: ``scores`` on its test patients (what the tables pool),
    ``val_scores`` on its validation patients (what a choice between settings may look at:
    the test folds never choose), and the fold's ``splits``."""

    scores: pd.DataFrame
    val_scores: pd.DataFrame
    splits: pd.DataFrame


def run_fold(job: FoldJob) -> FoldResult:
    """Train one fold with the product's fitter; patient-level test and validation scores."""
    import lightning.pytorch as L
    import torch

    from ecgml.pipeline.fitters import make_fitter
    from ecgml.pipeline.units import BeatUnit

    torch.set_num_threads(job.threads)
    cfg = copy.deepcopy(job.cfg)
    with open_dict(cfg):
        cfg.split.fold = job.fold
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    table = load_table(cfg)
    if job.table_hook is not None:
        table = job.table_hook(table, cfg)
    out = Path(tempfile.mkdtemp(prefix="ecgml-limit-gap-"))
    fitter = make_fitter(cfg, logger=False, out=out, unit=BeatUnit())  # type: ignore[arg-type]
    fitter.fit(table)
    aggregate = cfg.evaluation.get("aggregate", "mean")  # evaluation.aggregate=max etc.
    scores, val_scores = (
        patient_level(fitter.predict(split), aggregate)[["patient_id", "y_true", "y_prob"]]
        for split in ("test", "val")
    )
    scores["fold"] = val_scores["fold"] = job.fold
    return FoldResult(scores, val_scores, table.splits)


def pooled_with_oracle(results: list[FoldResult], patients_csv: Path) -> pd.DataFrame:
    """Every fold's test scores, pooled, beside the oracles fitted on the same folds."""
    features = oracle_features(pd.read_csv(patients_csv))
    oracle = pd.concat([oracle_scores(features, result.splits) for result in results])
    return pd.concat([result.scores for result in results]).merge(oracle, on="patient_id")


def auroc_with_ci(plan, ids, y, score) -> tuple[float, float, float, np.ndarray]:
    dist = bootstrap_auroc(plan, ids, y, score)
    low, high = np.nanquantile(dist, [0.025, 0.975])
    return float(roc_auc_score(y, score)), float(low), float(high), dist


def evaluate_disorder(disorder: str, scale: float, args: argparse.Namespace) -> dict:
    cfg = compose_cfg(disorder, scale, args.overrides)
    store = load_store(cfg)  # builds/caches the cohort once, before the workers start
    labelled, _ = binary_labels(store.meta, cfg.disorder.positive, cfg.disorder.negative)
    folds = fold_names(labelled, cfg.split)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    jobs = [FoldJob(cfg, int(f), threads) for f in folds]
    start = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_fold, jobs))
    else:
        results = [run_fold(j) for j in jobs]
    seconds = time.perf_counter() - start
    pooled = pooled_with_oracle(results, store.root.parent / "patients.csv")
    val = pd.concat([result.val_scores for result in results])
    ids, y = pooled["patient_id"].to_numpy(), pooled["y_true"].to_numpy()
    plan = patient_bootstrap_indices(ids, y, N_BOOTSTRAP, seed=0)
    model_auc, model_lo, model_hi, model_dist = auroc_with_ci(plan, ids, y, pooled["y_prob"])
    oracle_auc, oracle_lo, oracle_hi, oracle_dist = auroc_with_ci(plan, ids, y, pooled["oracle"])
    ratio_lo, ratio_hi = np.nanquantile(model_dist / oracle_dist, [0.025, 0.975])
    beat_auc, beat_lo, beat_hi, _ = auroc_with_ci(plan, ids, y, pooled["oracle_beat"])
    return {
        "label": args.label,
        "disorder": disorder,
        "scale": scale,
        "model": cfg.model.name,
        "overrides": " ".join(args.overrides),
        "n_patients": len(pooled),
        "n_positive": int(y.sum()),
        "model_auroc": model_auc,
        "model_low": model_lo,
        "model_high": model_hi,
        "oracle_auroc": oracle_auc,
        "oracle_low": oracle_lo,
        "oracle_high": oracle_hi,
        "ratio": model_auc / oracle_auc,
        "model_val_auroc": float(roc_auc_score(val["y_true"], val["y_prob"])),
        "ratio_low": float(ratio_lo),
        "ratio_high": float(ratio_hi),
        "oracle_beat_auroc": beat_auc,
        "oracle_beat_low": beat_lo,
        "oracle_beat_high": beat_hi,
        "train_seconds": round(seconds, 1),
    }


def markdown(rows: pd.DataFrame) -> str:
    lines = [
        "| disorder | scale | patients (pos) | model AUROC (95% CI) | oracle AUROC (95% CI) | "
        "ratio (95% CI) | beat-visible oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        lines.append(
            f"| {r.disorder} | {r.scale:g} | {r.n_patients} ({r.n_positive}) | "
            f"{r.model_auroc:.3f} ({r.model_low:.3f}–{r.model_high:.3f}) | "
            f"{r.oracle_auroc:.3f} ({r.oracle_low:.3f}–{r.oracle_high:.3f}) | "
            f"**{r.ratio:.3f}** ({r.ratio_low:.3f}–{r.ratio_high:.3f}) | "
            f"{r.oracle_beat_auroc:.3f} |"
        )
    return "\n".join(lines)


def history_markdown(history: pd.DataFrame) -> str:
    """One row per (label, scale): each disorder's model AUROC and its ratio to the oracle."""
    lines = [
        "| change | scale | " + " | ".join(DISORDERS) + " |",
        "|---|---|" + "---|" * len(DISORDERS),
    ]
    keyed = history.drop_duplicates(["label", "scale", "disorder"], keep="last")
    for (label, scale), part in keyed.groupby(["label", "scale"], sort=False):
        cells = []
        for disorder in DISORDERS:
            row = part[part["disorder"] == disorder]
            cells.append(
                f"{row['model_auroc'].iloc[0]:.3f} ({row['ratio'].iloc[0]:.2f}×)"
                if len(row)
                else "–"
            )
        lines.append(f"| {label} | {scale:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: pd.DataFrame, path: Path) -> None:
    figure = Figure(figsize=(7, 3.6))
    axes = figure.subplots(1, len(rows["scale"].unique()), sharey=True, squeeze=False)[0]
    for ax, (scale, part) in zip(axes, rows.groupby("scale"), strict=True):
        x = np.arange(len(part))
        for offset, (name, color) in enumerate((("model", "tab:blue"), ("oracle", "tab:grey"))):
            value = part[f"{name}_auroc"].to_numpy()
            err = [value - part[f"{name}_low"], part[f"{name}_high"] - value]
            ax.bar(x + (offset - 0.5) * 0.38, value, 0.38, yerr=err, color=color, label=name)
        for xi, ratio in zip(x, part["ratio"], strict=True):
            ax.text(xi, 0.52, f"{ratio:.2f}×", ha="center", fontsize=8)
        ax.set_xticks(x, part["disorder"], fontsize=8)
        ax.set_ylim(0.5, 1.0)
        ax.set_title(f"cohort scale {scale:g}", fontsize=9)
    axes[0].set_ylabel("pooled 5-fold patient AUROC")
    axes[0].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"model vs oracle ({rows['label'].iloc[0]})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--disorders", nargs="+", default=list(DISORDERS), choices=DISORDERS)
    parser.add_argument("--jobs", type=int, default=2, help="folds trained in parallel")
    parser.add_argument("--label", default="current default", help="history row label")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results")
    parser.add_argument(
        "--history", action="store_true", help="print the history table (no training) and exit"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every model run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.history:
        print(history_markdown(pd.read_csv(args.out / "limit_gap_history.csv")))
        return
    rows = []
    for scale in args.scales:
        for disorder in args.disorders:
            row = evaluate_disorder(disorder, scale, args)
            rows.append(row)
            print(
                f"{disorder} scale {scale:g}: model {row['model_auroc']:.3f} "
                f"oracle {row['oracle_auroc']:.3f} ratio {row['ratio']:.3f} "
                f"(validation {row['model_val_auroc']:.3f}; {row['train_seconds']:.0f} s)",
                flush=True,
            )
    table = pd.DataFrame(rows)
    history = args.out / "limit_gap_history.csv"
    previous = pd.read_csv(history) if history.exists() else None
    pd.concat([previous, table], ignore_index=True).to_csv(history, index=False)
    (args.out / "limit_gap.md").write_text(markdown(table) + "\n")
    plot(table, args.out / "limit_gap.png")
    print(markdown(table))


if __name__ == "__main__":
    main()
