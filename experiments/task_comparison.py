"""One multi-label model vs three binary ones, and serum potassium as a number, on the same folds.

    .venv/bin/python experiments/task_comparison.py [--scales 1 5] [--folds 5] [--epochs 40]
        [--model cnn1d] [--out experiments/results] [key=value ...]

For each cohort scale (Table 1 × scale), every task runs ecgml's own cross-validation
(``python -m ecgml.train split=group_kfold split.shared_folds=true …``, MLflow into a temporary
store): the three binary models (``task=binary disorder=…``), one ``task=multilabel`` model and
one ``task=potassium`` regression. ``split.shared_folds=true`` draws the folds over every
patient of the cohort, so each patient is tested in the same fold by every task.

From the pooled out-of-fold test predictions, patient level (mean over a patient's beats), for
each disorder on that disorder's and the normal patients (the binary models' population):

* AUROC of the binary model, of the multi-label model's output, and — for hyper/hypokalemia — of
  the potassium estimate (higher / lower), with one patient-level stratified bootstrap (2,000
  resamples, shared: differences are paired);
* the **oracle**: a logistic regression (a ridge regression for potassium) on the generator's
  true per-patient morphology (``patients.csv``, as in ``experiments/limit_gap.py``), fitted on
  the other folds' patients only.

Potassium: MAE / RMSE / Pearson r of the estimate with CIs, beside the oracle's.
Writes ``task_comparison.md`` and ``task_comparison.csv`` into ``--out``.

``--leads I II all`` compares instead the leads a record model reads (the anchors' lead I vs
12 leads, e.g. Pocket-K): the 12-lead cohort (``data.cohort.twelve_lead=true``), one binary
``set_cnn1d`` record model per disorder and lead set (``data.unit=record data.leads=…``), the
same folds for every lead set; patient-level AUROC with CIs and each set's paired difference to
12 leads (one shared bootstrap). Writes ``task_comparison_leads.md`` / ``.csv``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgml import CONF_DIR, DISORDERS, PROJECT_ROOT
from ecgml.data.datamodule import load_store
from ecgml.evaluation.bootstrap import bootstrap_auroc, patient_bootstrap_indices
from ecgml.evaluation.intervals import percentile_interval
from ecgml.pipeline.crossval import cross_validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from limit_gap import oracle_features

N_BOOTSTRAP = 2000


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def run_task(
    task_overrides: list[str],
    args: argparse.Namespace,
    scale: float,
    store_uri: str,
    model: str | None = None,
) -> pd.DataFrame:
    """Pooled out-of-fold predictions of one cross-validated task (the product's code path)."""
    overrides = [
        *task_overrides,
        f"model={model or args.model}",
        "split=group_kfold",
        "split.shared_folds=true",
        f"split.n_splits={args.folds}",
        f"data.cohort.scale={scale}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "explain.enabled=false",
        "evaluation.n_bootstrap=200",
        "training.log_model=false",
        f"logger.tracking_uri={store_uri}",
        *args.overrides,
    ]
    start = time.perf_counter()
    result = cross_validate(compose_cfg(overrides))
    print(f"  {' '.join(task_overrides)}: {time.perf_counter() - start:.0f} s", flush=True)
    pooled = result.predictions
    return pooled[pooled["split"] == "test"]


def patient_means(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per test patient: its group, fold and the mean of ``columns`` over its beats."""
    grouped = frame.groupby("patient_id")
    out = grouped[["group", "fold"]].first()
    return out.join(grouped[columns].mean())


def oracle_scores(features: pd.DataFrame, patients: pd.DataFrame, disorder: str) -> pd.Series:
    """Out-of-fold oracle probability of ``disorder`` vs normal, fitted per fold."""
    sub = patients[patients["group"].isin([disorder, "normal"])]
    y = (sub["group"] == disorder).astype(int)
    scores = pd.Series(np.nan, index=sub.index)
    for fold in sub["fold"].unique():
        train, test = sub.index[sub["fold"] != fold], sub.index[sub["fold"] == fold]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(features.loc[train], y.loc[train])
        scores.loc[test] = model.predict_proba(features.loc[test])[:, 1]
    return scores


def oracle_potassium(
    features: pd.DataFrame, patients: pd.DataFrame, values: pd.Series
) -> pd.Series:
    """Out-of-fold ridge estimate of serum potassium from the true morphology."""
    estimate = pd.Series(np.nan, index=patients.index)
    for fold in patients["fold"].unique():
        train = patients.index[patients["fold"] != fold]
        test = patients.index[patients["fold"] == fold]
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        model.fit(features.loc[train], values.loc[train])
        estimate.loc[test] = model.predict(features.loc[test])
    return estimate


def auroc_ci(plan, ids: np.ndarray, y: np.ndarray, score: np.ndarray) -> tuple[float, ...]:
    scaled = (pd.Series(score).rank().to_numpy() - 0.5) / len(score)
    point = float(roc_auc_score(y, scaled))
    low, high = percentile_interval(bootstrap_auroc(plan, ids, y, scaled), 0.95, "auroc")
    return point, low, high


def compare_scale(scale: float, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Every task at one cohort scale: per-disorder AUROC rows and the potassium figures."""
    store_uri = f"sqlite:///{tempfile.mkdtemp(prefix='ecgml-tasks-')}/mlflow.db"
    print(f"scale {scale}:", flush=True)
    binary = {d: run_task([f"disorder={d}"], args, scale, store_uri) for d in DISORDERS}
    multi = run_task(["task=multilabel"], args, scale, store_uri)
    potassium = run_task(["task=potassium"], args, scale, store_uri)
    cfg = compose_cfg([f"data.cohort.scale={scale}"])
    truth = pd.read_csv(load_store(cfg).root.parent / "patients.csv")
    features = oracle_features(truth)
    multi_p = patient_means(multi, [f"y_prob_{d}" for d in DISORDERS])
    k_p = patient_means(potassium, ["y_true", "y_pred"])
    rows = []
    for d in DISORDERS:
        bin_p = patient_means(binary[d], ["y_prob"])
        ids = bin_p.index.to_numpy().astype(str)
        y = (bin_p["group"] == d).to_numpy(int)
        plan = patient_bootstrap_indices(ids, y, N_BOOTSTRAP, seed=0)
        row = {"scale": scale, "disorder": d, "n_patients": len(ids), "n_positive": int(y.sum())}
        scores = {
            "binary": bin_p["y_prob"],
            "multilabel": multi_p.loc[bin_p.index, f"y_prob_{d}"],
            "oracle": oracle_scores(features, bin_p, d),
        }
        if d in ("hyperkalemia", "hypokalemia"):
            sign = 1.0 if d == "hyperkalemia" else -1.0
            scores["potassium"] = sign * k_p.reindex(bin_p.index)["y_pred"]
        for name, score in scores.items():
            if score.isna().any():
                continue
            point, low, high = auroc_ci(plan, ids, y, score.to_numpy(float))
            row.update({name: point, f"{name}_low": low, f"{name}_high": high})
        rows.append(row)
    k_truth = truth.set_index(truth["patient_id"].astype(str))["potassium_mmol_l"]
    oracle_k = oracle_potassium(features, k_p, k_truth.loc[k_p.index])
    k_row = {
        "scale": scale,
        **regression_figures(k_p, k_p["y_pred"], "model"),
        **regression_figures(k_p, oracle_k, "oracle"),
    }
    return rows, k_row


def regression_figures(patients: pd.DataFrame, estimate: pd.Series, name: str) -> dict:
    """MAE, RMSE, r of a patient-level estimate, with patient bootstrap CIs (seeded)."""
    truth = patients["y_true"].to_numpy(float)
    est = estimate.loc[patients.index].to_numpy(float)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, truth.size, size=(N_BOOTSTRAP, truth.size))
    errors = est[draws] - truth[draws]
    mae, rmse = np.abs(errors).mean(axis=1), np.sqrt((errors**2).mean(axis=1))
    r = np.array([np.corrcoef(truth[i], est[i])[0, 1] for i in draws])
    out = {}
    for key, dist, point in (
        ("mae", mae, np.abs(est - truth).mean()),
        ("rmse", rmse, np.sqrt(((est - truth) ** 2).mean())),
        ("r", r, np.corrcoef(truth, est)[0, 1]),
    ):
        low, high = np.quantile(dist, [0.025, 0.975])
        out.update(
            {
                f"{name}_{key}": float(point),
                f"{name}_{key}_low": float(low),
                f"{name}_{key}_high": float(high),
            }
        )
    return out


def cell(row: pd.Series | dict, name: str) -> str:
    value = row.get(name, np.nan)
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.3f} ({row[f'{name}_low']:.3f}–{row[f'{name}_high']:.3f})"


