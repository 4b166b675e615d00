"""Benchmark: how each data stage's cost grows with the number of records, on this machine.

    .venv/bin/python experiments/bench_scale_data.py [--sizes 1000 10000] [--generate 1000 2000]
        [--out experiments/results/scale_data]

Stages, each run in its own process (wall time, records/s and that process's peak RSS):

- ``generate``: ``ecgml.synth`` with ``images=false signal_csvs=false`` (lead II, the packed
  store only, 2 workers) at ``--generate`` patients (one 10 s record each);
- ``write_csv``: a CSV record store of N records (the default cohort's 441 signal CSVs
  repeated under new ids: the CSV format, the input of ``pack``);
- ``pack``: ``ecgml.pack``'s conversion of that store (int16) — and its bytes per record;
- ``open``: loading the packed store (``load_record_store``: index, checks, every record);
- ``cut``: the record table (R-peaks and beats of every record, labels, split), the first
  time (the cut beats are then cached: the later stages read them back memory-mapped);
- ``loader``: four passes of the record unit's training loader (its DataModule and batch size,
  ``data.num_workers=2``, persistent workers, no model): records/s of the first pass (starting
  the workers) and the median of the other three; the stage's time includes building the table;
- ``train_epoch``: one training epoch of the default record model (records/s of the fit only);
- ``evaluate``: the end-of-run evaluation with every bootstrap and figure, on N test records
  (one per patient) and N/4 validation records of a separable score.

Prints a markdown table, the log-log slope of each stage between the sizes, and writes
``results.csv`` and ``scale.png`` into ``--out``. The machine is shared: read times as upper
bounds, the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("write_csv", "pack", "open", "cut", "loader", "train_epoch", "evaluate")


# --------------------------------------------------------------------------- the stages


def stage_generate(work: Path, n: int) -> dict[str, Any]:
    from ecgml.cli.synth import generator_config
    from ecgml.synth import build_cohort
    from tests.conftest import compose_once

    cohort = generator_config(compose_once(name="synth"))
    scale = n / sum(int(v) for v in cohort["groups"].values())
    cohort.update(images=False, signal_csvs=False, scale=scale)
    folder = build_cohort(cohort, work / f"cohort{n}", progress=False, n_jobs=2)
    return {"records": len(pd.read_csv(folder / "records.csv"))}


def stage_write_csv(work: Path, n: int) -> dict[str, Any]:
    """N records as a CSV record store (the base cohort's CSVs copied under new ids)."""
    base = _base_cohort(work)
    table = pd.read_csv(base / "records.csv", dtype={"patient_id": str, "record_id": str})
    table = table.drop(columns="packed_row", errors="ignore")
    store = work / f"csv{n}"
    shutil.rmtree(store, ignore_errors=True)
    (store / "signals").mkdir(parents=True)
    rows = table.iloc[np.arange(n) % len(table)].reset_index(drop=True)
    ids = [f"R{k:06d}" for k in range(n)]
    for k, source in enumerate(rows["record_file"]):
        shutil.copyfile(base / source, store / "signals" / f"{ids[k]}.csv")
    rows = rows.assign(record_file=[f"signals/{i}.csv" for i in ids], record_id=ids, patient_id=ids)
    rows.to_csv(store / "records.csv", index=False)
    return {"records": n, "csv_bytes_per_record": _bytes(store / "signals") / n}


def stage_pack(work: Path, n: int) -> dict[str, Any]:
    from ecgml.cli.pack import pack_record_store

    store = work / f"packed{n}"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(work / f"csv{n}", store)
    done = pack_record_store(store, "int16")
    assert done is not None
    return {
        "records": done.rows,
        "packed_bytes_per_record": done.packed_bytes / done.rows,
        "packed_share_of_csv": done.packed_bytes / done.csv_bytes,
    }


def stage_open(work: Path, n: int) -> dict[str, Any]:
    from ecgml.recordstore import load_record_store

    return {"records": len(load_record_store(work / f"packed{n}"))}


def _record_table(work: Path, n: int, *overrides: str) -> Any:
    from ecgml.data.records import build_record_table
    from ecgml.data.tasks import task_spec
    from ecgml.recordstore import load_record_store
    from tests.conftest import compose_once

    cfg = compose_once(
        "data=records",
        f"data.path={work / f'packed{n}'}",
        f"data.cache_dir={work / 'cache'}",
        "disorder=hypokalemia",
        *overrides,
    )
    store = load_record_store(work / f"packed{n}")
    return cfg, build_record_table(store, cfg.disorder, cfg.split, cfg.data, task_spec(cfg))


def stage_cut(work: Path, n: int) -> dict[str, Any]:
    _, table = _record_table(work, n)
    return {"records": len(table.meta)}


def stage_loader(work: Path, n: int) -> dict[str, Any]:
    """The training loader of the record unit's own DataModule (the training batch size),
    with ``data.num_workers=2``."""
    from ecgml.pipeline.units import run_unit

    cfg, table = _record_table(work, n, "data.num_workers=2")
    module = run_unit(cfg).datamodule(cfg, table, 0)
    loader = module.train_dataloader()  # persistent workers, as in training
    rates = []
    for _ in range(4):  # the first pass starts the workers, then the steady state
        started, seen = time.perf_counter(), 0
        for _, y in loader:
            seen += len(y)
        rates.append(seen / (time.perf_counter() - started))
    return {
        "records": seen,
        "loader_first_pass_per_s": rates[0],
        "loader_records_per_s": float(np.median(rates[1:])),
    }


def stage_train_epoch(work: Path, n: int) -> dict[str, Any]:
    """One training epoch of the default record model (``set_cnn1d``) on the training split,
    no validation: the speed the loader has to outrun."""
    import lightning.pytorch as L

    from ecgml.pipeline.units import run_unit

    cfg, table = _record_table(work, n)
    unit = run_unit(cfg)
    data = unit.datamodule(cfg, table, 0)
    model = unit.network(cfg, table, data)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    trainer.fit(model, data)
    seen = len(table.rows("train"))
    return {"records": seen, "train_records_per_s": seen / (time.perf_counter() - started)}


def stage_evaluate(work: Path, n: int) -> dict[str, Any]:
    from ecgml.evaluation import evaluate_with_config
    from tests.conftest import compose_once

    rng = np.random.default_rng(0)
    frames = []
    for split, size in (("val", n // 4), ("test", n)):
        y = (rng.random(size) < 0.3).astype(int)
        score = np.where(y > 0, rng.normal(1.2, 1, size), rng.normal(0, 1, size))
        frames.append(
            pd.DataFrame(
                {
                    "patient_id": [f"{split}{k}" for k in range(size)],
                    "beat_id": [f"{split}b{k}" for k in range(size)],
                    "split": split,
                    "y_true": y,
                    "y_prob": 1 / (1 + np.exp(-score)),
                    "group": np.where(y > 0, "hypokalemia", "normal"),
                    "center": rng.choice([f"C{k:02d}" for k in range(17)], size),
                    "device": rng.choice(["nihon_kohden", "mindray"], size),
                }
            )
        )
    cfg = compose_once()
    out = work / f"evaluation{n}"
    evaluate_with_config(pd.concat(frames, ignore_index=True), cfg.evaluation, out_dir=out)
    return {"records": n}


def _base_cohort(work: Path) -> Path:
    """The default cohort (441 records) with its signal CSVs: what ``write_csv`` repeats."""
    from ecgml.cli.synth import generator_config
    from ecgml.synth import build_cohort
    from tests.conftest import compose_once

    cohort = generator_config(compose_once(name="synth"))
    cohort.update(images=False)
    return build_cohort(cohort, work / "base", progress=False, n_jobs=2)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- driver


def run_stage(stage: str, work: Path, n: int) -> dict[str, Any]:
    """One stage in a fresh process: its wall time and peak RSS are its own."""
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--n", str(n), "--work", str(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{stage} at {n}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(stage: str, work: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import ecgml.cli.pack  # imports are not the stage's cost
    import ecgml.data.records
    import ecgml.evaluation.predictions
    import ecgml.synth  # noqa: F401
    import tests.conftest  # noqa: F401

    started = time.perf_counter()
    result = globals()[f"stage_{stage}"](work, n)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "n": n, "seconds": seconds, "peak_rss_mb": rss_mb, **result}))


