"""Every config option composes; the CPU ones instantiate."""

import subprocess
import sys
from pathlib import Path

import hydra
import lightning.pytorch as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

from ecgml import CONF_DIR, PROJECT_ROOT
from ecgml.cli import misspelt_keys, normalize_argv
from ecgml.data.splits import PatientSplit, build_split
from ecgml.models import available_backbones, build_backbone

GROUPS = ("disorder", "split", "model", "data", "trainer", "logger", "debug", "experiment", "task")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in options(group)]
)
def test_every_option_composes(compose_cfg, override: str) -> None:
    extra = ["data.path=/tmp/x"] if override == "data=beats" else []
    cfg = compose_cfg(override, *extra)
    assert cfg.disorder.name in {"hyperkalemia", "hypokalemia", "hyponatremia"}
    assert cfg.split.name in {"holdout", "group_kfold", "leave_center_out"}
    if override.startswith("trainer=") and override != "trainer=cpu":
        return  # gpu/ddp need hardware this machine lacks: compose only
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer, L.Trainer)


def test_defaults_are_the_documented_ones(compose_cfg) -> None:
    cfg = compose_cfg()
    assert cfg.disorder.name == "hypokalemia"
    assert cfg.split.name == "holdout" and cfg.split.train == 0.70
    assert cfg.model.name == "cnn1d"
    assert cfg.data.source == "synthetic"
    assert cfg.traceback is False


def test_hyponatremia_defaults_to_the_linear_model_and_the_cli_or_an_experiment_wins(
    compose_cfg,
) -> None:
    assert compose_cfg("disorder=hyponatremia").model.name == "linear1d"
    assert compose_cfg("disorder=hyponatremia", "model=cnn1d").model.name == "cnn1d"
    assert compose_cfg("model=resnet1d", "disorder=hyponatremia").model.name == "resnet1d"
    # the study reproduction keeps the study's CNN for every disorder
    table2 = compose_cfg("experiment=paper_table2", "disorder=hyponatremia")
    assert table2.model.name == "cnn1d"
    for disorder in ("hyperkalemia", "hypokalemia"):
        assert compose_cfg(f"disorder={disorder}").model.name == "cnn1d"


def test_overlays_apply(compose_cfg) -> None:
    assert compose_cfg("debug=fdr").trainer.fast_dev_run is True
    assert compose_cfg("debug=overfit").trainer.overfit_batches == 2
    assert compose_cfg("debug=overfit").training.label_smoothing == 0.0


def test_unknown_option_fails_with_hydras_list_and_a_misspelt_key_gets_a_suggestion() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ecgml.train", "disorder=hypercalcemia", "trainer.max_epoch=3"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "Could not find 'disorder/hypercalcemia'" in run.stderr
    for option in ("hyperkalemia", "hypokalemia", "hyponatremia"):
        assert option in run.stderr
    assert "did you mean trainer.max_epochs=3 (instead of trainer.max_epoch)?" in run.stderr


def test_misspelt_keys_are_matched_to_the_nearest_real_key() -> None:
    args = ["trainer.max_epoch=3", "dissorder=hyperkalemia", "data.batch_size=8", "+new.key=1"]
    assert misspelt_keys("train", args) == [
        "did you mean trainer.max_epochs=3 (instead of trainer.max_epoch)?",
        "did you mean disorder=hyperkalemia (instead of dissorder)?",
    ]
    assert misspelt_keys("train", ["totally.unrelated=1"]) == []  # nothing near: no guess


@pytest.mark.parametrize(
    "override",
    [
        "explain.methd=saliency",  # a misspelt key
        "explain.method=bogus",  # not one of the methods
        "explain.regions.source=magic",
        "explain.subset=some",
        "evaluation.n_bootstrap=abc",  # not an int
        "evaluation.threshold_rule=median",
        "data.align=middle",
        "data.batch_size=many",
    ],
)
def test_schemas_reject_a_wrong_key_type_or_choice_at_composition(compose_cfg, override) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


@pytest.mark.parametrize("override", ["method=gradcam", "methd=saliency", "log_to_run=maybe"])
def test_the_explain_cli_config_is_typed_too(compose_cfg, override: str) -> None:
    assert compose_cfg("run_id=abc", name="explain").method == "saliency"
    with pytest.raises(ConfigCompositionException):
        compose_cfg("run_id=abc", override, name="explain")


def test_schema_choices_read_as_their_strings(compose_cfg) -> None:
    cfg = compose_cfg("explain.method=integrated_gradients", "evaluation.n_bootstrap=50")
    assert cfg.explain.method == "integrated_gradients" and f"{cfg.explain.method}" == (
        "integrated_gradients"
    )
    assert cfg.evaluation.n_bootstrap == 50 and cfg.evaluation.threshold_rule == "binormal"
    assert compose_cfg("run_id=abc", name="evaluate").evaluation.n_bootstrap == 2000


def test_split_and_backbone_configs_name_their_class(compose_cfg) -> None:
    for name in options("split"):
        split = build_split(compose_cfg(f"split={name}").split)
        assert isinstance(split, PatientSplit) and split.name == name
    for name in available_backbones():
        model_cfg = compose_cfg(f"model={name}").model
        assert model_cfg.name == name
        assert isinstance(build_backbone(model_cfg, 1, 1, seq_len=120), torch.nn.Module)


@pytest.mark.parametrize("name", options("hparams_search"))
def test_every_search_space_composes_with_the_disorder_from_the_cli(name: str) -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            overrides = [f"hparams_search={name}", "disorder=hyponatremia"]
            cfg = compose("train", overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.disorder.name == "hyponatremia"
    if name in available_backbones():
        assert cfg.model.name == name
        assert cfg.hydra.sweeper.study_name == f"hyponatremia-{name}"


def test_the_study_reproduction_experiment_composes(compose_cfg) -> None:
    cfg = compose_cfg("experiment=paper_table2", "disorder=hyperkalemia")
    assert cfg.split.name == "group_kfold" and cfg.split.n_splits == 5
    assert cfg.model.name == "cnn1d" and cfg.disorder.name == "hyperkalemia"
    assert build_split(cfg.split).runs_all_folds  # split.fold=null: every fold, one parent run
    assert cfg.logger.experiment_name == "ecgml-paper-table2"


def test_debug_true_cannot_select_a_group_option_so_the_cli_translates_it() -> None:
    """Hydra parses ``debug=true`` as a bool and refuses it for the ``debug`` group."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            with pytest.raises(ValueError, match="Config group override must be a string"):
                compose("train", ["debug=true"])
            assert compose("train", normalize_argv(["debug=true"])).traceback is True
    finally:
        GlobalHydra.instance().clear()


def test_ctrl_c_while_a_command_imports_is_one_line(tmp_path: Path) -> None:
    """Ctrl-C before the entry point runs (imports take ~1 s): one line, no traceback."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "ecgml.synth", f"out={tmp_path / 'c'}", "images=false"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGINT, 130), err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted")
    assert not (tmp_path / "c").exists()
