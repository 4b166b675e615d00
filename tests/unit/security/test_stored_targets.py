"""A tampered model or run config never runs code: every `_target_` read back from a store
passes one gate (ecgml.trust) before anything is built, in every entry point that reads it.

Each payload below writes a marker file when it runs; each test plants it in a logged model's
``ecgml_model.json`` (or its ``MLmodel``) or in a run's ``config.yaml``, runs an entry point on it
and asserts a one-line refusal, exit code 2, and no marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ecgml import PROJECT_ROOT
from ecgml.errors import EcgmlError
from ecgml.models.factory import build_backbone
from ecgml.pipeline.beat_model import SPEC_FILE, log_beat_model, model_spec
from tests.conftest import compose_once

SEQ, R, FS = 450, 125, 500.0
CNN = "ecgml.models.backbones.cnn1d.CNN1D"


def payloads(marker: Path, hub: Path) -> dict[str, dict[str, Any]]:
    """A ``backbone`` (or any target node) per attack, each writing ``marker`` if it ran."""
    touch = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    return {
        # Hydra walks attributes: the prefix is ecgml's, the callable is torch.hub.load
        "attribute_walk": {
            "_target_": "ecgml.models.backbones.cnn1d.torch.hub.load",
            "repo_or_dir": str(hub),
            "model": "payload",
            "source": "local",
        },
        "torch_hub_load": {
            "_target_": "torch.hub.load",
            "repo_or_dir": str(hub),
            "model": "payload",
            "source": "local",
        },
        "builtins_exec": {"_target_": "builtins.exec", "_args_": [touch]},
        "os_system": {"_target_": "os.system", "command": f"touch {marker}"},
        "subprocess_popen": {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]},
        # a trusted outer class whose argument is a partial of os.system
        "partial_chain": {
            "_target_": CNN,
            "dropout": {
                "_target_": "functools.partial",
                "_args_": [{"_target_": "hydra.utils.get_method", "path": "os.system"}],
                "command": f"touch {marker}",
            },
        },
        # a class of an allowed module, but not defined there (imported into it)
        "imported_name": {"_target_": "ecgml.models.backbones.cnn1d.nn.Module"},
    }


@pytest.fixture()
def attack(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    marker = tmp_path / "payload-ran"
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "def payload(**kw):\n    return None\n"
    )
    return marker, payloads(marker, hub)


@dataclass
class Store:
    """A tracking store holding one logged model and one killed run (config + checkpoint)."""

    uri: str
    run_id: str
    model_id: str
    spec_file: Path
    mlmodel_file: Path
    config_file: Path
    config: dict[str, Any]

    originals: dict[Path, bytes]

    def restore(self) -> None:
        for path, data in self.originals.items():
            path.write_bytes(data)

    def plant_backbone(self, backbone: dict[str, Any]) -> None:
        data = json.loads(self.spec_file.read_text())
        data["backbone"] = backbone
        self.spec_file.write_text(json.dumps(data))

    def plant_config(self, path: str, node: Any) -> None:
        config = json.loads(json.dumps(self.config))
        parent = config
        *parents, last = path.split(".")
        for key in parents:
            parent = parent[key]
        parent[last] = node
        self.config_file.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, toy_store: Path) -> Store:
    tmp_path = tmp_path_factory.mktemp("planted")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("ecgml-hyperkalemia", str(tmp_path / "art"))
    run = client.create_run(experiment, tags={"disorder": "hyperkalemia"})
    run_id = run.info.run_id
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    cfg = compose_once(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        cache,
        f"logger.tracking_uri={uri}",
    )
    model_id = log_beat_model(
        uri, run_id, build_backbone(cfg.model, 1, 1, SEQ).eval(), model_spec(cfg, SEQ, FS, R, 0.5)
    )
    text = OmegaConf.to_yaml(cfg, resolve=True)  # as a run writes it
    config = yaml.safe_load(text)
    files = tmp_path / "files"
    (files / "checkpoints").mkdir(parents=True)
    (files / "config.yaml").write_text(text)
    (files / "checkpoints" / "last.ckpt").write_bytes(b"not read before the config")
    client.log_artifact(run_id, str(files / "config.yaml"))
    client.log_artifact(run_id, str(files / "checkpoints" / "last.ckpt"), "checkpoints")
    client.set_terminated(run_id, "KILLED")
    art = tmp_path / "art"
    (spec_file,) = art.rglob(SPEC_FILE)
    (mlmodel,) = art.rglob("MLmodel")
    (config_file,) = art.rglob("config.yaml")
    assert isinstance(config, dict)
    originals = {p: p.read_bytes() for p in (spec_file, mlmodel, config_file)}
    return Store(uri, run_id, model_id, spec_file, mlmodel, config_file, config, originals)


@pytest.fixture()
def store(logged: Store) -> Iterator[Store]:
    """The module's store, its files as logged again after each test."""
    yield logged
    logged.restore()


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------ the gate, every payload