def slopes(frame: pd.DataFrame) -> dict[str, float]:
    """Each stage's log-log slope of seconds against records between its smallest and largest
    size (1: linear)."""
    out = {}
    for stage, rows in frame.groupby("stage"):
        rows = rows.sort_values("n")
        if len(rows) >= 2 and rows["seconds"].min() > 0:
            first, last = rows.iloc[0], rows.iloc[-1]
            out[str(stage)] = float(np.log(last.seconds / first.seconds) / np.log(last.n / first.n))
    return out


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=150)
    for stage, rows in frame.groupby("stage"):
        rows = rows.sort_values("n")
        ax.loglog(rows["n"], rows["seconds"], marker="o", label=str(stage))
    ax.set_xlabel("records")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(frame: pd.DataFrame) -> str:
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in frame.values]
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--generate", type=int, nargs="*", default=[1000, 2000])
    parser.add_argument("--stages", nargs="+", default=list(STAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "experiments/results/scale_data")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--stage")
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.stage:
        child(args.stage, args.work, args.n)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scale_data-"))
    rows = [run_stage("generate", work, n) for n in args.generate]
    for n in args.sizes:
        rows += [run_stage(stage, work, n) for stage in args.stages]
        shutil.rmtree(work / f"csv{n}", ignore_errors=True)
    frame = pd.DataFrame(rows)
    frame["records_per_s"] = frame["records"] / frame["seconds"]
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "results.csv", index=False)
    plot(frame, args.out / "scale.png")
    print(f"load average {os.getloadavg()[0]:.2f} (2 cores)")
    print(markdown(frame[["stage", "n", "seconds", "records_per_s", "peak_rss_mb"]]))
    for key in ("csv_bytes_per_record", "packed_bytes_per_record", "packed_share_of_csv"):
        if key in frame:
            print(key, frame[key].dropna().round(3).tolist())
    for key in ("loader_first_pass_per_s", "loader_records_per_s", "train_records_per_s"):
        if key in frame:
            print(key, frame[key].dropna().round(1).tolist())
    print("log-log slopes:", {k: round(v, 2) for k, v in slopes(frame).items()})
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
