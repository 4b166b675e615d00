"""``python -m ecgml.explain run_id=<id> [method=…]``: the saliency analysis for an old run.

Reads the run's ``config.yaml``, ``predictions.csv`` and best checkpoint from MLflow, rebuilds the
(cached) beat table and the model, runs :func:`~ecgml.explain.explain_model` on the test beats
and logs its artifacts back to that run under ``explain_runs/<method>/`` (its statistics as
``stats.csv``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml.cli import hydra_entry
from ecgml.data.datamodule import load_table
from ecgml.errors import EcgmlError
from ecgml.explain import as_dict, explain_model
from ecgml.pipeline.fitters import build_model
from ecgml.tracking import check_store
from ecgml.tracking.artifacts import fetch_run, log_folder, required_artifact
from ecgml.trust import read_stored_config

log = logging.getLogger("ecgml.explain")


def download(client: MlflowClient, run_id: str, path: str, into: Path) -> Path:
    why = "only runs of ecgml.train (with training.log_checkpoint=true) can be explained again"
    return required_artifact(client, run_id, path, into, why)


def checkpoint_path(client: MlflowClient, run_id: str) -> str:
    """``checkpoints/best.ckpt``, else the run's only/first checkpoint artifact."""
    try:
        files = [f.path for f in client.list_artifacts(run_id, "checkpoints")]
    except MlflowException:
        files = []
    ckpts = sorted(f for f in files if f.endswith(".ckpt"))
    if "checkpoints/best.ckpt" in ckpts:
        return "checkpoints/best.ckpt"
    return ckpts[0] if ckpts else "checkpoints/best.ckpt"


def load_model(run_cfg: DictConfig, seq_len: int, checkpoint: Path) -> torch.nn.Module:
    model = build_model(run_cfg, seq_len, pos_weight=0.0, pretrained=False)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as err:
        raise EcgmlError(
            f"{checkpoint.name} does not fit the run's model {run_cfg.model.name!r}: "
            f"{str(err).splitlines()[0]}"
        ) from None
    return model.eval()


def test_predictions(predictions: pd.DataFrame, beat_ids: pd.Series, run_id: str) -> pd.DataFrame:
    """The run's test predictions in the order of the rebuilt table's test beats."""
    test = predictions[predictions["split"] == "test"].drop_duplicates("beat_id")
    missing = set(beat_ids) - set(test["beat_id"])
    if missing or len(test) != len(beat_ids):
        raise EcgmlError(
            f"run {run_id}: the rebuilt test split ({len(beat_ids)} beats) does not match "
            f"its predictions.csv ({len(test)} test beats, {len(missing)} missing): the data "
            "changed since the run; retrain instead"
        )
    return test.set_index("beat_id").loc[list(beat_ids)].reset_index()


def explain_run(cfg: DictConfig, out_dir: Path | None = None) -> dict[str, float]:
    """Recompute and (``log_to_run``) log the explain artifacts of ``cfg.run_id``."""
    if not cfg.run_id:
        raise EcgmlError("no run given: pass run_id=<id> (printed by ecgml.train as `run_id: …`)")
    explain_cfg = as_dict(cfg)
    run_id = str(cfg.run_id)
    uri = check_store(cfg.tracking_uri).tracking_uri
    client = MlflowClient(uri)
    run = fetch_run(client, run_id, uri)
    with tempfile.TemporaryDirectory(prefix="ecgml-explain-") as tmp:
        tmp_dir = Path(tmp)
        stored = download(client, run_id, "config.yaml", tmp_dir)
        run_cfg = read_stored_config(stored, f"run {run_id}")
        predictions = pd.read_csv(
            download(client, run_id, "predictions.csv", tmp_dir), dtype={"patient_id": str}
        )
        checkpoint = download(client, run_id, checkpoint_path(client, run_id), tmp_dir)
        table = load_table(run_cfg)
        digest = run.data.tags.get("dataset.digest")
        if digest and digest != table.digest:
            log.warning("dataset digest %s differs from the run's %s", table.digest, digest)
        model = load_model(run_cfg, table.seq_len, checkpoint)
    beats, meta = table.subset("test")
    preds = test_predictions(predictions, meta["beat_id"], run_id)
    out = Path(out_dir) if out_dir else Path(str(cfg.paths.output_dir)) / "explain"
    metrics = explain_model(model, beats, preds, table.fs, table.r_index, explain_cfg, out)
    if cfg.log_to_run:  # beside the training run's own explain/, never over it
        log_folder(client, run_id, out, under=rerun_folder(cfg))
    return metrics


def rerun_folder(cfg: DictConfig) -> str:
    """Where a re-explanation goes in the run: ``explain_runs/<method>`` (its artifacts, its
    statistics in ``stats.csv``), so the training run's own ``explain/`` stays as it was
    logged."""
    return f"explain_runs/{cfg.method}"


def format_summary(cfg: DictConfig, metrics: dict[str, float], out: Path) -> str:
    def value(key: str, fmt: str = ".1f") -> str:
        v = metrics.get(f"explain/{key}", np.nan)
        return format(v, fmt) if np.isfinite(v) else "n/a"

    logged = f"logged to the run under {rerun_folder(cfg)}/" if cfg.log_to_run else "not logged"
    return "\n".join(
        [
            f"ecgml explain: run {cfg.run_id}, method {cfg.method}, "
            f"{int(metrics.get('explain/n_beats', 0))} test beats ({logged})",
            f"  peak ms from R  positive {value('peak_ms_positive_mean')} ± "
            f"{value('peak_ms_positive_sd')}, negative {value('peak_ms_negative_mean')} ± "
            f"{value('peak_ms_negative_sd')} (shift {value('shift_ms', '+.1f')} ms)",
            f"  T-region share  positive {value('t_region_fraction_positive', '.2f')}, "
            f"negative {value('t_region_fraction_negative', '.2f')}",
            f"  p: ANOVA {value('anova_p', '.3g')}, Kruskal–Wallis {value('kruskal_p', '.3g')}, "
            f"Levene {value('levene_p', '.3g')}; randomized-weights similarity "
            f"{value('sanity_similarity', '.2f')}",
            f"  files: {out}",
            *_failed_sanity(cfg, metrics),
        ]
    )


def _failed_sanity(cfg: DictConfig, metrics: dict[str, float]) -> list[str]:
    """A loud line when the randomized-weights check failed (nothing when it passed)."""
    if metrics.get("explain/sanity_passed") != 0.0:
        return []
    limit = OmegaConf.select(cfg, "sanity.max_similarity", default=0.5)
    similarity = metrics.get("explain/sanity_similarity", float("nan"))
    return [
        f"  SANITY CHECK FAILED: randomized-weights similarity {similarity:.2f} (a pass requires "
        f"< {limit:g}): the focus above may reflect the input, not the model; do not report it"
    ]


def explain(cfg: DictConfig) -> None:
    out = Path(str(cfg.paths.output_dir)) / "explain"
    metrics = explain_run(cfg, out)
    print(format_summary(cfg, metrics, out), flush=True)


main = hydra_entry("explain")(explain)
