"""Task objects: chosen by ``task._target_`` through the trust gate; a config stored before
tasks were classes (no ``_target_``) still maps to its task's class; anything else is refused in
one line before a class is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ecgml.errors import EcgmlError
from ecgml.tasks import BinaryTask, MultilabelTask, SerumTask, run_task
from ecgml.trust import read_stored_config

EXPECTED = {
    "binary": BinaryTask,
    "multilabel": MultilabelTask,
    "potassium": SerumTask,
    "sodium": SerumTask,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_task_file_names_its_class(compose_cfg, name: str) -> None:
    cfg = compose_cfg(f"task={name}")
    assert cfg.task._target_.endswith(EXPECTED[name].__name__)
    task = run_task(cfg)
    assert type(task) is EXPECTED[name] and task.name == ("binary" if name == "binary" else name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_config_stored_without_a_task_target_maps_to_its_class(
    compose_cfg, tmp_path: Path, name: str
) -> None:
    """A run's ``config.yaml`` as ecgml wrote it before tasks were classes: ``task.name`` only."""
    cfg = OmegaConf.to_container(compose_cfg(f"task={name}"), resolve=True)
    del cfg["task"]["_target_"]
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    stored = read_stored_config(path, "resume=old")
    assert type(run_task(stored, "resume=old")) is EXPECTED[name]


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("ecgml.data.splits.Holdout", "is not a class of ecgml.tasks"),
        ("os.system", "is not a class of ecgml.tasks"),
        ("ecgml.tasks.binary.STRATA", "is not a class"),
        ("ecgml.tasks.binary.metrics_by_stratum", "is not a class"),
        ("ecgml.tasks.base.ExplainView", "is not a class"),
    ],
)
def test_a_target_that_is_not_a_task_is_refused_in_one_line(
    compose_cfg, target: str, why: str
) -> None:
    cfg = compose_cfg()
    cfg.task._target_ = target
    with pytest.raises(EcgmlError, match=why) as error:
        run_task(cfg, "resume=abc")
    message = str(error.value)
    assert "\n" not in message and message.startswith("resume=abc: task._target_=")


@pytest.mark.parametrize("target", ["ecgml.tasks.base.RunTask", "ecgml.tasks.outputs.OutputsTask"])
def test_an_abstract_task_class_is_refused_in_one_line(compose_cfg, target: str) -> None:
    cfg = compose_cfg()
    cfg.task._target_ = target
    with pytest.raises(EcgmlError, match="is not a task") as error:
        run_task(cfg, "resume=abc")
    assert "\n" not in str(error.value)


def test_a_class_of_the_task_package_that_is_no_task_is_refused(
    compose_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ecgml.tasks.binary as binary

    class NotATask:
        pass

    NotATask.__module__ = "ecgml.tasks.binary"
    monkeypatch.setattr(binary, "NotATask", NotATask, raising=False)
    cfg = compose_cfg()
    cfg.task._target_ = "ecgml.tasks.binary.NotATask"
    with pytest.raises(EcgmlError, match="is not a task"):
        run_task(cfg)


def test_a_task_setting_of_the_wrong_type_fails_at_composition(compose_cfg) -> None:
    """The task, split and training schemas (ecgml/schemas.py) type their keys."""
    from hydra.errors import ConfigCompositionException

    for override in (
        "task.monitor_mode=highest",
        "split.n_splits=many",
        "training.early_stopping_patience=soon",
        "training.log_model=maybe",
    ):
        extra = ("split=group_kfold",) if override.startswith("split.") else ()
        with pytest.raises(ConfigCompositionException):
            compose_cfg(*extra, override)
