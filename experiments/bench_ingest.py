"""Ingest throughput per format: the synthetic cohort exported as hospital files, then ingested.

Builds a 12-lead synthetic cohort (``--patients`` ECGs, one per patient), exports it in every
format ``ecgml.synth.exports`` writes (WFDB in MIMIC-IV-ECG's layout with a MIMIC labevents
table, DICOM, GE MUSE XML, HL7 aECG, EDF+, signal CSV with an index), ingests each with
``--jobs`` workers and prints the per-format table (files, read, paired, excluded by reason,
seconds, ECGs per second). Also reads the two PhysioNet records of ``../shared/data`` (when
present) and prints what the WFDB reader returns for them.

    python experiments/bench_ingest.py [--patients 1000] [--jobs 2] [--formats wfdb dicom ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from ecgml import CONF_DIR, PROJECT_ROOT
from ecgml.ecgfile import read_ecg
from ecgml.ingest.run import IngestSettings, ingest
from ecgml.synth.cohort import build_cohort, cohort_config
from ecgml.synth.exports import FORMATS, export_cohort

SHARED = PROJECT_ROOT.parent / "shared" / "data"


def build(patients: int, root: Path) -> Path:
    cfg = cohort_config(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    share = {"hyperkalemia": 40, "hypokalemia": 73, "hyponatremia": 98, "normal": 230}
    total = sum(share.values())
    groups = {g: max(1, round(patients * n / total)) for g, n in share.items()}
    cfg.update(images=False, twelve_lead=True, seed=42, groups=groups)
    return build_cohort(cfg, root / "cohort", n_jobs=2)


def bench_format(cohort: Path, root: Path, fmt: str, jobs: int) -> dict[str, object]:
    start = time.perf_counter()
    exported = export_cohort(cohort, root / f"export_{fmt}", fmt)
    export_s = time.perf_counter() - start
    settings = IngestSettings(
        exported.ecgs, exported.labs, root / f"store_{fmt}", n_jobs=jobs, progress=False
    )
    start = time.perf_counter()
    report = ingest(settings)
    seconds = time.perf_counter() - start
    read = exported.n_files - sum(
        n for r, n in report.excluded.items() if r not in _PAIRING_REASONS
    )
    return {
        "format": fmt,
        "files": exported.n_files,
        "read": read,
        "paired": report.n_records,
        "excluded": report.excluded,
        "export_s": round(export_s, 1),
        "ingest_s": round(seconds, 1),
        "ecgs_per_s": round(exported.n_files / seconds, 1),
    }


_PAIRING_REASONS = {
    "no_lab_in_window",
    "incomplete_labs",
    "two_disorders",
    "out_of_scope",
    "other_group_of_patient",
    "duplicate",
    "no_patient_id",
    "no_time",
}


def shared_records() -> list[str]:
    lines = []
    for header in sorted(SHARED.glob("*/*.hea")):
        rec = read_ecg(header)
        lines.append(
            f"{header.parent.name}/{header.name}: leads {', '.join(rec.leads)}, {rec.fs:g} Hz, "
            f"{rec.duration_s:.1f} s, lead II range {rec.lead('II').min():.3f} to "
            f"{rec.lead('II').max():.3f} mV"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--formats", nargs="*", default=sorted(FORMATS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecgml-bench-ingest-") as tmp:
        root = Path(tmp)
        cohort = build(args.patients, root)
        rows = [bench_format(cohort, root, fmt, args.jobs) for fmt in args.formats]
    print(f"{args.patients} synthetic 12-lead ECGs per format, {args.jobs} worker(s)")
    print("| format | files | read | paired | excluded | export s | ingest s | ECGs/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        excluded = ", ".join(f"{k} {v}" for k, v in row["excluded"].items()) or "none"  # type: ignore[attr-defined]
        print(
            f"| {row['format']} | {row['files']} | {row['read']} | {row['paired']} | "
            f"{excluded} | {row['export_s']} | {row['ingest_s']} | {row['ecgs_per_s']} |"
        )
    print(json.dumps(rows))
    for line in shared_records():
        print(line)


if __name__ == "__main__":
    main()
