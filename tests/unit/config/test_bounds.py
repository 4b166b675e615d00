"""Numeric settings out of range fail in one line, exit 2, before a run opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ecgml.bounds import bound_problems, check_bounds
from ecgml.errors import EcgmlError
from tests.conftest import compose_once
from tests.unit.pipeline.test_train import run_cli


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 must be a whole number ≥ 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a whole number ≥ 1"),
        ("model.optimizer.lr=nan", "model.optimizer.lr=nan must be a finite number > 0"),
        ("model.optimizer.lr=0", "model.optimizer.lr=0 must be a finite number > 0"),
        ("model.optimizer.lr=-0.001", "model.optimizer.lr=-0.001 must be"),
        ("data.batch_size=0", "data.batch_size=0 must be a whole number ≥ 1"),
        ("data.num_workers=-2", "data.num_workers=-2 must be a whole number ≥ 0"),
        ("training.ensemble=0", "training.ensemble=0 must be"),
        ("evaluation.ci_level=1.5", "evaluation.ci_level=1.5 must be a finite number > 0 and < 1"),
        (
            "evaluation.interval_level=1",
            "evaluation.interval_level=1.0 must be a finite number > 0",
        ),
        ("evaluation.n_bootstrap=-5", "evaluation.n_bootstrap=-5 must be"),
        ("seed=-1", "seed=-1 must be"),
        (
            "evaluation.decision_thresholds=[0.5,0.1]",
            r"evaluation\.decision_thresholds=\[0\.5, 0\.1\] must be \[low, high\] with low < high",
        ),
        (
            "evaluation.decision_thresholds=[0.0,0.5]",
            r"evaluation\.decision_thresholds=\[0\.0, 0\.5\]",
        ),
        ("evaluation.decision_thresholds=[0.1]", r"must be \[low, high\], each"),
    ],
)
def test_out_of_range_settings_are_refused_before_a_run_opens(
    override: str, message: str, compose_cfg, mlflow_store: str, tmp_path: Path
) -> None:
    from ecgml.cli.train import train

    cfg = compose_cfg(override, f"logger.tracking_uri={mlflow_store}")
    with pytest.raises(EcgmlError, match=message) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no store, so no run was opened


def test_every_problem_is_named_in_one_line() -> None:
    cfg = compose_once("trainer.max_epochs=-1", "data.batch_size=0", "model.optimizer.lr=nan")
    with pytest.raises(EcgmlError) as err:
        check_bounds(cfg)
    text = str(err.value)
    assert "\n" not in text
    for key in ("trainer.max_epochs=-1", "data.batch_size=0", "model.optimizer.lr=nan"):
        assert key in text


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("experiment=paper_table2",),
        ("model=resnet1d",),
        ("model=set_cnn1d", "data=records"),
        ("debug=fdr",),
        ("debug=overfit",),
        ("task=pretrain",),
        ("trainer=ddp_cpu",),
        ("split=group_kfold",),
        ("data.beat_length=null",),
        ("evaluation.n_bootstrap=0",),
    ],
)
def test_every_shipped_configuration_is_within_bounds(overrides: tuple[str, ...]) -> None:
    assert bound_problems(compose_once(*overrides)) == []


def test_a_stored_config_out_of_bounds_is_refused_by_resume(tmp_path: Path, compose_cfg) -> None:
    import yaml
    from omegaconf import OmegaConf

    from ecgml.pipeline.run import resume_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e", str(tmp_path / "art"))).info.run_id
    stored = yaml.safe_load(OmegaConf.to_yaml(compose_once(), resolve=True))
    stored["trainer"]["max_epochs"] = -1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    (tmp_path / "last.ckpt").write_bytes(b"never read")
    client.log_artifact(run_id, str(tmp_path / "config.yaml"))
    client.log_artifact(run_id, str(tmp_path / "last.ckpt"), "checkpoints")
    client.set_terminated(run_id, "KILLED")
    with pytest.raises(EcgmlError, match=f"resume={run_id}: trainer.max_epochs=-1 must be"):
        resume_run(compose_cfg(f"resume={run_id}", f"logger.tracking_uri={uri}"))


def test_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = run_cli("trainer.max_epochs=-1", env_uri=uri)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "trainer.max_epochs=-1" in lines[0]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
