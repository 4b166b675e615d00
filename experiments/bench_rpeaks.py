"""R-peak detection benchmark on a WFDB record with reference beat annotations.

    python experiments/bench_rpeaks.py ../shared/data/mitdb-100/100 [--channel MLII]

Matches detections to the reference beats within 150 ms (ANSI/AAMI EC57, as WFDB ``bxb``)
and prints a markdown table: sensitivity, positive predictivity, F1, mean |error| in ms, and
the detector's time per minute of signal.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import wfdb

from ecgml.digitize.fidelity import match_peaks
from ecgml.signal import detect_rpeaks

#: Annotation symbols that mark a beat (WFDB's beat codes; '+' rhythm changes etc. are not).
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="WFDB record path without extension, e.g. .../100")
    parser.add_argument("--channel", default="MLII", help="signal name (default MLII)")
    parser.add_argument("--annotator", default="atr")
    parser.add_argument("--tolerance-ms", type=float, default=150.0)
    args = parser.parse_args()

    record = wfdb.rdrecord(args.record)
    annotation = wfdb.rdann(args.record, args.annotator)
    channel = record.sig_name.index(args.channel) if args.channel in record.sig_name else 0
    signal, fs = record.p_signal[:, channel], float(record.fs)
    reference = np.array(
        [
            s
            for s, sym in zip(annotation.sample, annotation.symbol, strict=True)
            if sym in BEAT_SYMBOLS
        ]
    )
    detect_rpeaks(signal[: int(10 * fs)], fs)  # warm-up: imports and numba/JIT caches
    start = time.perf_counter()
    detected = detect_rpeaks(signal, fs)
    seconds = time.perf_counter() - start
    tolerance = round(args.tolerance_ms * fs / 1000)
    tp, fp, fn, errors = match_peaks(reference, detected, tolerance)
    minutes = len(signal) / fs / 60
    print(
        f"record {record.record_name}, channel {record.sig_name[channel]}, fs {fs:g} Hz, "
        f"{minutes:.1f} min, {reference.size} reference beats\n"
    )
    print("| detector | Se | +P | F1 | mean abs err (ms) | ms per min of signal |")
    print("|---|---|---|---|---|---|")
    se, ppv = tp / (tp + fn), tp / max(tp + fp, 1)
    mae = 1000 * errors.mean() / fs if errors.size else float("nan")
    print(
        f"| NeuroKit2 (ecgml.signal.detect_rpeaks) | {se:.4f} | {ppv:.4f} | "
        f"{2 * tp / (2 * tp + fp + fn):.4f} | {mae:.1f} | {1000 * seconds / minutes:.1f} |"
    )
    print(f"\nTP {tp}, FP {fp}, FN {fn} at ±{args.tolerance_ms:g} ms")


if __name__ == "__main__":
    main()