@pytest.mark.parametrize(
    "name",
    [
        "attribute_walk",
        "torch_hub_load",
        "builtins_exec",
        "os_system",
        "subprocess_popen",
        "partial_chain",
        "imported_name",
    ],
)
def test_a_planted_model_is_refused_by_every_reader_and_never_runs(store, attack, name) -> None:
    """ecgml.predict / ecgml.export (load_model_uri), ecgml.promote and the served pyfunc."""
    import mlflow.pyfunc

    from ecgml.inference.loading import load_model_uri
    from ecgml.tracking.registry import promote_run, tracking_uri_set

    marker, planted = attack
    store.plant_backbone(planted[name])
    with pytest.raises(EcgmlError, match="refusing to build it") as err:
        load_model_uri(f"models:/{store.model_id}", store.uri)
    assert "backbone" in one_line(err.value)
    with pytest.raises(EcgmlError, match="refusing to build it") as err:
        promote_run(store.run_id, tracking_uri=store.uri)
    one_line(err.value)
    with tracking_uri_set(store.uri), pytest.raises(Exception, match="refusing to build it"):
        mlflow.pyfunc.load_model(f"models:/{store.model_id}")
    assert not marker.exists()


CONFIG_SITES = [
    "model.backbone",
    "model.optimizer",
    "model.scheduler",
    "split",
    "trainer",
    "trainer.strategy",
    "callbacks.model_checkpoint",
]


@pytest.mark.parametrize("site", CONFIG_SITES)
@pytest.mark.parametrize(
    "name",
    [
        "attribute_walk",
        "torch_hub_load",
        "builtins_exec",
        "os_system",
        "subprocess_popen",
        "partial_chain",
    ],
)
def test_a_planted_run_config_is_refused_by_explain_and_resume(store, attack, site, name) -> None:
    from ecgml.cli.explain import explain_run
    from ecgml.pipeline.run import resume_run

    marker, planted = attack
    store.plant_config(site, planted[name])
    explain_cfg = compose_once(
        "run_id=" + store.run_id, f"tracking_uri={store.uri}", name="explain"
    )
    with pytest.raises(EcgmlError, match="refusing") as err:
        explain_run(explain_cfg)
    assert f"run {store.run_id}" in one_line(err.value)
    train_cfg = compose_once(f"resume={store.run_id}", f"logger.tracking_uri={store.uri}")
    with pytest.raises(EcgmlError, match="refusing") as err:
        resume_run(train_cfg)
    assert f"resume={store.run_id}" in one_line(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: !!python/object/apply:os.system ['touch {marker}']\n", "not a plain YAML"),
        ("a: !!python/name:os.system\n", "not a plain YAML"),
        (
            "model:\n  optimizer:\n    lr: '${{oc.create:{{_target_: os.system}}}}'\n",
            "interpolation",
        ),
        ("split:\n  _target_: ecgml.data.splits.Holdout\n  _args_: [1]\n", "directive"),
        ("split:\n  _target_: ecgml.data.splits.Holdout\n  _recursive_: false\n", "directive"),
        ("split:\n  _target_: ecgml.data.splits.Holdout\n  _partial_: true\n", "directive"),
    ],
)
def test_yaml_tags_interpolations_and_directives_are_refused(tmp_path, text, message) -> None:
    from ecgml.trust import read_stored_config

    marker = tmp_path / "payload-ran"
    stored = tmp_path / "config.yaml"
    stored.write_text(text.format(marker=marker))
    with pytest.raises(EcgmlError, match=message) as err:
        read_stored_config(stored, "run x")
    one_line(err.value)
    assert not marker.exists()