def lead_setting(leads: str) -> str:
    """``data.leads`` for ``--leads`` names: ``all`` (12 leads) or one lead, e.g. ``[I]``."""
    return "data.leads=all" if leads == "all" else f"data.leads=[{leads}]"


def compare_leads(scale: float, args: argparse.Namespace) -> list[dict]:
    """Per disorder, the record model on each lead set: AUROC (95% CI) and the paired
    difference to 12 leads, every set on the same folds and one shared bootstrap."""
    store_uri = f"sqlite:///{tempfile.mkdtemp(prefix='ecgml-leads-')}/mlflow.db"
    print(f"scale {scale}, leads {args.leads}:", flush=True)
    common = ["data.cohort.twelve_lead=true", "data.unit=record"]
    rows = []
    for d in DISORDERS:
        scores = {}
        for leads in args.leads:
            overrides = [f"disorder={d}", *common, lead_setting(leads)]
            frame = run_task(overrides, args, scale, store_uri, model="set_cnn1d")
            scores[leads] = patient_means(frame, ["y_prob"])
        first = next(iter(scores.values()))
        ids = first.index.to_numpy().astype(str)
        y = (first["group"] == d).to_numpy(int)
        plan = patient_bootstrap_indices(ids, y, N_BOOTSTRAP, seed=0)
        row = {"scale": scale, "disorder": d, "n_patients": len(ids), "n_positive": int(y.sum())}
        draws = {}
        for leads, patients in scores.items():
            score = patients.loc[first.index, "y_prob"].to_numpy(float)
            scaled = (pd.Series(score).rank().to_numpy() - 0.5) / len(score)
            draws[leads] = bootstrap_auroc(plan, ids, y, scaled)
            point, low, high = auroc_ci(plan, ids, y, score)
            row.update({leads: point, f"{leads}_low": low, f"{leads}_high": high})
        if "all" in draws:
            for leads in scores:
                if leads != "all":
                    diff = draws[leads] - draws["all"]
                    low, high = percentile_interval(diff, 0.95, "difference")
                    row.update(
                        {
                            f"{leads}-all": row[leads] - row["all"],
                            f"{leads}-all_low": low,
                            f"{leads}-all_high": high,
                        }
                    )
        rows.append(row)
    return rows


