"""How fast a huge manifest of missing files is refused (and in how much memory).

Writes a beat store whose ``manifest.csv`` lists N rows (default 3 million, ~100 MB) of beat
files that do not exist, then loads it in a fresh process and prints the wall time to the
one-line refusal and the process's peak RSS. The refusal must name the first row's line.

    python experiments/bench_manifest.py [--rows 3000000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD = """
import sys
from ecgml.beatstore import load_beat_store
from ecgml.errors import EcgmlError
try:
    load_beat_store(sys.argv[1])
except EcgmlError as err:
    print(str(err))
"""


def write_manifest(root: Path, rows: int) -> int:
    root.mkdir(parents=True, exist_ok=True)
    (root / "beats").mkdir()
    with (root / "manifest.csv").open("w") as out:
        out.write("beat_file,patient_id,group,beat_id,r_index\n")
        for k in range(rows):
            out.write(f"beats/P{k // 3:07d}_{k % 3:02d}.csv,P{k // 3:07d},normal,b{k:08d},125\n")
    return (root / "manifest.csv").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecgml-bench-manifest-") as tmp:
        size = write_manifest(Path(tmp) / "store", args.rows)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", LOAD, str(Path(tmp) / "store")],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"manifest rows {args.rows:,} ({size / 1e6:.0f} MB), all files missing")
    print(
        f"refused in {seconds:.2f} s (process start and imports included), peak RSS "
        f"{peak_mb:.0f} MB"
    )
    print(f"message: {result.stdout.strip()[:160]}")


if __name__ == "__main__":
    main()
