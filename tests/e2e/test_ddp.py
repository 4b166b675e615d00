"""``trainer=ddp_cpu`` (issue 16 item 5): two gloo processes train one model into one MLflow run;
validation AUROC gathers both ranks' beats; the checkpoint loads in one process; inside a sweep
every rank trains the trial's parameters (lightning-hydra-template #639)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as L
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ecgml import PROJECT_ROOT
from tests.unit.sweep.test_sweep import run_sweep, sweep_command, sweep_runs, write_search

pytestmark = pytest.mark.slow
TOY_BEAT_LENGTH = 150  # tests.fakes.write_toy_store's beats


class RankProbe(L.Callback):
    """Writes what each rank sees (its learning rate, its validation beats, the synced AUROC)
    to ``<folder>/<pid>-rank<k>.json``. Spawned ranks get a pickled copy of it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.epochs: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric = pl_module.val_auroc
        local = int(sum(p.numel() for p in metric.preds))  # this rank's beats, before the sync
        synced = float(metric.compute())  # a collective: every rank calls it
        self.epochs.append({"local_beats": local, "auroc": synced})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        group = trainer.optimizers[0].param_groups[0]
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "lr": group.get("initial_lr", group["lr"]),  # before any scheduler step
            "epochs": self.epochs,
        }
        path = Path(self.folder) / f"{os.getpid()}-rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))


def defined_keys(metrics: dict[str, float]) -> set[str]:
    """Metric keys bar the calibration slope, which is left out where a run's test scores
    separate the classes perfectly (undefined there): one of two toy models may, the other not."""
    return {k for k in metrics if "calibration_slope" not in k}


def probes(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def probe_overrides(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        f"+callbacks.rank_probe._target_={__name__}.RankProbe",
        f"+callbacks.rank_probe.folder={folder}",
    ]


def test_ddp_cpu_trains_one_run_like_a_single_process(
    trained_run, toy_store: Path, tmp_path: Path
) -> None:
    single_cfg, single = trained_run
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    folder = tmp_path / "probe"
    cmd = [
        *(sys.executable, "-m", "ecgml.train", "trainer=ddp_cpu"),
        *("data=beats", f"data.path={toy_store}", f"paths.cache_dir={tmp_path / 'cache'}"),
        *("disorder=hyperkalemia", "trainer.max_epochs=6", "trainer.enable_progress_bar=false"),
        *("data.batch_size=16", "evaluation.n_bootstrap=200", f"hydra.run.dir={tmp_path / 'out'}"),
        *probe_overrides(folder),
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    done = subprocess.run(
        cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1  # rank 1 opened no run of its own
    run = runs[0]
    assert run.info.status == "FINISHED"
    reference = MlflowClient(single_cfg.logger.tracking_uri).get_run(single.run_id)
    assert defined_keys(run.data.metrics) == defined_keys(reference.data.metrics)
    # two ranks see half the beats per step each, so weights differ; the toy effect is clear
    assert run.data.metrics["test/auroc"] == pytest.approx(single.metrics["test/auroc"], abs=0.05)

    ranks = probes(folder)
    assert sorted(r["rank"] for r in ranks) == [0, 1] and {r["world_size"] for r in ranks} == {2}
    last = [r["epochs"][-1] for r in ranks]
    n_val = int((single.predictions["split"] == "val").sum())
    assert all(0 < e["local_beats"] < n_val for e in last)  # each rank scored part of them
    assert sum(e["local_beats"] for e in last) >= n_val  # together all (sampler pads to even)
    logged = client.get_metric_history(run.info.run_id, "val/auroc")[-1].value
    assert last[0]["auroc"] == last[1]["auroc"] == pytest.approx(logged)

    # the checkpoint loads in one plain process
    from ecgml.pipeline.fitters import build_model

    ckpt = Path(client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(tmp_path)))
    run_cfg = OmegaConf.load(
        client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    )
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    seq_len = TOY_BEAT_LENGTH
    model = build_model(run_cfg, seq_len, 1.0)  # any pos_weight: the checkpoint holds its own
    model.load_state_dict(state)
    with torch.inference_mode():
        assert model.eval()(torch.zeros(3, 1, seq_len)).shape == (3,)


def test_every_rank_of_a_sweep_trial_trains_its_parameters(tmp_path: Path, toy_store: Path) -> None:
    conf = write_search(tmp_path, "ddp", n_trials=2, epochs=2)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    folder = tmp_path / "probe"
    cmd = sweep_command(
        conf,
        "ddp",
        toy_store,
        tmp_path,
        "trainer=ddp_cpu",
        f"hydra.sweeper.storage={storage}",
        *probe_overrides(folder),
    )
    done = run_sweep(cmd, uri)
    assert done.returncode == 0, done.stderr[-3000:]

    study = optuna.load_study(study_name="test-study", storage=storage)
    sampled = sorted(t.params["model.optimizer.lr"] for t in study.trials)
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    ranks = probes(folder)
    assert len(ranks) == 4
    for lr in sampled:  # each trial: both ranks trained with its learning rate
        assert sorted(r["rank"] for r in ranks if r["lr"] == pytest.approx(lr)) == [0, 1]
    parents, children = sweep_runs(uri)
    assert len(parents) == 1 and len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    logged = sorted(float(c.data.params["model.optimizer.lr"]) for c in children)
    assert logged == pytest.approx(sampled)
