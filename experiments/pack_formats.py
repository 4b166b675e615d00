"""Benchmark: which packed format for the stores' samples (the choice behind ``samples.arrow``).

    .venv/bin/python experiments/pack_formats.py [--repeat 20]

Builds the default synthetic cohort (441 lead-II 10 s records at 500 Hz, cached under
``.cache``), repeats its records ``--repeat`` times and writes every sample once in each
candidate format: Arrow IPC (float32 and int16 µV, uncompressed and memory-mapped; int16 with
zstd), Parquet (float32 with byte-stream split + zstd; int16 + zstd) and ``.npy`` int16
(memory-mapped). Prints each format's size against the CSV store, its write time, the time to
open it and the random-read rate (records/s, each read decoded to float32 mV) — what a shuffled
loader does. One core; the machine is shared, so read the times as ratios within one run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.ipc as ipc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ecgml.recordstore import load_record_store, read_record_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
N_READS = 2000
BATCH = 1024


def cohort_records() -> tuple[list[np.ndarray], float]:
    """The default cohort's lead-II records and the mean bytes of their CSVs."""
    from ecgml.data.records import resolve_record_store
    from tests.conftest import compose_once

    cfg = compose_once()
    folder = resolve_record_store(cfg.data)
    store = load_record_store(folder)
    files = [folder / name for name in store.meta["record_file"]]
    signals = [read_record_csv(path)[2][0] for path in files]
    return signals, float(np.mean([path.stat().st_size for path in files]))


class Flat:
    """Every record's samples one after another, with each record's offsets."""

    def __init__(self, signals: list[np.ndarray]) -> None:
        self.values = np.concatenate(signals)
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in signals])])
        self.n = len(signals)

    def encoded(self, dtype: str) -> np.ndarray:
        return self.values if dtype == "f4" else np.rint(self.values * 1000).astype(np.int16)


def arrow(flat: Flat, path: Path, dtype: str, compression: str | None) -> Callable[[], float]:
    values = flat.encoded(dtype)
    batches = [
        pa.record_batch(
            [pa.array(values[flat.offsets[i] : flat.offsets[min(i + BATCH, flat.n)]])], names=["mv"]
        )
        for i in range(0, flat.n, BATCH)
    ]
    options = ipc.IpcWriteOptions(compression=compression)
    with ipc.new_file(str(path), batches[0].schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)

    def opened() -> Callable[[int], np.ndarray]:
        reader = ipc.open_file(pa.memory_map(str(path)))
        if compression:  # decompressed per batch, per read
            starts = np.arange(0, flat.n, BATCH)

            def read(i: int) -> np.ndarray:
                k = int(np.searchsorted(starts, i, "right") - 1)
                column = reader.get_batch(k).column(0).to_numpy()
                base = flat.offsets[starts[k]]
                return column[flat.offsets[i] - base : flat.offsets[i + 1] - base]

            return read
        views = [reader.get_batch(k).column(0).to_numpy() for k in range(reader.num_record_batches)]
        bases = flat.offsets[np.arange(0, flat.n, BATCH)]

        def read_view(i: int) -> np.ndarray:
            k = i // BATCH
            return views[k][flat.offsets[i] - bases[k] : flat.offsets[i + 1] - bases[k]]

        return read_view

    return opened  # type: ignore[return-value]


def parquet(flat: Flat, path: Path, dtype: str) -> Callable[[], Callable[[int], np.ndarray]]:
    values = flat.encoded(dtype)
    group = BATCH * 5000
    pq.write_table(
        pa.table({"mv": pa.array(values)}),
        path,
        compression="zstd",
        row_group_size=group,
        use_byte_stream_split=dtype == "f4",
    )

    def opened() -> Callable[[int], np.ndarray]:
        handle = pq.ParquetFile(path)

        def read(i: int) -> np.ndarray:
            k = int(flat.offsets[i] // group)
            column = handle.read_row_group(k).column(0).to_numpy()
            return column[flat.offsets[i] - k * group : flat.offsets[i + 1] - k * group]

        return read

    return opened


def npy(flat: Flat, path: Path) -> Callable[[], Callable[[int], np.ndarray]]:
    np.save(path, flat.encoded("i2"))

    def opened() -> Callable[[int], np.ndarray]:
        mapped = np.load(path, mmap_mode="r")
        return lambda i: mapped[flat.offsets[i] : flat.offsets[i + 1]]

    return opened


def measure(name: str, build: Callable[[], Callable], path: Path, flat: Flat, csv: float) -> None:
    started = time.perf_counter()
    opener = build()
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    read = opener()
    open_ms = 1000 * (time.perf_counter() - started)
    picks = np.random.default_rng(0).integers(0, flat.n, N_READS)
    slow = name.startswith(("parquet", "arrow IPC int16 + zstd"))
    picks = picks[: N_READS // 10] if slow else picks
    started = time.perf_counter()
    for i in picks:
        raw = read(int(i))
        samples = raw.astype(np.float32)
        if raw.dtype == np.int16:
            samples *= np.float32(0.001)
    rate = len(picks) / (time.perf_counter() - started)
    per_record = path.stat().st_size / flat.n
    print(
        f"| {name} | {100 * per_record / csv:.1f} % | {per_record / 1e3:.1f} kB | {write_s:.2f} s "
        f"| {open_ms:.1f} ms | {rate:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    signals, csv = cohort_records()
    flat = Flat(signals * args.repeat)
    print(f"{flat.n} records, {csv / 1e3:.1f} kB of CSV per record\n")
    print("| format | bytes vs CSV | per record | write | open | random reads/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases: list[tuple[str, Callable[[], Callable], Path]] = []
        for name, dtype, compression, file in (
            ("arrow IPC float32, mmap", "f4", None, "a.arrow"),
            ("arrow IPC int16 µV, mmap (ecgml)", "i2", None, "b.arrow"),
            ("arrow IPC int16 + zstd", "i2", "zstd", "c.arrow"),
        ):
            path = work / file
            cases.append((name, lambda d=dtype, c=compression, p=path: arrow(flat, p, d, c), path))
        cases.append(
            ("parquet float32 + zstd", lambda: parquet(flat, work / "d.pq", "f4"), work / "d.pq")
        )
        cases.append(
            ("parquet int16 + zstd", lambda: parquet(flat, work / "e.pq", "i2"), work / "e.pq")
        )
        cases.append(("npy int16, mmap", lambda: npy(flat, work / "f.npy"), work / "f.npy"))
        for name, build, path in cases:
            measure(name, build, path, flat, csv)


if __name__ == "__main__":
    main()
