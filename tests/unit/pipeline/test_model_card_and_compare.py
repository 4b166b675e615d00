"""Every training run carries model_card.md and the clinical artifacts; ecgml.compare compares
two logged runs and records the comparison as a run of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ecgml.cli.compare import compare
from ecgml.errors import EcgmlError
from ecgml.evaluation.calibration import perfectly_separated
from tests.conftest import compose_once

CLINICAL_ARTIFACTS = {
    "model_card.md",
    "decision_curve.csv",
    "operating_points.csv",
    "subgroups.csv",
}
CLINICAL_FIGURES = {
    "figures/calibration.png",
    "figures/decision_curve.png",
    "figures/subgroups.png",
}


def test_run_logs_model_card_and_clinical_outputs(trained_run, session_tracking_uri, tmp_path):
    _, result = trained_run
    client = MlflowClient(session_tracking_uri)
    assert {a.path for a in client.list_artifacts(result.run_id)} >= CLINICAL_ARTIFACTS
    assert {a.path for a in client.list_artifacts(result.run_id, "figures")} >= CLINICAL_FIGURES
    card = Path(client.download_artifacts(result.run_id, "model_card.md", str(tmp_path)))
    text = card.read_text(encoding="utf-8")
    for section in (
        "## Intended use",
        "## Data",
        "## Performance",
        "## Calibration",
        "## Clinical utility",
        "## Subgroups",
        "## Explainability",
        "## Known limitations",
        "## TRIPOD+AI checklist",
    ):
        assert section in text, section
    m = result.metrics
    assert f"| auroc | {m['test/auroc']:.3f} ({m['test/auroc_ci_low']:.3f}–" in text
    assert result.run_id in text
    # the card's checklist is the validation report's rows, summarized (one source)
    report = Path(client.download_artifacts(result.run_id, "validation_report.md", str(tmp_path)))
    rows = [line for line in report.read_text().splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 27
    statuses = [row.split(" | ")[2] for row in rows]
    summary = ", ".join(
        f"{statuses.count(s)} {s}" for s in ("reported", "not applicable", "missing")
    )
    assert summary in text and summary in report.read_text()
    assert "| 16 | Training versus evaluation data | reported |" in text
    assert "internal (same centers)" in report.read_text()
    page = client.download_artifacts(result.run_id, "validation_report.html", str(tmp_path))
    assert "data:image/png;base64," in Path(page).read_text()  # figures embedded
    metrics = client.get_run(result.run_id).data.metrics
    for key in ("test/ece", "test/ece_raw", "test/calibration_intercept", "test/ppv_at_0.01"):
        assert key in metrics
    # the slope of y on logit(p) is undefined when the scores separate the classes perfectly
    # (the toy store's effect is that clear): then it is left out, never logged as a number
    predictions = pd.read_csv(
        client.download_artifacts(result.run_id, "predictions.csv", str(tmp_path))
    )
    test = predictions[predictions["split"] == "test"]
    separated = perfectly_separated(test["y_true"], test["y_prob"])
    assert ("test/calibration_slope" in metrics) is not separated
    subgroups = pd.read_csv(
        client.download_artifacts(result.run_id, "subgroups.csv", str(tmp_path))
    )
    assert set(subgroups["subgroup"]) == {"center", "device"}  # the toy store has both columns


def fake_run(client: MlflowClient, experiment_id: str, predictions: pd.DataFrame, tmp: Path) -> str:
    """A finished run holding only ``predictions.csv`` (what ecgml.compare reads)."""
    run_id = client.create_run(experiment_id).info.run_id
    predictions.to_csv(tmp / "predictions.csv", index=False)
    client.log_artifact(run_id, str(tmp / "predictions.csv"))
    client.set_terminated(run_id)
    return run_id


def test_compare_logs_a_paired_comparison_run(trained_run, session_tracking_uri, tmp_path, capsys):
    _, result = trained_run
    client = MlflowClient(session_tracking_uri)
    perfect = result.predictions.assign(y_prob=result.predictions["y_true"] * 0.98 + 0.01)
    better = fake_run(client, result.experiment_id, perfect, tmp_path)
    client.log_param(better, "evaluation.aggregate", "max")  # B's patients: their max beat
    cfg = compose_once(
        f"run_ids=[{result.run_id},{better}]",
        "n_bootstrap=200",
        f"tracking_uri={session_tracking_uri}",
        name="compare",
    )
    comparison = compare(cfg)
    out = capsys.readouterr().out
    assert f"comparison run_id: {comparison}" in out and "| auroc | beat |" in out
    assert "the mean of its beats' in A, the max in B" in out
    run = client.get_run(comparison)
    assert run.info.status == "FINISHED" and run.info.experiment_id == result.experiment_id
    assert run.data.tags["ecgml.compare.run_a"] == result.run_id
    assert run.data.tags["ecgml.compare.run_b"] == better
    diff = run.data.metrics["compare/auroc_beat_diff"]
    assert diff == pytest.approx(1.0 - result.metrics["test/auroc"], abs=1e-9)
    assert {a.path for a in client.list_artifacts(comparison)} == {
        "comparison.md",
        "comparison.csv",
    }


@pytest.mark.parametrize(
    ("run_ids", "message"),
    [("[only_one]", "must name two different runs"), ("[a,a]", "must name two different runs")],
)
def test_compare_bad_run_ids_are_one_line(run_ids, message, session_tracking_uri) -> None:
    cfg = compose_once(f"run_ids={run_ids}", f"tracking_uri={session_tracking_uri}", name="compare")
    with pytest.raises(EcgmlError, match=message):
        compare(cfg)


def test_compare_cli_exits_2_on_an_unknown_run(tmp_path, capsys, monkeypatch) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from ecgml.compare import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(
        sys,
        "argv",
        ["ecgml.compare", "run_ids=[deadbeef,cafebabe]", f"hydra.run.dir={tmp_path / 'hydra'}"],
    )
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exit_:
        main()
    GlobalHydra.instance().clear()
    assert exit_.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "run_id=deadbeef is not in the MLflow store" in errors[0]


def test_run_is_native_in_mlflows_ui(trained_run, session_tracking_uri) -> None:
    """What MLflow 3's UI reads: the Dataset column (dataset inputs with a context), the
    model-training experiment kind, the Models column (a logged model output), a description."""
    _, result = trained_run
    client = MlflowClient(session_tracking_uri)
    run = client.get_run(result.run_id)
    contexts = {
        tag.value: d.dataset
        for d in run.inputs.dataset_inputs
        for tag in d.tags
        if tag.key == "mlflow.data.context"
    }
    assert set(contexts) == {"train", "val", "test"}
    digest = run.data.tags["dataset.digest"]
    assert all(ds.digest.startswith(f"{digest[:8]}-") for ds in contexts.values())
    assert len({ds.digest for ds in contexts.values()}) == 3
    assert json.loads(contexts["test"].profile)["num_rows"] == result.metrics["test/n_beats"]
    experiment = client.get_experiment(result.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert [o.model_id for o in run.outputs.model_outputs]
    note = run.data.tags["mlflow.note.content"]
    assert (
        note.startswith("hyperkalemia vs normal") and f"{result.metrics['test/auroc']:.3f}" in note
    )


def test_a_long_model_card_is_cut_at_a_section_to_fit_the_registry() -> None:
    from ecgml.tracking.registry import version_description

    card = "# Model card\n\n" + "".join(f"## Section {i}\n\n{'x' * 900}\n\n" for i in range(10))
    short = version_description(card, "r1")
    assert len(short) <= 5000 and short.startswith("# Model card")
    assert short.rstrip().endswith("artifact `model_card.md` of run `r1`.")
    assert "## Section 3\n" in short and "## Section 9" not in short
    assert "\n## Section" not in short.split("## Section 3")[1].split("…")[0][-50:]
    assert version_description("# short", "r1") == "# short"