def test_a_yaml_tag_in_mlmodel_is_refused(store, attack) -> None:
    from ecgml.inference.loading import load_model_uri

    marker, _ = attack
    text = store.mlmodel_file.read_text()
    store.mlmodel_file.write_text(
        f"payload: !!python/object/apply:os.system ['touch {marker}']\n{text}"
    )
    with pytest.raises(EcgmlError) as err:
        load_model_uri(f"models:/{store.model_id}", store.uri)
    one_line(err.value)
    assert not marker.exists()


def test_every_trusted_class_of_conf_passes_and_ecgml_classes_need_no_registration() -> None:
    """Every `_target_` that `conf/` names (but the sweep's Hydra callback, which no stored file
    holds) passes the gate; a backbone module is trusted by being in the package."""
    from ecgml import CONF_DIR
    from ecgml.trust import TRUSTED_EXTERNAL_CLASSES, trusted_class, trusted_ecgml_modules

    named = set()
    for path in CONF_DIR.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition(":")
            if key == "_target_":
                named.add(value.strip())
    named.discard("ecgml.sweep.parent.MlflowSweepParent")
    assert len(named) > 10
    for target in sorted(named):
        assert trusted_class(target, "conf", "_target_").__name__ == target.rsplit(".", 1)[1]
    external = {t for t in named if not t.startswith("ecgml.")}
    assert external <= TRUSTED_EXTERNAL_CLASSES
    backbones = Path(__import__("ecgml.models.backbones").models.backbones.__file__).parent
    on_disk = {f"ecgml.models.backbones.{p.stem}" for p in backbones.glob("[!_]*.py")}
    assert on_disk <= trusted_ecgml_modules()


@pytest.mark.parametrize(
    "target",
    [
        "ecgml.models.backbones.cnn1d.torch.hub.load",
        "ecgml.models.backbones",
        "hubconf.payload",
        "ecgml.models.backbones.cnn1d",
        "torch.optim.AdamW.__init__",
        "torch.optim.Optimizer",
        "ecgml.data.splits.PatientSplit.__subclasses__",
        "ecgml.pipeline.run.run_one",
        "ecgml.models.backbones.cnn1d._private",
        " ecgml.models.backbones.cnn1d.CNN1D",
        42,
    ],
)
def test_near_misses_are_refused(target) -> None:
    from ecgml.trust import trusted_class

    with pytest.raises(EcgmlError, match="refusing to build it"):
        trusted_class(target, "x", "f")


def test_a_logged_model_may_only_name_a_network_class() -> None:
    from ecgml.trust import check_backbone_config

    with pytest.raises(EcgmlError, match="is not a class of ecgml.models.backbones"):
        check_backbone_config({"_target_": "ecgml.data.splits.Holdout"}, "m")
    with pytest.raises(EcgmlError, match="is not a class of ecgml.models.backbones"):
        check_backbone_config({"_target_": "torch.optim.AdamW"}, "m")
    assert check_backbone_config({"_target_": CNN, "dropout": 0.1}, "m").__name__ == "CNN1D"


def test_a_split_class_is_checked_before_it_is_called(tmp_path) -> None:
    from ecgml.data.splits import build_split

    marker = tmp_path / "payload-ran"
    with pytest.raises(EcgmlError, match="refusing"):
        build_split({"_target_": "os.system", "command": f"touch {marker}"})
    with pytest.raises(EcgmlError, match="not a PatientSplit|refusing"):
        build_split({"_target_": "ecgml.data.splits.PatientSplit"})
    assert not marker.exists()


# ------------------------------------------------------------------ every entry point, run


