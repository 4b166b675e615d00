"""Benchmark team scale (issue 16 item 7): sweep throughput by study storage and worker count,
and DDP (2 gloo processes) against one process, on this machine.

    .venv/bin/python experiments/bench_scale.py [--n-trials 4] [--epochs 2] [--skip-pg]

- Sweeps: ``python -m ecgml.train -m hparams_search=cnn1d`` on the default synthetic cohort
  (hypokalemia), light trials (``--epochs`` epochs, no bootstrap figures beyond 50 resamples),
  a random sampler; one study of ``--n-trials`` in a sqlite file or a PostgreSQL database
  (a throwaway server, tests/pg.py), fed by 1 worker or 2 workers started together. Trials per
  minute = completed trials / wall time from the first start to the last exit (process start-up
  included: that is what a user waits for).
- DDP: the main job with ``trainer=cpu`` and ``trainer=ddp_cpu`` (``--ddp-epochs`` epochs);
  the epoch time is the median gap between consecutive ``val/auroc`` logs of the run.

Prints a markdown table for the README.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from ecgml import PROJECT_ROOT

STUDY = "bench-scale"


def sweep_cmd(folder: Path, storage: str, n_trials: int, epochs: int, tag: str) -> list[str]:
    return [
        *(sys.executable, "-m", "ecgml.train", "-m", "hparams_search=cnn1d"),
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={STUDY}",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.pruner.name=none",
        f"trainer.max_epochs={epochs}",
        "evaluation.n_bootstrap=50",
        f"hydra.sweep.dir={folder / tag}",
    ]


def run_sweep(storage: str, workers: int, n_trials: int, epochs: int, folder: Path) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            sweep_cmd(folder, storage, n_trials, epochs, f"w{k}"),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    errors = [p.communicate(timeout=1800)[1] for p in procs]
    wall = time.perf_counter() - start
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"sweep worker failed:\n{err[-3000:]}")
    study = optuna.load_study(study_name=STUDY, storage=storage)
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    return {"wall_s": wall, "trials": len(done), "per_min": 60.0 * len(done) / wall}


def epoch_time(trainer: str, epochs: int, folder: Path, threads: int | None = None) -> dict:
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    cmd = [
        *(sys.executable, "-m", "ecgml.train", f"trainer={trainer}"),
        *(f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false"),
        *("explain.enabled=false", "evaluation.n_bootstrap=50", "callbacks=final"),
        f"hydra.run.dir={folder / trainer}",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    run_id = done.stdout.strip().splitlines()[-1].split()[-1]
    client = MlflowClient(uri)
    history = sorted(m.timestamp for m in client.get_metric_history(run_id, "val/auroc"))
    gaps = [(b - a) / 1000.0 for a, b in itertools.pairwise(history)]
    metrics = client.get_run(run_id).data.metrics
    return {
        "epoch_s": statistics.median(gaps) if gaps else float("nan"),
        "wall_s": wall,
        "test_auroc": metrics.get("test/auroc", float("nan")),
        "val_auroc": metrics.get("val/auroc", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ddp-epochs", type=int, default=5)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()

    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ecgml-bench-scale-") as tmp:
        root = Path(tmp)
        if not args.skip_sweeps:
            server = None
            if not args.skip_pg:
                sys.path.insert(0, str(PROJECT_ROOT))  # the test suite's throwaway server
                from tests.pg import find_bin_dir, start_server

                bin_dir = find_bin_dir()
                server = start_server(bin_dir) if bin_dir else None
            try:
                backends = [("sqlite", lambda k: f"sqlite:///{root / f'optuna-{k}.db'}")]
                if server is not None:
                    backends.append(("PostgreSQL", lambda k: server.create_database(f"bench{k}")))
                for name, storage_for in backends:
                    for workers in (1, 2):
                        key = f"{name.lower()}{workers}"
                        result = run_sweep(
                            storage_for(key), workers, args.n_trials, args.epochs, root / key
                        )
                        rows.append(
                            f"| sweep, {name} study, {workers} worker(s) | {result['trials']} "
                            f"trials in {result['wall_s']:.0f} s | **{result['per_min']:.1f} "
                            "trials/min** |"
                        )
                        print(rows[-1], flush=True)
            finally:
                if server is not None:
                    server.stop()
        # Lightning gives each CPU DDP rank cpu_count // 2 torch threads (1 here); the single
        # process runs with torch's default (every core) and with 1 thread
        for trainer, threads, label in (
            ("cpu", None, "1 process, default threads"),
            ("cpu", 1, "1 process, OMP_NUM_THREADS=1"),
            ("ddp_cpu", None, "DDP, 2 gloo processes"),
        ):
            result = epoch_time(
                trainer, args.ddp_epochs, root / f"ddp-{trainer}-{threads}", threads
            )
            rows.append(
                f"| main job, trainer={trainer} ({label}), {args.ddp_epochs} epochs | "
                f"{result['wall_s']:.0f} s wall, test AUROC {result['test_auroc']:.3f} | "
                f"**{result['epoch_s']:.2f} s/epoch** |"
            )
            print(rows[-1], flush=True)

    print("\n| What | Measured | Rate |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