def leads_markdown(rows: pd.DataFrame, args: argparse.Namespace) -> str:
    names = {"all": "12 leads"}
    header = [names.get(lead, f"lead {lead}") for lead in args.leads]
    diffs = [lead for lead in args.leads if lead != "all" and "all" in args.leads]
    lines = [
        f"Record model (`set_cnn1d`) by the leads it reads: patient-level AUROC (95% CI), pooled "
        f"{args.folds}-fold out-of-fold, the same folds for every lead set; each disorder vs "
        "normal patients; differences to 12 leads paired (one bootstrap).",
        "",
        "| scale | disorder | "
        + " | ".join(header)
        + "".join(f" | {names.get(d, f'lead {d}')} − 12 leads" for d in diffs)
        + " |",
        "|---|---|" + "---|" * (len(header) + len(diffs)),
    ]
    for _, r in rows.iterrows():
        cells = [cell(r, lead) for lead in args.leads]
        cells += [cell(r, f"{lead}-all") for lead in diffs]
        lines.append(f"| {r['scale']:g} | {r['disorder']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: pd.DataFrame, k_rows: pd.DataFrame, args: argparse.Namespace) -> str:
    lines = [
        f"Patient-level AUROC (95% CI), pooled {args.folds}-fold out-of-fold, same folds for "
        "every task (`split.shared_folds=true`); each disorder vs normal patients.",
        "",
        "| scale | disorder | binary | multi-label | multi − binary | potassium estimate "
        "| oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in rows.iterrows():
        diff = r.get("multilabel", np.nan) - r.get("binary", np.nan)
        lines.append(
            f"| {r['scale']:g} | {r['disorder']} | {cell(r, 'binary')} | {cell(r, 'multilabel')}"
            f" | {diff:+.3f} | {cell(r, 'potassium')} | {cell(r, 'oracle')} |"
        )
    lines += [
        "",
        "Serum potassium, patient level (mean estimate over a patient's beats):",
        "",
        "| scale | | MAE (mmol/L) | RMSE | Pearson r |",
        "|---|---|---|---|---|",
    ]
    for _, k in k_rows.iterrows():
        for name in ("model", "oracle"):
            lines.append(
                f"| {k['scale']:g} | {name} | {cell(k, f'{name}_mae')} | "
                f"{cell(k, f'{name}_rmse')} | {cell(k, f'{name}_r')} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "experiments" / "results")
    parser.add_argument("--leads", nargs="*", default=None, help="compare leads: e.g. I II all")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    if args.leads:
        lead_rows = [row for scale in args.scales for row in compare_leads(scale, args)]
        leads_table = pd.DataFrame(lead_rows)
        args.out.mkdir(parents=True, exist_ok=True)
        leads_table.to_csv(args.out / "task_comparison_leads.csv", index=False)
        text = leads_markdown(leads_table, args)
        (args.out / "task_comparison_leads.md").write_text(text, encoding="utf-8")
        print(text)
        return
    rows, k_rows = [], []
    for scale in args.scales:
        found, k_row = compare_scale(scale, args)
        rows += found
        k_rows.append(k_row)
    table, k_table = pd.DataFrame(rows), pd.DataFrame(k_rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "task_comparison.csv", index=False)
    k_table.to_csv(args.out / "task_comparison_potassium.csv", index=False)
    text = markdown(table, k_table, args)
    (args.out / "task_comparison.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
