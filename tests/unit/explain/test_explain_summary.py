"""``ecgml.explain``'s console summary says a failed sanity check out loud."""

from __future__ import annotations

from pathlib import Path

from ecgml.cli.explain import format_summary


def _metrics(passed: float, similarity: float) -> dict[str, float]:
    return {
        "explain/n_beats": 40,
        "explain/sanity_passed": passed,
        "explain/sanity_similarity": similarity,
    }


def test_a_failed_sanity_check_is_printed_loudly(compose_cfg) -> None:
    cfg = compose_cfg("run_id=abc", name="explain")
    failed = format_summary(cfg, _metrics(0.0, 0.72), Path("out"))
    assert "SANITY CHECK FAILED: randomized-weights similarity 0.72 (a pass requires < 0.5)" in (
        failed
    )
    assert "SANITY" not in format_summary(cfg, _metrics(1.0, 0.1), Path("out"))
    assert "SANITY" not in format_summary(cfg, _metrics(float("nan"), float("nan")), Path("o"))
