"""The validation report marks all 27 TRIPOD+AI items from what a run logged: its numbers with
their CIs, the files that hold the rest, and what only the study can report."""

from __future__ import annotations

from ecgml.pipeline.validation_report import (
    MISSING,
    NOT_APPLICABLE,
    REPORTED,
    RunEvidence,
    checklist_summary,
    report_html,
    report_markdown,
    report_rows,
)


def _binary(**changes: object) -> RunEvidence:
    fields: dict = {
        "run_id": "r1",
        "metrics": {
            "test/n_patients": 45.0,
            "test_patient/auroc": 0.91,
            "test_patient/auroc_ci_low": 0.82,
            "test_patient/auroc_ci_high": 0.97,
            "test/threshold": 0.4,
            "test/ppv_at_0.05": 0.2,
            "test/ppv_at_0.05_ci_low": 0.1,
            "test/ppv_at_0.05_ci_high": 0.3,
            "test/npv_at_0.05": 0.99,
        },
        "params": {"data.source": "beats", "split.name": "holdout", "task.name": "binary"},
        "tags": {"dataset.digest": "abc123", "git.commit": "deadbeef"},
        "artifacts": frozenset({"splits.csv", "subgroups.csv", "figures/roc.png"}),
        "read_file": lambda path: b"\x89PNG" if path == "figures/roc.png" else None,
    }
    fields.update(changes)
    return RunEvidence(**fields)


def test_every_item_is_marked_with_the_runs_own_evidence() -> None:
    rows = report_rows(_binary())
    assert [r[0] for r in rows] == [str(k) for k in range(1, 28)]
    assert {r[2] for r in rows} <= {REPORTED, NOT_APPLICABLE, MISSING}
    by_item = {r[0]: r for r in rows}
    assert "AUROC (patients) 0.910 (0.820–0.970)" in by_item["23"][3]
    assert "PPV/NPV at prevalence 0.05: 0.200 (0.100–0.300) / 0.990" in by_item["23"][3]
    assert "`abc123`" in by_item["5"][3] and "deadbeef" in by_item["18"][3]
    assert by_item["14"][2] == REPORTED and by_item["17"][2] == MISSING
    assert "small test set (45 patients)" in by_item["26"][3]
    no_subgroups = {r[0]: r for r in report_rows(_binary(artifacts=frozenset()))}
    assert no_subgroups["14"][2] == MISSING


def test_a_serum_run_reports_its_intervals_and_grades() -> None:
    serum = _binary(
        params={"task.name": "potassium", "data.source": "synthetic"},
        tags={"task": "potassium"},
        metrics={
            "test_patient/mae": 0.4,
            "test_patient/interval_coverage": 0.91,
            "test_patient/auroc_k_ge_6.0": 0.95,
            "test_patient/auroc_k_ge_6.0_ci_low": 0.9,
            "test_patient/auroc_k_ge_6.0_ci_high": 0.99,
        },
    )
    by_item = {r[0]: r for r in report_rows(serum)}
    assert by_item["13"][2] == NOT_APPLICABLE  # no classes to balance
    assert "interval coverage 0.910" in by_item["23"][3]
    assert "auroc_k_ge_6.0 0.950 (0.900–0.990)" in by_item["23"][3]
    assert "conformal" in by_item["15"][3]


def test_markdown_and_html_hold_the_same_rows_and_the_figures() -> None:
    ev = _binary()
    rows = report_rows(ev)
    text = report_markdown(ev)
    assert checklist_summary(rows) in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 28  # header + 27
    page = report_html(ev)
    assert page.count("<tr>") == 28
    assert page.count("data:image/png;base64,") == 1  # the one figure the run logged
    assert "<script" not in page
