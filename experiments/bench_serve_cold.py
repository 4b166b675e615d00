"""Cold start of a served ecgml model: modules imported and seconds to the first answer.

Loads a logged model as ``mlflow models serve`` does (``mlflow.pyfunc.load_model`` in a fresh
process, then one prediction) ``--repeats`` times and prints the median wall time, the number
of modules imported and whether Lightning, Captum or the training pipeline came along. Give
``--code`` several ecgml checkouts (e.g. one from before a change) to compare them in one run
on the same machine:

    python experiments/bench_serve_cold.py MODEL_DIR --code /path/to/old/checkout .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys, time
start = time.perf_counter()
import mlflow.pyfunc
import numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.DataFrame({"beat": [list(np.zeros(450))], "r_index": [125]}))
seconds = time.perf_counter() - start
heavy = [m for m in ("lightning", "pytorch_lightning", "captum", "ecgml.pipeline.run")
         if m in sys.modules]
print(json.dumps({"seconds": seconds, "modules": len(sys.modules), "heavy": heavy}))
"""


def probe(model: Path, code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(model.resolve())],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a logged model folder (MLmodel + artifacts/)")
    parser.add_argument("--code", type=Path, nargs="+", default=[Path(".")])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for code in args.code:
        runs = [probe(args.model, code) for _ in range(args.repeats)]
        seconds = statistics.median(r["seconds"] for r in runs)
        print(
            f"{code}: {runs[0]['modules']} modules, heavy {runs[0]['heavy'] or 'none'}, "
            f"import+load+first answer median {seconds:.2f} s of {args.repeats}"
        )


if __name__ == "__main__":
    main()
