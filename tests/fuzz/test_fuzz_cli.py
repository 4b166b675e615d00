"""Fuzz the command lines (subprocesses, memory-capped): exit 0 or 2, one ``error:`` line at
most, no traceback, nothing outside the case's ``out/`` folder changed.

Hydra's own composition errors (a value of the wrong type for a typed key) keep Hydra's exit
code 1 (docs/contracts.md); they are accepted only without a traceback and before any job ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.cases import case_dir, write_store
from tests.fuzz.harness import FUZZ, CliResult, check_contract, run_cli, scale, tree_digest
from tests.fuzz.strategies import beat_text, image_bytes, manifest_text, meta_text

BAD = ["-1", "0", "nan", "inf", "1e9", "abc", "null", "''", "[1,2]", "-0.5", "1e-9"]
FEW = settings(FUZZ, max_examples=scale(2, 40))


def composition_error(result: CliResult) -> bool:
    stderr = result.stderr
    return (
        result.returncode == 1
        and "Traceback" not in stderr
        and "Error executing job" not in stderr
        and "HYDRA_FULL_ERROR" in stderr
    )


def run_case(module: str, args: list[str], case: Path) -> None:
    before = tree_digest(case, exclude=case / "out")
    result = run_cli(module, args, case)
    where = f"python -m ecgml.{module} {' '.join(args)}"
    if not composition_error(result):
        check_contract(result, where)
    assert tree_digest(case, exclude=case / "out") == before, f"{where}: changed its input"


def overrides(keys: list[str]) -> st.SearchStrategy[list[str]]:
    pairs = st.tuples(st.sampled_from(keys), st.sampled_from(BAD))
    return st.lists(pairs, min_size=1, max_size=3, unique_by=lambda p: p[0]).map(
        lambda found: [f"{key}={value}" for key, value in found]
    )


def store_case(case: Path, manifest: bytes, meta: bytes | None, beats: list[bytes]) -> Path:
    return write_store(case, manifest, meta, beats)


@pytest.mark.slow
@FEW
@given(
    images=st.lists(image_bytes(), min_size=1, max_size=2),
    args=overrides(["fs", "dpi", "n_jobs", "max_image_pixels", "beats.pre_r_ms", "layout"]),
    target=st.sampled_from(["out/result", "in", ".", "in/sub", "missing/../out/result"]),
)
def test_digitize_cli_on_bad_values(images: list[bytes], args: list[str], target: str) -> None:
    with case_dir() as case:
        (case / "in").mkdir()
        for k, content in enumerate(images):
            (case / "in" / f"scan{k}.png").write_bytes(content)
        base = ["input_dir=in", f"output_dir={target}", "overwrite=true", "progress=false"]
        run_case("digitize", [*base, *args], case)


@pytest.mark.slow
@FEW
@given(
    manifest=manifest_text(),
    meta=meta_text(),
    beats=st.lists(beat_text(), min_size=3, max_size=3),
    args=overrides(["fs", "disorders", "models", "image.fs", "image.layout", "image.dpi"]),
    target=st.sampled_from(["store", "store/beats/b0.csv", "store/missing", "/dev/null"]),
)
def test_predict_cli_on_bad_stores_and_values(
    manifest: bytes, meta: bytes | None, beats: list[bytes], args: list[str], target: str
) -> None:
    with case_dir() as case:
        store_case(case, manifest, meta, beats)
        base = [f"input={target}", "output=out/pred.json", "progress=false"]
        run_case("predict", [*base, f"tracking_uri=sqlite:///{case}/out/m.db", *args], case)


@pytest.mark.slow
@settings(FUZZ, max_examples=scale(1, 20))
@given(
    manifest=manifest_text(),
    meta=meta_text(),
    beats=st.lists(beat_text(), min_size=3, max_size=3),
    args=overrides(["data.fs", "data.max_beat_s", "trainer.max_epochs", "data.batch_size"]),
)
def test_train_cli_on_bad_stores_and_values(
    manifest: bytes, meta: bytes | None, beats: list[bytes], args: list[str]
) -> None:
    with case_dir() as case:
        store_case(case, manifest, meta, beats)
        base = ["data=beats", "data.path=store", "paths.cache_dir=out/cache"]
        run_case("train", [*base, "trainer.enable_progress_bar=false", *args], case)


@pytest.mark.slow
@FEW
@given(
    args=overrides(
        [
            "fs",
            "max_s",
            "windows",
            "pairing.rule",
            "pairing.window_h",
            "pairing.timezone",
            "groups.potassium_high",
            "selection",
            "n_jobs",
        ]
    ),
    target=st.sampled_from(["out/store", "ecgs", ".", "ecgs/sub", "labs.csv"]),
    labs=st.sampled_from(
        [
            b"patient_id,time,analyte,value\np,2180-01-01 09:00,K,6\n",
            b"who,when\n1,2\n",
            b"",
            b"\xff\xfe",
        ]
    ),
)
def test_ingest_cli_on_bad_values(args: list[str], target: str, labs: bytes) -> None:
    with case_dir() as case:
        (case / "ecgs").mkdir()
        t = [k / 500 for k in range(5000)]
        rows = [f"{x:.4f},{0.8 if (x % 0.8) < 0.02 else 0.0:.3f}" for x in t]
        (case / "ecgs" / "r.csv").write_text("time_s,II\n" + "\n".join(rows) + "\n")
        (case / "ecgs" / "index.csv").write_text("path,patient_id,time\nr.csv,p,2180-01-01 10:00\n")
        (case / "labs.csv").write_bytes(labs)
        base = ["ecgs=ecgs/index.csv", "labs=labs.csv", f"out={target}", "progress=false"]
        run_case("ingest", [*base, *args], case)