def run_entry(module: str, *args: str, uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", f"ecgml.{module}", *args, f"hydra.run.dir={cwd / 'hydra'}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def champion(store: Store) -> None:
    client = MlflowClient(store.uri, registry_uri=store.uri)
    name = "ecgml-hyperkalemia"
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
        from ecgml.tracking.registry import tracking_uri_set

        with tracking_uri_set(store.uri):  # MLflow resolves a models:/ source in the global store
            version = client.create_model_version(
                name, f"models:/{store.model_id}", store.run_id, model_id=store.model_id
            )
        client.set_registered_model_alias(name, "champion", str(version.version))


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["predict", "export", "promote", "explain", "resume"])
def test_every_entry_point_refuses_the_attribute_walk_in_one_line(store, attack, entry, tmp_path):
    """The payload of the original report (``ecgml.models.backbones.cnn1d.torch.hub.load`` with
    a ``hubconf.py``): exit 2, one line on stderr, the payload never ran — also with the
    hubconf in the folder the command runs from."""
    marker, planted = attack
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "hubconf.py").write_text((tmp_path / "hub" / "hubconf.py").read_text())
    if entry in ("explain", "resume"):
        store.plant_config("model.backbone", planted["attribute_walk"])
    else:
        store.plant_backbone(planted["attribute_walk"])
    signal = cwd / "signal.csv"
    signal.write_text("time_s,mv\n0,0\n0.002,0.1\n")
    uri = f"tracking_uri={store.uri}"
    args = {
        "predict": ("predict", f"input={signal}", "disorders=[hyperkalemia]", uri),
        "export": ("export", f"model_uri=models:/{store.model_id}", f"out={cwd / 'm.onnx'}", uri),
        "promote": ("promote", f"run_id={store.run_id}", uri),
        "explain": ("explain", f"run_id={store.run_id}", uri),
        "resume": ("train", f"resume={store.run_id}", f"logger.tracking_uri={store.uri}"),
    }[entry]
    if entry == "predict":
        champion(store)
    result = run_entry(*args, uri=store.uri, cwd=cwd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "refusing to build it" in lines[-1] and "torch.hub.load" in lines[-1]
    assert not [line for line in lines if "Traceback" in line]
    assert not marker.exists()
    assert not (cwd / "m.onnx").exists()


@pytest.mark.parametrize(
    "backbone",
    [{"\n": {"_target_": None}}, {"_target_": "os.\nsystem"}, {"_target_": CNN, "_\n_": 1}],
)
def test_refusals_stay_on_one_line_whatever_the_keys_hold(backbone) -> None:
    """Found by the fuzzer (tests/fuzz/test_fuzz_stored.py): a key with a line break made the
    refusal two lines."""
    from ecgml.trust import check_backbone_config

    with pytest.raises(EcgmlError, match="refusing") as err:
        check_backbone_config(backbone, "m")
    one_line(err.value)


def test_a_ddp_run_config_passes_the_gate_and_builds_its_trainer(tmp_path: Path) -> None:
    """A run logged with trainer=ddp_cpu names its strategy inside the trainer's arguments:
    the one nested target the gate allows; the stored config still builds that trainer."""
    import hydra

    from ecgml.trust import read_stored_config

    stored = tmp_path / "config.yaml"
    stored.write_text(OmegaConf.to_yaml(compose_once("trainer=ddp_cpu"), resolve=True))
    run_cfg = read_stored_config(stored, "run ddp")
    assert run_cfg.trainer.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    trainer = hydra.utils.instantiate(run_cfg.trainer, logger=False, enable_checkpointing=False)
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.num_devices == 2


def test_resuming_a_config_of_another_version_warns_in_one_line(caplog) -> None:
    from ecgml.pipeline.run import warn_config_drift

    current = compose_once()
    stored = OmegaConf.create(yaml.safe_load(OmegaConf.to_yaml(current, resolve=True)))
    del stored.training["label_smoothing"]  # a key added since the run was logged
    stored.data["old_knob"] = 3  # a key removed since
    with caplog.at_level("WARNING", logger="ecgml.pipeline"):
        warn_config_drift(stored, current, "resume=abc")
    (record,) = caplog.records
    text = record.getMessage()
    assert "\n" not in text and "data.old_knob" in text and "training.label_smoothing" in text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ecgml.pipeline"):
        warn_config_drift(current, current, "resume=abc")
    assert caplog.records == []


def test_a_run_is_compared_with_todays_config_of_its_own_overrides(caplog) -> None:
    """A record run logged with model=set_cnn1d data=records is compared with what those
    overrides compose today, not with the default beat config: no false alarm."""
    from ecgml.pipeline.run import composed_today, warn_config_drift

    overrides = ["model=set_cnn1d", "data=records", "hydra.run.dir=x", "trainer.max_epochs=3"]
    stored = OmegaConf.create(
        yaml.safe_load(OmegaConf.to_yaml(compose_once(*overrides[:2], overrides[3]), resolve=True))
    )
    today = composed_today(overrides, "resume=abc")
    assert today is not None and today.trainer.max_epochs == 3
    with caplog.at_level("WARNING", logger="ecgml.pipeline"):
        warn_config_drift(stored, today, "resume=abc")
        assert composed_today(["model=a_model_removed_since"], "resume=abc") is None
    (record,) = caplog.records
    assert "overrides no longer compose" in record.getMessage()
